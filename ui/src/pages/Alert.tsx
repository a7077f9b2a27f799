/** One alert rule: its groups and their states, the history of state changes with every webhook delivery and
 * attempt, silencing, editing, disabling and deleting (editors). */
import { useState } from "react";
import { getRouteApi, Link, useNavigate } from "@tanstack/react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { can, formatUnix, me } from "../api/access";
import {
  createSilence, deleteRule, describeCondition, history as ruleHistory, rule as getRule, updateRule, webhooks as listWebhooks,
  type AlertEvent, type Rule,
} from "../api/alerts";
import { ApiError } from "../api/client";
import { PageHeader } from "../components/Shell";
import { Card, CardHeader, Badge, Stat } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Input, Label, Select } from "../components/ui/input";
import { Empty, ErrorState, Loading, SkeletonRows } from "../components/States";
import { RuleForm } from "../components/RuleForm";
import { StateBadge } from "../components/AlertBadge";
import { ME_KEY } from "../router";

const route = getRouteApi("/app/alerts/$ruleId");

export function AlertPage() {
  const { ruleId } = route.useParams();
  const id = Number(ruleId);
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const editor = can(who.data?.role, "editor");
  const rule = useQuery({ queryKey: ["alert", id], queryFn: ({ signal }) => getRule(id, signal), refetchInterval: 5_000 });
  const events = useQuery({ queryKey: ["alert", id, "history"], queryFn: ({ signal }) => ruleHistory(id, signal), refetchInterval: 5_000 });
  const hooks = useQuery({ queryKey: ["webhooks"], queryFn: ({ signal }) => listWebhooks(signal), enabled: editor });
  const [editing, setEditing] = useState(false);
  const refresh = () => { queryClient.invalidateQueries({ queryKey: ["alert", id] }); queryClient.invalidateQueries({ queryKey: ["alerts"] }); };
  const save = useMutation({ mutationFn: (spec: Rule) => updateRule(id, spec), onSuccess: () => { setEditing(false); refresh(); } });
  const remove = useMutation({ mutationFn: () => deleteRule(id), onSuccess: () => { queryClient.invalidateQueries({ queryKey: ["alerts"] }); navigate({ to: "/alerts", search: {} }); } });

  if (rule.error) {
    return (<><PageHeader title="Alert" />{rule.error instanceof ApiError && rule.error.status === 404
      ? <Empty title="No such alert rule" icon="?">It may have been deleted, or it belongs to another team. <Link to="/alerts" search={{}} className="text-accent underline">All rules</Link></Empty>
      : <ErrorState error={rule.error} onRetry={() => rule.refetch()} />}</>);
  }
  const r = rule.data;
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title={r ? r.name : "Alert"}>
        {r && <StateBadge state={r.enabled ? r.state : "disabled"} />}
        <Link to="/alerts" search={{}} className="text-xs text-accent">all rules</Link>
        {r && editor && (
          <div className="ml-auto flex gap-2">
            <Button size="sm" onClick={() => setEditing(!editing)}>{editing ? "Cancel" : "Edit"}</Button>
            <Button size="sm" onClick={() => save.mutate({ ...r, enabled: !r.enabled })}>{r.enabled ? "Disable" : "Enable"}</Button>
            <Button size="sm" variant="danger" onClick={() => { if (window.confirm(`Delete ${r.name} and its history?`)) remove.mutate(); }}>Delete</Button>
          </div>
        )}
      </PageHeader>
      {!r ? <Loading /> : (
        <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
          {editing && (
            <Card><CardHeader title="Edit rule" />
              <RuleForm initial={r} webhooks={hooks.data ?? []} submitLabel="Save" busy={save.isPending} error={save.error} onSubmit={(spec) => save.mutate({ ...r, ...spec })} />
            </Card>
          )}
          <div className="grid grid-cols-2 gap-2 md:grid-cols-4">
            <Stat label="Condition" value={<span className="block text-sm leading-snug font-normal">{describeCondition(r.condition)}</span>} />
            <Stat label="Schedule" value={<span className="block text-sm leading-snug font-normal">every {r.interval_s} s{r.for_s ? `, fires after ${r.for_s} s` : ""}</span>} />
            <Stat label="Last evaluated" value={<span className="block text-sm leading-snug font-normal">{formatUnix(r.last_eval_at)}</span>}
              hint={r.last_error ? undefined : `next ${formatUnix(r.next_eval_at)}`} tone={r.last_error ? "err" : undefined} />
            <Stat label="Notifies" value={<span className="block text-sm leading-snug font-normal">{r.webhooks.length ? `${r.webhooks.length} webhook${r.webhooks.length === 1 ? "" : "s"}` : "no webhook"}</span>} />
          </div>
          {r.last_error && <ErrorState title="The last evaluation failed" error={new Error(r.last_error)} />}
          <Card>
            <CardHeader title="Groups now">{editor && <SilenceForm ruleId={id} />}</CardHeader>
            {r.groups.length === 0 ? <Empty title="Nothing matches now" icon="✓">Every group is ok; groups appear here while they have a value.</Empty> : (
              <table className="w-full text-sm" data-testid="groups-table">
                <thead className="bg-bg text-left text-xs text-muted"><tr><th className="px-3 py-1.5 font-medium">Group</th><th className="px-2 font-medium">State</th><th className="px-2 text-right font-medium">Value</th><th className="px-3 font-medium">Since</th></tr></thead>
                <tbody>{r.groups.map((g) => (
                  <tr key={g.group} className="border-t border-border/60" data-testid="group-row">
                    <td className="px-3 py-1.5 font-mono text-xs">{g.group || "(all)"}</td><td className="px-2"><StateBadge state={g.state} /></td>
                    <td className="px-2 text-right tabular-nums">{g.value ?? "–"}</td><td className="px-3 text-xs text-muted">{formatUnix(g.since)}</td>
                  </tr>))}</tbody>
              </table>
            )}
          </Card>
          <Card>
            <CardHeader title="History"><span className="text-xs text-muted">state changes, newest first, with each webhook attempt</span></CardHeader>
            {events.error ? <ErrorState error={events.error} /> : events.isLoading ? <SkeletonRows rows={3} />
              : (events.data ?? []).length === 0 ? <Empty title="No state changes yet" icon="◷">The rule has been ok since it was created.</Empty>
              : <History events={events.data ?? []} />}
          </Card>
        </div>
      )}
    </div>
  );
}

