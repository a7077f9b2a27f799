/** A secret shown once (a new API key, a webhook's signing key): selectable, with a copy button. */
import { useState } from "react";
import { Button } from "./ui/button";
import { Icon } from "./ui/icons";

export function SecretOnce({ label, secret, onDone }: { label: string; secret: string; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <div role="status" className="flex flex-col gap-2 rounded-lg border border-accent/40 bg-accent-soft px-3 py-2 text-sm" data-testid="secret-once">
      <p className="font-medium">{label}: copy it now, it is not shown again.</p>
      <div className="flex items-center gap-2">
        <code className="min-w-0 flex-1 rounded border border-border bg-panel px-2 py-1 font-mono text-xs break-all select-all" data-testid="secret-value">{secret}</code>
        <Button size="sm" onClick={() => { navigator.clipboard?.writeText(secret).then(() => setCopied(true), () => setCopied(false)); }}>
          <Icon name="copy" /> {copied ? "Copied" : "Copy"}
        </Button>
        <Button size="sm" variant="ghost" onClick={onDone}>Done</Button>
      </div>
    </div>
  );
}

/** What a page shows to a role below the one it needs. */
export function NeedsRole({ role, what }: { role: string; what: string }) {
  return (
    <div data-testid="needs-role" className="m-3 rounded-lg border border-border bg-panel px-4 py-6 text-center text-sm">
      <p className="font-medium">{what} needs the {role} role in this team.</p>
      <p className="text-muted">Ask one of the team's admins.</p>
    </div>
  );
}
