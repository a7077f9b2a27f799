/** Alert rules of the team with their states (filter in the URL: ?state=firing), a new rule (?new=1), the
 * team's webhooks (admins add them; the signing secret is shown once) and silences. */
import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearch } from "@tanstack/react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { can, formatUnix, me } from "../api/access";
import {
  createRule, createWebhook, deleteWebhook, describeCondition, endSilence, rules as listRules, silences as listSilences,
  webhooks as listWebhooks, type Rule,
} from "../api/alerts";
import { PageHeader } from "../components/Shell";
import { Card, CardHeader, Badge } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Input, Label, Select } from "../components/ui/input";
import { Empty, ErrorState, SkeletonRows } from "../components/States";
import { SecretOnce } from "../components/Secret";
import { NEW_RULE, RuleForm } from "../components/RuleForm";
import { StateBadge } from "../components/AlertBadge";
import { ME_KEY } from "../router";
import { cn } from "../lib/cn";

const FILTERS = ["all", "firing", "pending", "ok"] as const;

export function AlertsPage() {
  const search = useSearch({ from: "/app/alerts" });
  const navigate = useNavigate({ from: "/alerts" });
  const queryClient = useQueryClient();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const editor = can(who.data?.role, "editor");
  const admin = can(who.data?.role, "admin");
  const list = useQuery({ queryKey: ["alerts"], queryFn: ({ signal }) => listRules(signal), refetchInterval: 10_000 });
  const hooks = useQuery({ queryKey: ["webhooks"], queryFn: ({ signal }) => listWebhooks(signal), enabled: editor });
  const create = useMutation({
    mutationFn: createRule,
    onSuccess: (made) => { queryClient.invalidateQueries({ queryKey: ["alerts"] }); navigate({ to: "/alerts/$ruleId", params: { ruleId: String(made.id) } }); },
  });
  const rows = (list.data ?? []).filter((r) => search.state === "all" || r.state === search.state);
  const counts = Object.fromEntries(FILTERS.map((f) => [f, (list.data ?? []).filter((r) => f === "all" || r.state === f).length]));

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Alerts">
        <div role="tablist" aria-label="Filter by state" className="flex gap-1">
          {FILTERS.map((f) => (
            <Link key={f} to="/alerts" search={(prev) => ({ ...prev, state: f })} role="tab" aria-selected={search.state === f}
              className={cn("rounded-md px-2 py-1 text-xs", search.state === f ? "bg-accent-soft font-medium text-accent" : "text-muted hover:bg-black/5")}>
              {f} <span className="tabular-nums">{list.data ? counts[f] : ""}</span>
            </Link>))}
        </div>
        {editor && !search.new && <Button variant="primary" className="ml-auto" onClick={() => navigate({ search: (prev) => ({ ...prev, new: true }) })} data-testid="new-rule">New rule</Button>}
      </PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        {search.new && editor && (
          <Card>
            <CardHeader title="New rule"><Button size="sm" variant="ghost" onClick={() => navigate({ search: (prev) => ({ ...prev, new: false }) })}>Cancel</Button></CardHeader>
            <RuleForm initial={NEW_RULE} webhooks={hooks.data ?? []} submitLabel="Create rule" busy={create.isPending} error={create.error}
              onSubmit={(spec) => create.mutate(spec)} />
          </Card>
        )}
        <Card>
          <CardHeader title="Rules"><span className="text-xs text-muted">evaluated by one `maple api` of the deployment; refreshed every 10 s</span></CardHeader>
          {list.error ? <ErrorState error={list.error} onRetry={() => list.refetch()} />
            : list.isLoading ? <SkeletonRows rows={4} />
            : rows.length === 0 ? (
              <Empty title={(list.data ?? []).length ? `No ${search.state} rules` : "No alert rules yet"} icon="🔔">
                {(list.data ?? []).length ? "Every rule is in another state." : editor ? "Create one: a count of error logs per service, a PromQL threshold, or the pipeline's lag." : "An editor of the team creates them."}
              </Empty>
            ) : <RuleTable rules={rows} />}
        </Card>
        {editor && <Webhooks admin={admin} />}
        <Silences />
      </div>
    </div>
  );
}

