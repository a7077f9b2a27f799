/** The team's saved searches: open one in the log or trace explorer, or delete it (editors). Saving happens on
 * the Logs page ("Save"). The filter by kind is in the URL (?kind=logs). */
import { Link, getRouteApi } from "@tanstack/react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { can, formatUnix, me } from "../api/access";
import { deleteSavedSearch, savedSearches, type SavedSearch } from "../api/alerts";
import { PageHeader } from "../components/Shell";
import { Card, Badge } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Empty, ErrorState, SkeletonRows } from "../components/States";
import { ME_KEY } from "../router";
import { cn } from "../lib/cn";

const route = getRouteApi("/app/saved");

function Open({ s }: { s: SavedSearch }) {
  const range = { from: s.from, to: s.to ?? "now" };
  const label = <span className="font-medium text-accent hover:underline">{s.name}</span>;
  return s.kind === "logs"
    ? <Link to="/logs" search={{ q: s.q, ...range }}>{label}</Link>
    : <Link to="/traces" search={{ q: s.q, ...range }}>{label}</Link>;
}

export function SavedPage() {
  const search = route.useSearch();
  const queryClient = useQueryClient();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const list = useQuery({ queryKey: ["saved-searches"], queryFn: ({ signal }) => savedSearches(signal) });
  const remove = useMutation({ mutationFn: deleteSavedSearch, onSuccess: () => queryClient.invalidateQueries({ queryKey: ["saved-searches"] }) });
  const rows = (list.data ?? []).filter((s) => search.kind === "all" || s.kind === search.kind);
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Saved searches">
        <div role="tablist" aria-label="Kind" className="flex gap-1">
          {(["all", "logs", "traces"] as const).map((k) => (
            <Link key={k} to="/saved" search={{ kind: k }} role="tab" aria-selected={search.kind === k}
              className={cn("rounded-md px-2 py-1 text-xs", search.kind === k ? "bg-accent-soft font-medium text-accent" : "text-muted hover:bg-black/5")}>{k}</Link>))}
        </div>
      </PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        <Card>
          {list.error ? <ErrorState error={list.error} onRetry={() => list.refetch()} />
            : list.isLoading ? <SkeletonRows rows={4} />
            : rows.length === 0 ? <Empty title="No saved searches" icon="☆">Run a search on the Logs page and press “Save” to keep it for the team.</Empty>
            : (
              <table className="w-full text-sm" data-testid="saved-table">
                <thead className="bg-bg text-left text-xs text-muted"><tr>
                  <th className="px-3 py-1.5 font-medium">Name</th><th className="px-2 font-medium">Kind</th><th className="px-2 font-medium">Search</th>
                  <th className="px-2 font-medium">Range</th><th className="px-2 font-medium">Saved by</th><th className="px-3" />
                </tr></thead>
                <tbody>{rows.map((s) => (
                  <tr key={s.id} className="border-t border-border/60" data-testid="saved-row">
                    <td className="px-3 py-1.5"><Open s={s} /></td>
                    <td className="px-2"><Badge>{s.kind}</Badge></td>
                    <td className="max-w-md truncate px-2 font-mono text-xs">{s.q || <span className="text-muted">everything</span>}</td>
                    <td className="px-2 text-xs text-muted">{s.from}{s.to ? ` → ${s.to}` : ""}</td>
                    <td className="px-2 text-xs text-muted" title={formatUnix(s.created_at)}>{s.created_by}</td>
                    <td className="px-3 text-right">{can(who.data?.role, "editor") &&
                      <Button size="sm" variant="danger" onClick={() => { if (window.confirm(`Delete the saved search ${s.name}?`)) remove.mutate(s.id); }}>Delete</Button>}</td>
                  </tr>))}</tbody>
              </table>
            )}
        </Card>
      </div>
    </div>
  );
}