function History({ events }: { events: AlertEvent[] }) {
  return (
    <ol className="divide-y divide-border/60 text-sm" data-testid="alert-history">
      {events.map((e) => (
        <li key={e.id} className="flex flex-col gap-1 px-3 py-2" data-testid="history-event" data-state={e.to_state}>
          <div className="flex flex-wrap items-center gap-2">
            <span className="text-xs text-muted tabular-nums">{formatUnix(e.at)}</span>
            <span className="text-xs text-muted">{e.from_state} →</span><StateBadge state={e.to_state} />
            <span className="font-mono text-xs">{e.group || "(all)"}</span>
            {e.value != null && <span className="text-xs">value {e.value}</span>}
            {e.silenced && <Badge tone="warn">silenced</Badge>}
          </div>
          {e.deliveries.map((d) => (
            <div key={d.id} className="ml-4 flex flex-wrap items-center gap-2 text-xs" data-testid="delivery">
              <span>→ {d.webhook}</span>
              <Badge tone={d.status === "delivered" ? "ok" : d.status === "failed" ? "err" : "warn"}>{d.status}</Badge>
              <span className="text-muted">{d.attempts.map((a) => a.status_code ?? (a.error.split(":")[0] || "error")).join(", ") || "not tried yet"}</span>
              {d.next_attempt_at && <span className="text-muted">next try {formatUnix(d.next_attempt_at)}</span>}
            </div>))}
        </li>))}
    </ol>
  );
}

function SilenceForm({ ruleId }: { ruleId: number }) {
  const queryClient = useQueryClient();
  const [until, setUntil] = useState("1h");
  const [comment, setComment] = useState("");
  const silence = useMutation({
    mutationFn: () => createSilence(ruleId, until, comment),
    onSuccess: () => { setComment(""); queryClient.invalidateQueries({ queryKey: ["silences"] }); },
  });
  return (
    <form className="flex flex-wrap items-end gap-2" onSubmit={(e) => { e.preventDefault(); silence.mutate(); }}>
      <Label className="flex-row items-center gap-1">for
        <Select value={until} onChange={(e) => setUntil(e.target.value)} aria-label="Silence for">
          {["30m", "1h", "4h", "1d", "1w"].map((d) => <option key={d} value={d}>{d}</option>)}
        </Select>
      </Label>
      <Input value={comment} onChange={(e) => setComment(e.target.value)} placeholder="why (a deploy, an incident…)" aria-label="Comment" className="h-7 text-xs" />
      <Button size="sm" type="submit" disabled={silence.isPending}>Silence</Button>
      {silence.data && <span className="text-xs text-ok" role="status">silenced until {formatUnix(silence.data.ends_at)}</span>}
      {silence.error && <span className="text-xs text-err" role="alert">{(silence.error as Error).message}</span>}
    </form>
  );
}
