/**
 * uPlot charts: a time series (lines), and the severity-stacked volume histogram with drag-to-zoom.
 * uPlot draws on a canvas and is fast for thousands of points; it has no stacking of its own, so the
 * histogram draws cumulative series, largest first.
 */
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import { cn } from "../lib/cn";

function useWidth(ref: React.RefObject<HTMLElement | null>, onWidth: (w: number) => void) {
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const ro = new ResizeObserver((entries) => onWidth(Math.max(100, Math.floor(entries[0].contentRect.width))));
    ro.observe(el);
    return () => ro.disconnect();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
}

export type ChartSeries = { label: string; color: string; values: (number | null)[] };

const axisStyle = { stroke: "#6b6b66", grid: { stroke: "#ececea", width: 1 }, ticks: { stroke: "#ececea", width: 1 }, font: "11px system-ui" };

export function TimeSeriesChart({ xs, series, height = 160, format, className, ariaLabel, onZoom, xRange }: {
  /** Epoch seconds. */
  xs: number[];
  /** The x axis's extent (epoch seconds), so sparse data sits where it happened in the range. */
  xRange?: [number, number];
  series: ChartSeries[];
  height?: number;
  format?: (v: number) => string;
  className?: string;
  ariaLabel: string;
  onZoom?: (fromMs: number, toMs: number) => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;

  useEffect(() => {
    const el = host.current!;
    const opts: uPlot.Options = {
      width: Math.max(100, el.clientWidth),
      height,
      legend: { show: series.length > 1 },
      cursor: { drag: { x: Boolean(onZoom), y: false, setScale: false } },
      scales: {
        x: xRange ? { time: true, range: () => xRange } : { time: true },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [axisStyle, { ...axisStyle, size: 64, values: (_u, vals) => vals.map((v) => (format ? format(v) : String(v))) }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5,
        // sparse series (a few points in a long range) need their points drawn, or nothing shows
        points: { show: s.values.filter((v) => v != null).length < 40, size: 5 },
        value: (_u: uPlot, v: number | null) => (v == null ? "–" : format ? format(v) : String(v)) }))],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 2 && zoom.current) {
            zoom.current(u.posToVal(u.select.left, "x") * 1000, u.posToVal(u.select.left + u.select.width, "x") * 1000);
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
      },
    };
    plot.current = new uPlot(opts, [xs, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    return () => { plot.current?.destroy(); plot.current = null; };
    // format and onZoom are read when called; a new function from a re-render need not rebuild the chart
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [xs, series, height, Boolean(onZoom), xRange?.[0], xRange?.[1]]);

  useWidth(host, (w) => plot.current?.setSize({ width: w, height }));
  return <div ref={host} role="img" aria-label={ariaLabel} className={cn("w-full", className)} />;
}

/** Bars stacked by group (e.g. severity), in the order given (bottom first). */
export function StackedBars({ xs, stepS, groups, height = 120, onZoom, ariaLabel, className }: {
  xs: number[];
  stepS: number;
  groups: ChartSeries[];
  height?: number;
  onZoom?: (fromMs: number, toMs: number) => void;
  ariaLabel: string;
  className?: string;
}) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;

  useEffect(() => {
    const el = host.current!;
    // cumulative sums: series i is the top of the stack up to group i
    const stacked: number[][] = [];
    let acc = xs.map(() => 0);
    for (const g of groups) {
      acc = acc.map((a, i) => a + (g.values[i] ?? 0));
      stacked.push(acc);
    }
    const bars = uPlot.paths.bars!({ size: [0.85, 40], align: 1 });
    // Draw the tallest (cumulative) series first, so each lower group paints over it.
    const order = groups.map((_, i) => i).reverse();
    const opts: uPlot.Options = {
      width: Math.max(100, el.clientWidth),
      height,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => [min, max + stepS] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [axisStyle, { ...axisStyle, size: 48, values: (_u, vals) => vals.map((v) => compact(v)) }],
      series: [{}, ...order.map((i) => ({ label: groups[i].label, fill: groups[i].color, stroke: groups[i].color, width: 0, paths: bars, points: { show: false } }))],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 2 && zoom.current) {
            zoom.current(u.posToVal(u.select.left, "x") * 1000, u.posToVal(u.select.left + u.select.width, "x") * 1000);
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
      },
    };
    plot.current = new uPlot(opts, [xs, ...order.map((i) => stacked[i])] as uPlot.AlignedData, el);
    return () => { plot.current?.destroy(); plot.current = null; };
  }, [xs, stepS, groups, height]);

  useWidth(host, (w) => plot.current?.setSize({ width: w, height }));
  return <div ref={host} role="img" aria-label={ariaLabel} data-testid="histogram" className={cn("w-full cursor-crosshair", className)} />;
}

export function compact(v: number): string {
  if (Math.abs(v) >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
  if (Math.abs(v) >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (Math.abs(v) >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}
