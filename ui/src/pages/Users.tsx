/** The team's members and their roles; admins add people (new or existing accounts), change roles, remove. */
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { addUser, can, me, removeUser, setRole, users as listUsers, type Role } from "../api/access";
import { PageHeader } from "../components/Shell";
import { Card, CardHeader, Badge } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Input, Label, Select } from "../components/ui/input";
import { Empty, ErrorState, SkeletonRows } from "../components/States";
import { NeedsRole } from "../components/Secret";
import { ME_KEY } from "../router";

const ROLE_HELP: Record<Role, string> = {
  viewer: "reads logs, traces, metrics, alerts",
  editor: "also alert rules, silences, saved searches, dashboards",
  admin: "also users, API keys, webhooks, sources",
};

export function UsersPage() {
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const admin = can(who.data?.role, "admin");
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ["users", who.data?.team], queryFn: ({ signal }) => listUsers(signal), enabled: admin });
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["users"] });
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setNewRole] = useState<Role>("viewer");
  const add = useMutation({ mutationFn: () => addUser(email, password, role), onSuccess: () => { setEmail(""); setPassword(""); refresh(); } });
  const change = useMutation({ mutationFn: ({ id, r }: { id: number; r: Role }) => setRole(id, r), onSuccess: refresh });
  const remove = useMutation({ mutationFn: removeUser, onSuccess: refresh });

  if (who.data && !admin) return <><PageHeader title="Users" /><NeedsRole role="admin" what="Managing users" /></>;
  const submit = (e: FormEvent) => { e.preventDefault(); add.mutate(); };
  const rows = list.data ?? [];
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Users"><span className="text-xs text-muted">team {who.data?.team}</span></PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        <Card>
          <CardHeader title="Add someone" />
          <form onSubmit={submit} className="flex flex-wrap items-end gap-3 p-3" data-testid="user-form">
            <Label className="min-w-56 flex-1">Email <Input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} /></Label>
            <Label className="min-w-48">Password <Input type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)}
              placeholder="12+ characters (new accounts)" /></Label>
            <Label>Role
              <Select value={role} onChange={(e) => setNewRole(e.target.value as Role)} aria-label="Role of the new member">
                {(["viewer", "editor", "admin"] as Role[]).map((r) => <option key={r} value={r}>{r}</option>)}
              </Select>
            </Label>
            <Button type="submit" variant="primary" disabled={add.isPending}>Add</Button>
          </form>
          <p className="px-3 pb-2 text-xs text-muted">{role}: {ROLE_HELP[role]}. An existing account joins with its own password.</p>
          {add.error && <ErrorState error={add.error} />}
        </Card>
        <Card>
          <CardHeader title="Members" />
          {list.error ? <ErrorState error={list.error} onRetry={() => list.refetch()} />
            : list.isLoading ? <SkeletonRows rows={3} />
            : rows.length === 0 ? <Empty title="No members" icon="☺">Add someone above.</Empty>
            : (
              <table className="w-full text-sm" data-testid="users-table">
                <thead className="bg-bg text-left text-xs text-muted"><tr>
                  <th className="px-3 py-1.5 font-medium">Email</th><th className="px-2 font-medium">Role</th><th className="px-3" />
                </tr></thead>
                <tbody>{rows.map((u) => (
                  <tr key={u.id} className="border-t border-border/60" data-testid="user-row">
                    <td className="px-3 py-1.5">{u.email} {u.superuser && <Badge tone="accent">superuser</Badge>} {u.email === who.data?.email && <span className="text-xs text-muted">(you)</span>}</td>
                    <td className="px-2">
                      <Select value={u.role} aria-label={`Role of ${u.email}`} onChange={(e) => change.mutate({ id: u.id, r: e.target.value as Role })}>
                        {(["viewer", "editor", "admin"] as Role[]).map((r) => <option key={r} value={r}>{r}</option>)}
                      </Select>
                    </td>
                    <td className="px-3 text-right">
                      <Button size="sm" variant="danger" onClick={() => { if (window.confirm(`Remove ${u.email} from the team?`)) remove.mutate(u.id); }}>Remove</Button>
                    </td>
                  </tr>))}</tbody>
              </table>
            )}
          {(change.error || remove.error) && <ErrorState error={change.error ?? remove.error} />}
        </Card>
      </div>
    </div>
  );
}
