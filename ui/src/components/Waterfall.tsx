/**
 * One trace as a waterfall: a row per span, indented under its parent, with a bar placed on the trace's
 * time axis in the service's colour; errors are marked red. Rows are virtualised (traces can have
 * thousands of spans). Keyboard: ↑/↓ move, ←/→ collapse/expand, Esc clears the selection.
 */
import { useMemo, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import type { Span } from "../api/types";
import { layoutWaterfall, niceTicks } from "../lib/waterfall";
import { formatDuration } from "../lib/time";
import { cn } from "../lib/cn";

const ROW = 26;
const INDENT = 14;

export function Waterfall({ spans, selected, onSelect, colors }: {
  spans: Span[];
  selected?: string;
  onSelect: (spanId: string | undefined) => void;
  /** Service colours (lib/colors serviceColors over the trace's services). */
  colors: Map<string, string>;
}) {
  const [collapsed, setCollapsed] = useState<Set<string>>(() => new Set());
  const layout = useMemo(() => layoutWaterfall(spans, collapsed), [spans, collapsed]);
  const ticks = useMemo(() => niceTicks(layout.durationMs), [layout.durationMs]);
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: layout.rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW, overscan: 16 });
  const services = useMemo(() => [...new Set(spans.map((s) => s.service))].sort(), [spans]);

  const toggle = (id: string, open?: boolean) => setCollapsed((prev) => {
    const next = new Set(prev);
    const isOpen = !next.has(id);
    if (open === undefined ? isOpen : !open) next.add(id); else next.delete(id);
    return next;
  });

  const index = selected ? layout.rows.findIndex((r) => r.span.spanId === selected) : -1;
  const onKey = (e: React.KeyboardEvent) => {
    const move = (to: number) => {
      const r = layout.rows[Math.max(0, Math.min(layout.rows.length - 1, to))];
      if (r) { onSelect(r.span.spanId); virtual.scrollToIndex(layout.rows.indexOf(r)); }
    };
    if (e.key === "ArrowDown") { e.preventDefault(); move(index + 1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); move(index - 1); }
    else if (e.key === "ArrowLeft" && index >= 0) { e.preventDefault(); toggle(layout.rows[index].span.spanId, false); }
    else if (e.key === "ArrowRight" && index >= 0) { e.preventDefault(); toggle(layout.rows[index].span.spanId, true); }
    else if (e.key === "Escape") onSelect(undefined);
  };

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <div className="flex flex-wrap gap-x-3 gap-y-1 border-b border-border px-3 py-1.5 text-xs" aria-label="Services in this trace">
        {services.map((s) => (
          <span key={s} className="flex items-center gap-1"><span className="size-2.5 rounded-sm" style={{ background: colors.get(s) }} aria-hidden />{s}</span>
        ))}
      </div>
      <div className="grid grid-cols-[minmax(10rem,38%)_1fr] border-b border-border bg-bg text-xs text-muted">
        <div className="px-3 py-1 font-medium">Span</div>
        <div className="relative h-6" aria-hidden>
          {ticks.map((t, i) => {
            const at = t / layout.durationMs;
            // the first label starts at its tick, labels near the right edge end at theirs
            const shift = i === 0 ? "" : at > 0.92 ? "-translate-x-full" : "-translate-x-1/2";
            return <span key={t} className={`absolute top-1 px-1 tabular-nums whitespace-nowrap ${shift}`} style={{ left: `${at * 100}%` }}>{formatDuration(t)}</span>;
          })}
        </div>
      </div>
      <div ref={scroller} role="tree" aria-label="Spans" tabIndex={0} onKeyDown={onKey} data-testid="waterfall"
        className="min-h-0 flex-1 overflow-auto focus-visible:outline-offset-[-2px]">
        <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
          {virtual.getVirtualItems().map((item) => {
            const row = layout.rows[item.index];
            const s = row.span;
            const isSel = s.spanId === selected;
            const color = colors.get(s.service) ?? "#888";
            const open = !collapsed.has(s.spanId);
            const labelRight = row.offset + row.width < 0.75;
            return (
              <div key={s.spanId} role="treeitem" aria-level={row.depth + 1} aria-selected={isSel}
                aria-expanded={row.childCount ? open : undefined}
                data-testid="span-row" data-span-id={s.spanId} data-parent-id={s.parentSpanId} data-depth={row.depth}
                onClick={() => onSelect(isSel ? undefined : s.spanId)}
                className={cn("absolute left-0 grid w-full cursor-pointer grid-cols-[minmax(10rem,38%)_1fr] items-center border-b border-border/50 hover:bg-accent-soft/50",
                  isSel && "bg-accent-soft")}
                style={{ top: item.start, height: ROW }}>
                <div className="flex min-w-0 items-center gap-1 pr-2 text-[13px]" style={{ paddingLeft: 8 + row.depth * INDENT }}>
                  {row.childCount > 0 ? (
                    <button type="button" tabIndex={-1} aria-label={open ? "Collapse" : "Expand"}
                      onClick={(e) => { e.stopPropagation(); toggle(s.spanId); }}
                      className="w-4 shrink-0 text-muted hover:text-fg">{open ? "▾" : "▸"}</button>
                  ) : <span className="w-4 shrink-0" />}
                  <span className="h-3.5 w-1 shrink-0 rounded-sm" style={{ background: color }} aria-hidden />
                  {s.error && <span className="shrink-0 text-err" title="Error" aria-label="error">●</span>}
                  <span className="shrink-0 text-xs text-muted">{s.service}</span>
                  <span className="truncate font-medium" title={s.name}>{s.name}</span>
                  {!open && row.childCount > 0 && <span className="shrink-0 text-xs text-muted">+{row.childCount}{row.errorsBelow ? <span className="text-err"> ({row.errorsBelow} err)</span> : null}</span>}
                  {row.orphan && <span className="shrink-0 text-xs text-warn" title="Its parent span is not in this trace">orphan</span>}
                </div>
                <div className="relative h-full">
                  <div className={cn("absolute top-1/2 h-3.5 -translate-y-1/2 rounded-sm", s.error && "ring-2 ring-err")}
                    style={{ left: `${row.offset * 100}%`, width: `max(2px, ${row.width * 100}%)`, background: color, opacity: s.error ? 1 : 0.85 }} />
                  {row.width > 0.3 ? (
                    <span className="absolute top-1/2 -translate-y-1/2 pl-1.5 text-xs font-medium whitespace-nowrap text-white tabular-nums" style={{ left: `${row.offset * 100}%` }}>
                      {formatDuration(s.durationMs)}
                    </span>
                  ) : (
                    <span className={cn("absolute top-1/2 -translate-y-1/2 px-1 text-xs whitespace-nowrap tabular-nums", s.error ? "text-err" : "text-muted")}
                      style={labelRight ? { left: `${(row.offset + row.width) * 100}%` } : { right: `${(1 - row.offset) * 100}%` }}>
                      {formatDuration(s.durationMs)}
                    </span>
                  )}
                </div>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}