function RuleTable({ rules }: { rules: Rule[] }) {
  return (
    <div className="overflow-x-auto">
      <table className="w-full text-sm" data-testid="rules-table">
        <thead className="bg-bg text-left text-xs text-muted"><tr>
          <th className="px-3 py-1.5 font-medium">State</th><th className="px-2 font-medium">Rule</th><th className="px-2 font-medium">Condition</th>
          <th className="px-2 font-medium">Groups firing</th><th className="px-3 font-medium">Last evaluated</th>
        </tr></thead>
        <tbody>{rules.map((r) => (
          <tr key={r.id} className="border-t border-border/60" data-testid="rule-row" data-rule={r.name}>
            <td className="px-3 py-1.5"><StateBadge state={r.enabled ? r.state : "disabled"} /></td>
            <td className="px-2"><Link to="/alerts/$ruleId" params={{ ruleId: String(r.id) }} className="font-medium text-accent hover:underline">{r.name}</Link></td>
            <td className="max-w-md truncate px-2 text-xs text-muted" title={describeCondition(r.condition)}>{describeCondition(r.condition)}</td>
            <td className="px-2 text-xs">{r.groups.filter((g) => g.state === "firing").map((g) => g.group || "all").join(", ") || <span className="text-muted">–</span>}</td>
            <td className="px-3 text-xs text-muted">{r.last_error ? <span className="text-err" title={r.last_error}>error</span> : formatUnix(r.last_eval_at)}</td>
          </tr>))}</tbody>
      </table>
    </div>
  );
}

function Webhooks({ admin }: { admin: boolean }) {
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ["webhooks"], queryFn: ({ signal }) => listWebhooks(signal) });
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [kind, setKind] = useState<"json" | "slack">("json");
  const [secret, setSecret] = useState<string | null>(null);
  const create = useMutation({
    mutationFn: () => createWebhook(name, url, kind),
    onSuccess: (made) => { setSecret(made.secret); setName(""); setUrl(""); queryClient.invalidateQueries({ queryKey: ["webhooks"] }); },
  });
  const remove = useMutation({ mutationFn: deleteWebhook, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["webhooks"] }) });
  const submit = (e: FormEvent) => { e.preventDefault(); create.mutate(); };
  return (
    <Card>
      <CardHeader title="Webhooks"><span className="text-xs text-muted">signed with HMAC-SHA256 (X-Maple-Signature), retried with backoff</span></CardHeader>
      {list.error ? <ErrorState error={list.error} /> : (list.data ?? []).length === 0 ? (
        <Empty title="No webhooks" icon="↗">{admin ? "Add one below: a JSON endpoint of yours, or a Slack incoming webhook." : "An admin of the team adds them."}</Empty>
      ) : (
        <ul className="divide-y divide-border/60 text-sm" data-testid="webhooks">
          {(list.data ?? []).map((w) => (
            <li key={w.id} className="flex items-center gap-2 px-3 py-1.5">
              <span className="font-medium">{w.name}</span><Badge>{w.kind}</Badge>
              <span className="min-w-0 flex-1 truncate font-mono text-xs text-muted">{w.url}</span>
              {admin && <Button size="sm" variant="danger" onClick={() => { if (window.confirm(`Delete the webhook ${w.name}?`)) remove.mutate(w.id); }}>Delete</Button>}
            </li>))}
        </ul>
      )}
      {admin && (
        <form onSubmit={submit} className="flex flex-wrap items-end gap-3 border-t border-border p-3" data-testid="webhook-form">
          <Label>Name <Input required value={name} onChange={(e) => setName(e.target.value)} placeholder="on-call" /></Label>
          <Label className="min-w-72 flex-1">URL <Input required type="url" value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://hooks.slack.com/services/…" /></Label>
          <Label>Format <Select value={kind} onChange={(e) => setKind(e.target.value as "json" | "slack")} aria-label="Format"><option value="json">JSON</option><option value="slack">Slack</option></Select></Label>
          <Button type="submit" disabled={create.isPending}>Add webhook</Button>
        </form>
      )}
      <div className="px-3 pb-3">
        {create.error && <ErrorState error={create.error} className="m-0" />}
        {secret && <SecretOnce label="The webhook's signing secret" secret={secret} onDone={() => setSecret(null)} />}
      </div>
    </Card>
  );
}

function Silences() {
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ["silences"], queryFn: ({ signal }) => listSilences(signal) });
  const end = useMutation({ mutationFn: endSilence, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["silences"] }) });
  const active = (list.data ?? []).filter((s) => s.active);
  if (list.isLoading || list.error || active.length === 0) return null;
  return (
    <Card>
      <CardHeader title="Silences"><span className="text-xs text-muted">events are kept; nothing is sent until they end</span></CardHeader>
      <ul className="divide-y divide-border/60 text-sm" data-testid="silences">
        {active.map((s) => (
          <li key={s.id} className="flex items-center gap-2 px-3 py-1.5">
            <span>{s.rule_id ? <Link to="/alerts/$ruleId" params={{ ruleId: String(s.rule_id) }} className="text-accent">rule {s.rule_id}</Link> : "every rule"}{s.group ? ` · ${s.group}` : ""}</span>
            <span className="text-xs text-muted">until {formatUnix(s.ends_at)} · {s.comment || "no comment"} · {s.created_by}</span>
            <Button size="sm" className="ml-auto" onClick={() => end.mutate(s.id)}>End now</Button>
          </li>))}
      </ul>
    </Card>
  );
}
