/**
 * Alerts (`query/routes/alerts.py`): rules with their states, history with webhook deliveries and every
 * attempt, webhooks, silences; and saved searches and dashboards (`query/routes/saved.py`).
 */
import { request } from "./client";

const V1 = "/api/v1";

export type Op = ">" | ">=" | "<" | "<=" | "==" | "!=";
export const OPS: Op[] = [">", ">=", "<", "<=", "==", "!="];
export type SearchCondition = { kind: "search"; signal: "logs" | "traces"; source?: string | null; q: string; window_s: number; group_by_service: boolean; op: Op; threshold: number };
export type MetricCondition = { kind: "metric"; query: string; op: Op; threshold: number };
export type PipelineCondition = { kind: "pipeline"; measure: "lag_seconds" | "dead_letters" | "ingest_refusals"; window_s: number; op: Op; threshold: number };
export type Condition = SearchCondition | MetricCondition | PipelineCondition;
export type AlertState = "ok" | "pending" | "firing";

export type RuleSpec = { name: string; description: string; condition: Condition; interval_s: number; for_s: number; webhooks: number[]; enabled: boolean };
export type GroupState = { group: string; state: AlertState; since: number; value: number | null };
export type Rule = RuleSpec & {
  id: number; kind: Condition["kind"]; state: AlertState; groups: GroupState[]; created_by: string; created_at: number; updated_at: number;
  last_eval_at: number | null; next_eval_at: number; last_error: string;
};
export type Attempt = { at: number; status_code: number | null; error: string; duration_ms: number };
export type Delivery = { id: number; webhook_id: number; webhook: string; status: "pending" | "delivered" | "failed"; attempts: Attempt[]; next_attempt_at: number | null };
export type AlertEvent = { id: number; rule_id: number; group: string; from_state: string; to_state: AlertState | "resolved"; at: number; value: number | null; silenced: boolean; deliveries: Delivery[] };
export type Webhook = { id: number; name: string; url: string; kind: "json" | "slack"; enabled: boolean; created_at: number };
export type Silence = { id: number; rule_id: number | null; group: string | null; comment: string; created_by: string; starts_at: number; ends_at: number; active: boolean };

export const rules = async (signal?: AbortSignal) => (await request<{ rules: Rule[] }>(`${V1}/alerts`, { signal })).rules;
export const rule = (id: number, signal?: AbortSignal) => request<Rule>(`${V1}/alerts/${id}`, { signal });
export const createRule = (spec: RuleSpec) => request<Rule>(`${V1}/alerts`, { body: spec });
export const updateRule = (id: number, spec: RuleSpec) => request<Rule>(`${V1}/alerts/${id}`, { method: "PUT", body: spec });
export const deleteRule = (id: number) => request<void>(`${V1}/alerts/${id}`, { method: "DELETE" });
export const history = async (id: number, signal?: AbortSignal) =>
  (await request<{ events: AlertEvent[] }>(`${V1}/alerts/${id}/history`, { signal })).events;
export const preview = (spec: RuleSpec) =>
  request<{ values: Record<string, number | null>; holding: string[]; error: string }>(`${V1}/alerts/preview`, { body: spec });

export const webhooks = async (signal?: AbortSignal) => (await request<{ webhooks: Webhook[] }>(`${V1}/webhooks`, { signal })).webhooks;
export const createWebhook = (name: string, url: string, kind: Webhook["kind"]) =>
  request<{ webhook: Webhook; secret: string }>(`${V1}/webhooks`, { body: { name, url, kind } });
export const deleteWebhook = (id: number) => request<void>(`${V1}/webhooks/${id}`, { method: "DELETE" });

export const silences = async (signal?: AbortSignal) => (await request<{ silences: Silence[] }>(`${V1}/silences`, { signal })).silences;
export const createSilence = (ruleId: number | null, endsAt: string, comment: string, group?: string | null) =>
  request<Silence>(`${V1}/silences`, { body: { rule_id: ruleId, ends_at: endsAt, comment, group: group ?? null } });
export const endSilence = (id: number) => request<Silence>(`${V1}/silences/${id}`, { method: "DELETE" });

export type SavedSearchSpec = { name: string; kind: "logs" | "traces"; source?: string | null; q: string; services: string[]; from: string; to: string | null; columns: string[] };
export type SavedSearch = SavedSearchSpec & { id: number; created_by: string; created_at: number; updated_at: number };
export const savedSearches = async (signal?: AbortSignal) =>
  (await request<{ searches: SavedSearch[] }>(`${V1}/saved-searches`, { signal })).searches;
export const saveSearch = (spec: SavedSearchSpec) => request<SavedSearch>(`${V1}/saved-searches`, { body: spec });
export const deleteSavedSearch = (id: number) => request<void>(`${V1}/saved-searches/${id}`, { method: "DELETE" });

export type Panel = { title: string; kind: "search" | "metric"; signal: "logs" | "traces"; source?: string | null; q: string; query: string; group_by: string | null; chart: "line" | "bar" | "table" | "number" };
export type DashboardSpec = { name: string; description: string; range: string; panels: Panel[] };
export type Dashboard = DashboardSpec & { id: number; created_by: string; created_at: number; updated_at: number };
export const dashboards = async (signal?: AbortSignal) =>
  (await request<{ dashboards: Dashboard[] }>(`${V1}/dashboards`, { signal })).dashboards;
export const dashboard = (id: number, signal?: AbortSignal) => request<Dashboard>(`${V1}/dashboards/${id}`, { signal });
export const createDashboard = (spec: DashboardSpec) => request<Dashboard>(`${V1}/dashboards`, { body: spec });
export const updateDashboard = (id: number, spec: DashboardSpec) => request<Dashboard>(`${V1}/dashboards/${id}`, { method: "PUT", body: spec });
export const deleteDashboard = (id: number) => request<void>(`${V1}/dashboards/${id}`, { method: "DELETE" });

/** A condition in words: "count of level:error > 10 in 5 min, per service". */
export function describeCondition(c: Condition): string {
  const cmp = `${c.op} ${c.threshold}`;
  if (c.kind === "search") {
    const what = c.signal === "logs" ? "log records" : "spans";
    return `${what} matching ${c.q ? `“${c.q}”` : "anything"} in ${formatWindow(c.window_s)} ${cmp}${c.group_by_service ? ", per service" : ""}`;
  }
  if (c.kind === "metric") return `${c.query} ${cmp}`;
  const measure = { lag_seconds: "consumer lag (s)", dead_letters: "new dead letters", ingest_refusals: "refused ingest requests" }[c.measure];
  return `${measure}${c.measure === "lag_seconds" ? "" : ` in ${formatWindow(c.window_s)}`} ${cmp}`;
}

export function formatWindow(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
