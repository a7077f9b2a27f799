/** The team's API keys: ingest keys send data as the team, query keys read the API with a role. Admins only. */
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { can, createKey, formatUnix, keys as listKeys, me, revokeKey, type ApiKey, type Role } from "../api/access";
import { PageHeader } from "../components/Shell";
import { Card, CardHeader, Badge } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Input, Label, Select } from "../components/ui/input";
import { Empty, ErrorState, SkeletonRows } from "../components/States";
import { NeedsRole, SecretOnce } from "../components/Secret";
import { ME_KEY } from "../router";

export function KeysPage() {
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const admin = can(who.data?.role, "admin");
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ["keys", who.data?.team], queryFn: ({ signal }) => listKeys(signal), enabled: admin });
  const [kind, setKind] = useState<ApiKey["kind"]>("ingest");
  const [role, setRole] = useState<Role>("viewer");
  const [name, setName] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const create = useMutation({
    mutationFn: () => createKey(kind, name, role),
    onSuccess: (made) => { setSecret(made.secret); setName(""); queryClient.invalidateQueries({ queryKey: ["keys"] }); },
  });
  const revoke = useMutation({ mutationFn: revokeKey, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["keys"] }) });

  if (who.data && !admin) return <><PageHeader title="API keys" /><NeedsRole role="admin" what="Managing API keys" /></>;
  const submit = (e: FormEvent) => { e.preventDefault(); create.mutate(); };
  const rows = list.data ?? [];
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="API keys"><span className="text-xs text-muted">team {who.data?.team}</span></PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        <Card>
          <CardHeader title="New key" />
          <form onSubmit={submit} className="flex flex-wrap items-end gap-3 p-3" data-testid="key-form">
            <Label>Kind
              <Select value={kind} onChange={(e) => setKind(e.target.value as ApiKey["kind"])} aria-label="Kind">
                <option value="ingest">ingest: send OTLP data as this team</option>
                <option value="query">query: read the API</option>
              </Select>
            </Label>
            {kind === "query" && (
              <Label>Role
                <Select value={role} onChange={(e) => setRole(e.target.value as Role)} aria-label="Role">
                  <option value="viewer">viewer</option><option value="editor">editor</option><option value="admin">admin</option>
                </Select>
              </Label>
            )}
            <Label className="min-w-48 flex-1">Name <Input value={name} onChange={(e) => setName(e.target.value)} placeholder="what it is for, e.g. prod collectors" /></Label>
            <Button type="submit" variant="primary" disabled={create.isPending}>Create key</Button>
          </form>
          <div className="px-3 pb-3">
            {create.error && <ErrorState error={create.error} className="m-0" />}
            {secret && <SecretOnce label="The new key" secret={secret} onDone={() => setSecret(null)} />}
          </div>
        </Card>
        <Card>
          <CardHeader title="Keys"><span className="text-xs text-muted">keys are stored as hashes: only their first characters are shown</span></CardHeader>
          {list.error ? <ErrorState error={list.error} onRetry={() => list.refetch()} />
            : list.isLoading ? <SkeletonRows rows={3} />
            : rows.length === 0 ? <Empty title="No keys yet" icon="⚿">Create an ingest key for your collectors and SDKs (<code>Authorization: Bearer …</code>), or a query key for scripts.</Empty>
            : (
              <div className="overflow-x-auto">
                <table className="w-full text-sm" data-testid="keys-table">
                  <thead className="bg-bg text-left text-xs text-muted"><tr>
                    <th className="px-3 py-1.5 font-medium">Key</th><th className="px-2 font-medium">Kind</th><th className="px-2 font-medium">Name</th>
                    <th className="px-2 font-medium">Created</th><th className="px-2 font-medium">Last used</th><th className="px-3" />
                  </tr></thead>
                  <tbody>{rows.map((k) => (
                    <tr key={k.id} className="border-t border-border/60" data-testid="key-row">
                      <td className="px-3 py-1.5 font-mono text-xs">{k.prefix}…</td>
                      <td className="px-2"><Badge tone={k.kind === "ingest" ? "accent" : "default"}>{k.kind}{k.role ? ` · ${k.role}` : ""}</Badge></td>
                      <td className="px-2">{k.name || <span className="text-muted">–</span>}</td>
                      <td className="px-2 text-xs text-muted" title={k.created_by}>{formatUnix(k.created_at)}</td>
                      <td className="px-2 text-xs text-muted">{k.kind === "ingest" ? "–" : formatUnix(k.last_used_at)}</td>
                      <td className="px-3 text-right">{k.revoked_at ? <Badge tone="err">revoked</Badge>
                        : <Button size="sm" variant="danger" disabled={revoke.isPending}
                            onClick={() => { if (window.confirm(`Revoke ${k.prefix}…? Whatever uses it stops working.`)) revoke.mutate(k.id); }}>Revoke</Button>}</td>
                    </tr>))}</tbody>
                </table>
              </div>
            )}
          {revoke.error && <ErrorState error={revoke.error} />}
        </Card>
      </div>
    </div>
  );
}
