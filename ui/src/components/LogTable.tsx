/**
 * The log results: a virtualised table (only the rows in view are in the DOM, so 10,000 rows scroll
 * smoothly), keyboard navigable (↑/↓, Enter opens, Esc closes), and asking for the next page near the end.
 */
import { useEffect, useRef } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import type { LogRow } from "../api/types";
import { SEVERITY_COLOR, severityOf } from "../lib/colors";
import { formatTimestamp } from "../lib/time";
import { cn } from "../lib/cn";

const ROW = 28;

export function LogTable({ rows, selected, onSelect, onEnd, loadingMore, footer }: {
  rows: LogRow[];
  selected?: string;
  onSelect: (id: string | undefined) => void;
  onEnd?: () => void;
  loadingMore?: boolean;
  footer?: React.ReactNode;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW, overscan: 12 });
  const items = virtual.getVirtualItems();
  const last = items[items.length - 1];
  const end = useRef(onEnd);
  end.current = onEnd;

  useEffect(() => {
    if (last && last.index >= rows.length - 20 && !loadingMore) end.current?.();
  }, [last?.index, rows.length, loadingMore]);

  const index = selected ? rows.findIndex((r) => r.id === selected) : -1;
  const now = Date.now();

  const onKey = (e: React.KeyboardEvent) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp" || e.key === "j" || e.key === "k") {
      e.preventDefault();
      const next = Math.max(0, Math.min(rows.length - 1, index + (e.key === "ArrowDown" || e.key === "j" ? 1 : -1)));
      if (rows[next]) { onSelect(rows[next].id); virtual.scrollToIndex(next, { align: "auto" }); }
    } else if (e.key === "Escape") {
      onSelect(undefined);
    } else if (e.key === "Home") {
      e.preventDefault(); virtual.scrollToIndex(0);
    } else if (e.key === "End") {
      e.preventDefault(); virtual.scrollToIndex(rows.length - 1);
    }
  };

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <div className="grid grid-cols-[9.5rem_8rem_4.5rem_1fr] gap-2 border-b border-border bg-bg px-3 py-1.5 text-xs font-medium text-muted max-sm:grid-cols-[6rem_4rem_1fr]" aria-hidden>
        <span>Time</span><span className="max-sm:hidden">Service</span><span>Level</span><span>Message</span>
      </div>
      <div
        ref={scroller}
        role="grid"
        aria-label="Log records"
        aria-rowcount={rows.length}
        tabIndex={0}
        onKeyDown={onKey}
        data-testid="log-table"
        className="min-h-0 flex-1 overflow-auto focus-visible:outline-offset-[-2px]"
      >
        <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
          {items.map((item) => {
            const r = rows[item.index];
            const sev = severityOf(r.severityText, r.severityNumber);
            const isSel = r.id === selected;
            return (
              <div
                key={r.id}
                role="row"
                aria-rowindex={item.index + 1}
                aria-selected={isSel}
                data-testid="log-row"
                onClick={() => onSelect(isSel ? undefined : r.id)}
                className={cn(
                  "absolute left-0 grid w-full cursor-pointer grid-cols-[9.5rem_8rem_4.5rem_1fr] items-center gap-2 border-b border-border/60 px-3 text-[13px] hover:bg-accent-soft/60 max-sm:grid-cols-[6rem_4rem_1fr]",
                  isSel && "bg-accent-soft",
                )}
                style={{ top: item.start, height: ROW }}
              >
                <span role="gridcell" className="truncate font-mono text-xs text-muted tabular-nums">{formatTimestamp(r.timestampMs, now)}</span>
                <span role="gridcell" className="truncate max-sm:hidden" title={r.service}>{r.service}</span>
                <span role="gridcell" className="flex items-center gap-1.5 text-xs">
                  <span className="h-3.5 w-1 rounded-sm" style={{ background: SEVERITY_COLOR[sev] }} aria-hidden />
                  {r.severityText || sev}
                </span>
                <span role="gridcell" className="truncate font-mono text-xs" title={r.body.length > 200 ? undefined : r.body}>{r.body}</span>
              </div>
            );
          })}
        </div>
        {footer}
      </div>
    </div>
  );
}
