import { Badge } from "./ui/card";
import type { AlertState } from "../api/alerts";

export function StateBadge({ state }: { state: AlertState | "resolved" | string }) {
  const tone = state === "firing" ? "err" : state === "pending" ? "warn" : state === "resolved" || state === "ok" ? "ok" : "default";
  return <Badge tone={tone} data-testid="alert-state">{state}</Badge>;
}
