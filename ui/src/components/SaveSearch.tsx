/** "Save" on a search page: keeps the query and time range for the team (editors), named inline. */
import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { can, me } from "../api/access";
import { saveSearch } from "../api/alerts";
import { ME_KEY } from "../router";
import { Button } from "./ui/button";
import { Input } from "./ui/input";

export function SaveSearch({ kind, q, from, to }: { kind: "logs" | "traces"; q: string; from: string; to: string }) {
  const queryClient = useQueryClient();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const [open, setOpen] = useState(false);
  const [name, setName] = useState("");
  const save = useMutation({
    mutationFn: () => saveSearch({ name, kind, q, services: [], from, to: to === "now" ? null : to, columns: [] }),
    onSuccess: () => { setOpen(false); setName(""); queryClient.invalidateQueries({ queryKey: ["saved-searches"] }); },
  });
  if (!can(who.data?.role, "editor")) return null;
  if (!open) {
    return <Button onClick={() => setOpen(true)} title="Keep this search and time range for the team" data-testid="save-search">{save.isSuccess ? "Saved ✓" : "Save"}</Button>;
  }
  return (
    <form className="flex items-center gap-1" onSubmit={(e) => { e.preventDefault(); save.mutate(); }} data-testid="save-search-form">
      <Input autoFocus required value={name} onChange={(e) => setName(e.target.value)} placeholder="name" aria-label="Name of the saved search" className="w-40" />
      <Button type="submit" variant="primary" disabled={save.isPending}>Save</Button>
      <Button variant="ghost" onClick={() => setOpen(false)}>Cancel</Button>
      {save.error && <span role="alert" className="text-xs text-err">{(save.error as Error).message}</span>}
    </form>
  );
}
