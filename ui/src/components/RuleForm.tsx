/** The form of an alert rule: the condition (a search, a PromQL query or a pipeline measure), the schedule,
 * the webhooks; "Check" evaluates it now (nothing is kept) so the threshold can be set against real values. */
import { useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { OPS, preview, type Condition, type Op, type RuleSpec, type Webhook } from "../api/alerts";
import { Button } from "./ui/button";
import { Input, Label, Select } from "./ui/input";
import { ErrorState } from "./States";

const DEFAULTS: Record<Condition["kind"], Condition> = {
  search: { kind: "search", signal: "logs", q: "level:error", window_s: 300, group_by_service: true, op: ">", threshold: 0 },
  metric: { kind: "metric", query: "sum by (service_name) (rate(traces_span_metrics_calls[5m]))", op: ">", threshold: 100 },
  pipeline: { kind: "pipeline", measure: "lag_seconds", window_s: 300, op: ">", threshold: 60 },
};

export const NEW_RULE: RuleSpec = { name: "", description: "", condition: DEFAULTS.search, interval_s: 60, for_s: 0, webhooks: [], enabled: true };

export function RuleForm({ initial, webhooks, submitLabel, onSubmit, busy, error }: {
  initial: RuleSpec; webhooks: Webhook[]; submitLabel: string; onSubmit: (spec: RuleSpec) => void; busy?: boolean; error?: unknown;
}) {
  const [spec, setSpec] = useState<RuleSpec>(initial);
  const c = spec.condition;
  const set = (patch: Partial<RuleSpec>) => setSpec((s) => ({ ...s, ...patch }));
  const cond = (patch: Partial<Condition>) => setSpec((s) => ({ ...s, condition: { ...s.condition, ...patch } as Condition }));
  const check = useMutation({ mutationFn: () => preview({ ...spec, name: spec.name || "preview" }) });
  const submit = (e: FormEvent) => { e.preventDefault(); onSubmit(spec); };

  return (
    <form onSubmit={submit} className="flex flex-col gap-3 p-3" data-testid="rule-form">
      <div className="flex flex-wrap gap-3">
        <Label className="min-w-56 flex-1">Name <Input required value={spec.name} onChange={(e) => set({ name: e.target.value })} placeholder="checkout errors" data-testid="rule-name" /></Label>
        <Label>Watches
          <Select value={c.kind} onChange={(e) => set({ condition: DEFAULTS[e.target.value as Condition["kind"]] })} aria-label="Watches" data-testid="rule-kind">
            <option value="search">a search (count of logs or spans)</option>
            <option value="metric">a metric (PromQL)</option>
            <option value="pipeline">the pipeline (lag, dead letters, refusals)</option>
          </Select>
        </Label>
      </div>
      {c.kind === "search" && (
        <div className="flex flex-wrap items-end gap-3">
          <Label>In
            <Select value={c.signal} onChange={(e) => cond({ signal: e.target.value as "logs" | "traces" })} aria-label="Signal">
              <option value="logs">logs</option><option value="traces">spans</option>
            </Select>
          </Label>
          <Label className="min-w-64 flex-1">Search <Input className="font-mono" value={c.q} onChange={(e) => cond({ q: e.target.value })} placeholder="level:error service:checkout" data-testid="rule-query" /></Label>
          <Label>Window (s) <Input type="number" min={10} className="w-24" value={c.window_s} onChange={(e) => cond({ window_s: Number(e.target.value) })} /></Label>
          <label className="flex items-center gap-1.5 pb-1.5 text-sm"><input type="checkbox" checked={c.group_by_service} onChange={(e) => cond({ group_by_service: e.target.checked })} /> per service</label>
        </div>
      )}
      {c.kind === "metric" && (
        <Label>PromQL <Input className="font-mono" value={c.query} onChange={(e) => cond({ query: e.target.value })} data-testid="rule-query" /></Label>
      )}
      {c.kind === "pipeline" && (
        <div className="flex flex-wrap items-end gap-3">
          <Label>Measure
            <Select value={c.measure} onChange={(e) => cond({ measure: e.target.value as typeof c.measure })} aria-label="Measure">
              <option value="lag_seconds">consumer lag (seconds, per group)</option>
              <option value="dead_letters">new dead letters</option>
              <option value="ingest_refusals">refused ingest requests</option>
            </Select>
          </Label>
          {c.measure !== "lag_seconds" && <Label>Window (s) <Input type="number" min={10} className="w-24" value={c.window_s} onChange={(e) => cond({ window_s: Number(e.target.value) })} /></Label>}
        </div>
      )}
      <div className="flex flex-wrap items-end gap-3">
        <Label>Fires when the value is
          <span className="flex gap-2">
            <Select value={c.op} onChange={(e) => cond({ op: e.target.value as Op })} aria-label="Comparison">{OPS.map((o) => <option key={o} value={o}>{o}</option>)}</Select>
            <Input type="number" step="any" className="w-28" value={c.threshold} onChange={(e) => cond({ threshold: Number(e.target.value) })} aria-label="Threshold" data-testid="rule-threshold" />
          </span>
        </Label>
        <Label>Every (s) <Input type="number" min={1} className="w-24" value={spec.interval_s} onChange={(e) => set({ interval_s: Number(e.target.value) })} /></Label>
        <Label>For (s) <Input type="number" min={0} className="w-24" value={spec.for_s} onChange={(e) => set({ for_s: Number(e.target.value) })} title="how long it must hold before it fires (pending until then)" /></Label>
      </div>
      <fieldset className="flex flex-wrap items-center gap-3 text-sm">
        <legend className="mb-1 text-xs font-medium text-muted">Notify</legend>
        {webhooks.length === 0 ? <span className="text-xs text-muted">No webhooks yet: an admin adds them below. Firing rules still show here and in the history.</span>
          : webhooks.map((w) => (
            <label key={w.id} className="flex items-center gap-1.5">
              <input type="checkbox" checked={spec.webhooks.includes(w.id)}
                onChange={(e) => set({ webhooks: e.target.checked ? [...spec.webhooks, w.id] : spec.webhooks.filter((id) => id !== w.id) })} />
              {w.name} <span className="text-xs text-muted">({w.kind})</span>
            </label>))}
      </fieldset>
      <div className="flex flex-wrap items-center gap-2">
        <Button type="submit" variant="primary" disabled={busy} data-testid="rule-submit">{submitLabel}</Button>
        <Button onClick={() => check.mutate()} disabled={check.isPending}>Check now</Button>
        {check.data && (
          <span className="text-xs text-muted" data-testid="rule-preview">
            {check.data.error ? <span className="text-err">{check.data.error}</span>
              : Object.keys(check.data.values).length === 0 ? "no value now (nothing matches)"
              : Object.entries(check.data.values).slice(0, 6).map(([g, v]) => `${g || "all"}: ${v ?? "–"}`).join(" · ")
                + (check.data.holding.length ? ` → would fire for ${check.data.holding.length}` : " → would not fire")}
          </span>
        )}
      </div>
      {(error || check.error) ? <ErrorState error={error ?? check.error} className="m-0" /> : null}
    </form>
  );
}
