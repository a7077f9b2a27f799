/**
 * Layout of the service map: callers to the left of callees (columns by longest call path, cycles
 * tolerated), nodes sized by traffic, edges by calls, coloured by their error share. Pure and tested.
 */

export type MapEdgeIn = { caller: string; callee: string; calls: number; errors: number };
export type MapNode = { id: string; x: number; y: number; r: number; traffic: number; errors: number; column: number };
export type MapEdge<E extends MapEdgeIn = MapEdgeIn> = E & { width: number; errorShare: number };
export type MapLayout<E extends MapEdgeIn = MapEdgeIn> = { nodes: MapNode[]; edges: MapEdge<E>[]; width: number; height: number };

export function layoutServiceMap<E extends MapEdgeIn>(edges: readonly E[], traffic: ReadonlyMap<string, { calls: number; errors: number }> = new Map(),
  opts: { colGap?: number; rowGap?: number; margin?: number } = {}): MapLayout<E> {
  const colGap = opts.colGap ?? 220;
  const rowGap = opts.rowGap ?? 110;
  const margin = opts.margin ?? 70;
  const ids = new Set<string>(traffic.keys());
  for (const e of edges) { ids.add(e.caller); ids.add(e.callee); }
  const out = new Map<string, string[]>();
  const indeg = new Map<string, number>([...ids].map((id) => [id, 0]));
  for (const e of edges) {
    if (e.caller === e.callee) continue;
    (out.get(e.caller) ?? out.set(e.caller, []).get(e.caller)!).push(e.callee);
    indeg.set(e.callee, (indeg.get(e.callee) ?? 0) + 1);
  }
  // Kahn's algorithm with longest-path columns; nodes left in cycles are placed after their placed callers.
  const column = new Map<string, number>();
  const queue = [...ids].filter((id) => indeg.get(id) === 0).sort();
  for (const id of queue) column.set(id, 0);
  const remaining = new Map(indeg);
  while (queue.length) {
    const id = queue.shift()!;
    for (const next of out.get(id) ?? []) {
      column.set(next, Math.max(column.get(next) ?? 0, (column.get(id) ?? 0) + 1));
      remaining.set(next, remaining.get(next)! - 1);
      if (remaining.get(next) === 0) queue.push(next);
    }
  }
  for (const id of [...ids].sort()) if (!column.has(id)) column.set(id, 0);

  const incoming = new Map<string, { calls: number; errors: number }>();
  for (const e of edges) {
    const t = incoming.get(e.callee) ?? { calls: 0, errors: 0 };
    incoming.set(e.callee, { calls: t.calls + e.calls, errors: t.errors + e.errors });
  }
  const trafficOf = (id: string) => traffic.get(id) ?? incoming.get(id) ?? { calls: 0, errors: 0 };
  const maxTraffic = Math.max(1, ...[...ids].map((id) => trafficOf(id).calls));

  const columns: string[][] = [];
  for (const id of [...ids].sort()) (columns[column.get(id)!] ??= []).push(id);
  // One barycentre pass: order each column by the mean row of its callers, to cut crossings.
  const row = new Map<string, number>();
  columns.forEach((col, c) => {
    if (c > 0) {
      const callersOf = (id: string) => edges.filter((e) => e.callee === id && row.has(e.caller)).map((e) => row.get(e.caller)!);
      const key = (id: string) => { const r = callersOf(id); return r.length ? r.reduce((a, b) => a + b, 0) / r.length : Infinity; };
      col.sort((a, b) => key(a) - key(b) || a.localeCompare(b));
    }
    col.forEach((id, i) => row.set(id, i));
  });
  const tallest = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const height = margin * 2 + (tallest - 1) * rowGap;
  const nodes: MapNode[] = [];
  columns.forEach((col, c) => {
    const offset = ((tallest - col.length) * rowGap) / 2;
    col.forEach((id, i) => {
      const t = trafficOf(id);
      nodes.push({ id, column: c, x: margin + c * colGap, y: margin + offset + i * rowGap, r: 12 + 20 * Math.sqrt(t.calls / maxTraffic), traffic: t.calls, errors: t.errors });
    });
  });
  const maxCalls = Math.max(1, ...edges.map((e) => e.calls));
  const mapped = edges.map((e) => ({ ...e, width: 1 + 6 * (Math.log1p(e.calls) / Math.log1p(maxCalls)), errorShare: e.calls > 0 ? e.errors / e.calls : 0 }));
  return { nodes, edges: mapped, width: margin * 2 + Math.max(0, columns.length - 1) * colGap, height };
}

/** Red for errors, grey for none, in between by share. */
export function errorColor(share: number): string {
  if (share <= 0) return "#a8a29e";
  if (share < 0.01) return "#d97706";
  return "#dc2626";
}
