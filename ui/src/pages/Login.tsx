/** Log in: email and password; on success, back to where the user was going (`?redirect=`). */
import { useState, type FormEvent } from "react";
import { useNavigate, useSearch } from "@tanstack/react-router";
import { useQueryClient } from "@tanstack/react-query";
import { login } from "../api/access";
import { ApiError } from "../api/client";
import { Button } from "../components/ui/button";
import { Input, Label } from "../components/ui/input";
import { ME_KEY } from "../router";

export function LoginPage() {
  const search = useSearch({ from: "/login" });
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const who = await login(email, password);
      queryClient.clear();  // another user's or team's data must not show from the cache
      queryClient.setQueryData(ME_KEY, who);
      navigate({ to: search.redirect ?? "/logs", replace: true });
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, String(err)));
      setPassword("");
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="flex min-h-full items-center justify-center bg-bg p-4">
      <form onSubmit={submit} className="flex w-full max-w-sm flex-col gap-4 rounded-xl border border-border bg-panel p-6 shadow-sm" aria-labelledby="login-title" data-testid="login-form">
        <div className="flex items-center gap-2">
          <span className="text-2xl text-accent" aria-hidden>✦</span>
          <h1 id="login-title" className="text-lg font-semibold">Log in to Maple</h1>
        </div>
        <Label>Email
          <Input type="email" autoComplete="username" required autoFocus value={email} onChange={(e) => setEmail(e.target.value)} data-testid="login-email" />
        </Label>
        <Label>Password
          <Input type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} data-testid="login-password" />
        </Label>
        {error && (
          <p role="alert" className="rounded-md border border-err/30 bg-err-soft px-3 py-2 text-sm text-err" data-testid="login-error">
            {error.status === 429 ? `Too many attempts. ${error.message}` : error.status === 0 ? error.message : error.message}
          </p>
        )}
        <Button type="submit" variant="primary" disabled={busy} data-testid="login-submit">{busy ? "Logging in…" : "Log in"}</Button>
        <p className="text-xs text-muted">
          No account yet? An administrator creates one with <code className="font-mono">maple users create you@example.com</code>,
          or adds you on the Users page.
        </p>
      </form>
    </div>
  );
}
