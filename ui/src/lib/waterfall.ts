/**
 * The waterfall's layout: spans nested under their parents (children in start order), each with its
 * bar's offset and width as fractions of the trace. Pure, so it is tested without a browser.
 */

export type WaterfallSpan = {
  spanId: string;
  parentSpanId: string;
  service: string;
  name: string;
  /** Start, in milliseconds from any fixed origin (epoch or trace start); only differences matter. */
  startMs: number;
  durationMs: number;
  error: boolean;
};

export type WaterfallRow<S extends WaterfallSpan = WaterfallSpan> = {
  span: S;
  depth: number;
  /** Bar start and width as fractions (0..1) of the trace's extent. */
  offset: number;
  width: number;
  /** Direct children, whether or not they are shown (collapsed). */
  childCount: number;
  /** The span names a parent that is not in the trace (not received, or not sampled). */
  orphan: boolean;
  /** Errors anywhere below this span; shown on collapsed rows. */
  errorsBelow: number;
};

export type WaterfallLayout<S extends WaterfallSpan = WaterfallSpan> = {
  rows: WaterfallRow<S>[];
  startMs: number;
  durationMs: number;
  /** Number of nesting levels (max depth + 1). */
  depth: number;
};

export function layoutWaterfall<S extends WaterfallSpan>(
  spans: readonly S[], collapsed: ReadonlySet<string> = new Set(),
): WaterfallLayout<S> {
  if (spans.length === 0) return { rows: [], startMs: 0, durationMs: 0, depth: 0 };
  const byId = new Map<string, S>();
  for (const s of spans) if (!byId.has(s.spanId)) byId.set(s.spanId, s);
  const children = new Map<string, S[]>();
  const roots: S[] = [];
  for (const s of byId.values()) {
    const parent = s.parentSpanId && s.parentSpanId !== s.spanId ? byId.get(s.parentSpanId) : undefined;
    if (parent) {
      const list = children.get(parent.spanId);
      if (list) list.push(s);
      else children.set(parent.spanId, [s]);
    } else {
      roots.push(s);
    }
  }
  const order = (a: S, b: S) => a.startMs - b.startMs || a.name.localeCompare(b.name) || a.spanId.localeCompare(b.spanId);
  roots.sort(order);
  for (const list of children.values()) list.sort(order);

  let startMs = Infinity;
  let endMs = -Infinity;
  for (const s of byId.values()) {
    startMs = Math.min(startMs, s.startMs);
    endMs = Math.max(endMs, s.startMs + Math.max(0, s.durationMs));
  }
  const durationMs = Math.max(endMs - startMs, 1e-6);

  // Errors below each span: a pre-order walk of the whole tree, then sums in reverse (children before parents).
  const errorsBelow = new Map<string, number>();
  const preorder: S[] = [];
  const seen = new Set<string>();
  const todo = roots.slice();
  while (todo.length) {
    const s = todo.pop()!;
    if (seen.has(s.spanId)) continue;
    seen.add(s.spanId);
    preorder.push(s);
    for (const c of children.get(s.spanId) ?? []) todo.push(c);
  }
  for (let i = preorder.length - 1; i >= 0; i--) {
    const s = preorder[i];
    let n = 0;
    for (const c of children.get(s.spanId) ?? []) n += (c.error ? 1 : 0) + (errorsBelow.get(c.spanId) ?? 0);
    errorsBelow.set(s.spanId, n);
  }

  const rows: WaterfallRow<S>[] = [];
  const visited = new Set<string>();
  let maxDepth = 0;
  // Iterative depth-first walk: a trace of thousands of nested spans must not overflow the stack.
  const stack: { span: S; depth: number }[] = roots.slice().reverse().map((span) => ({ span, depth: 0 }));
  while (stack.length) {
    const { span, depth } = stack.pop()!;
    if (visited.has(span.spanId)) continue;
    visited.add(span.spanId);
    const kids = children.get(span.spanId) ?? [];
    maxDepth = Math.max(maxDepth, depth);
    rows.push({
      span, depth,
      offset: (span.startMs - startMs) / durationMs,
      width: Math.max(0, span.durationMs) / durationMs,
      childCount: kids.length,
      orphan: Boolean(span.parentSpanId) && !byId.has(span.parentSpanId),
      errorsBelow: errorsBelow.get(span.spanId) ?? 0,
    });
    if (!collapsed.has(span.spanId)) for (let i = kids.length - 1; i >= 0; i--) stack.push({ span: kids[i], depth: depth + 1 });
  }
  // Spans in a parent cycle are reachable from no root; show them rather than lose them.
  for (const s of byId.values()) {
    if (!visited.has(s.spanId) && !isHiddenByCollapse(s, byId, collapsed)) {
      visited.add(s.spanId);
      rows.push({ span: s, depth: 0, offset: (s.startMs - startMs) / durationMs, width: s.durationMs / durationMs,
        childCount: children.get(s.spanId)?.length ?? 0, orphan: true, errorsBelow: 0 });
    }
  }
  return { rows, startMs, durationMs, depth: maxDepth + 1 };
}

function isHiddenByCollapse<S extends WaterfallSpan>(s: S, byId: Map<string, S>, collapsed: ReadonlySet<string>): boolean {
  const seen = new Set<string>();
  let p = byId.get(s.parentSpanId);
  while (p && !seen.has(p.spanId)) {
    if (collapsed.has(p.spanId)) return true;
    seen.add(p.spanId);
    p = byId.get(p.parentSpanId);
  }
  return false;
}

/** Round tick positions (ms from trace start) for the time axis: 1, 2 or 5 times a power of ten. */
export function niceTicks(durationMs: number, target = 5): number[] {
  if (!(durationMs > 0)) return [0];
  const raw = durationMs / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let t = 0; t <= durationMs + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** Span start from nanoseconds since the epoch given as a decimal string, to ms relative to an origin (also a
 * nanosecond string), without losing sub-microsecond precision to float rounding of the absolute value. */
export function nsToRelativeMs(ns: string, originNs: string): number {
  return Number(BigInt(ns) - BigInt(originNs)) / 1e6;
}
