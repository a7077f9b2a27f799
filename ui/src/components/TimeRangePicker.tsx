/** Presets, a custom absolute range, zoom out and refresh; the range lives in the URL. */
import { useEffect, useRef, useState } from "react";
import { PRESETS, describeRange, resolveRange, zoomOut, type TimeRange } from "../lib/time";
import { Button } from "./ui/button";
import { Input, Label } from "./ui/input";
import { Icon } from "./ui/icons";

const toLocalInput = (ms: number) => {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 19);
};

export function TimeRangePicker({ value, onChange, onRefresh }: { value: TimeRange; onChange: (r: TimeRange) => void; onRefresh?: () => void }) {
  const [open, setOpen] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  const resolved = (() => { try { return resolveRange(value); } catch { return null; } })();
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    if (!open) return;
    if (resolved) { setFrom(toLocalInput(resolved.fromMs)); setTo(toLocalInput(resolved.toMs)); }
    const onDoc = (e: MouseEvent) => { if (!box.current?.contains(e.target as Node)) setOpen(false); };
    const onKey = (e: KeyboardEvent) => { if (e.key === "Escape") setOpen(false); };
    document.addEventListener("mousedown", onDoc);
    document.addEventListener("keydown", onKey);
    return () => { document.removeEventListener("mousedown", onDoc); document.removeEventListener("keydown", onKey); };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open]);

  const applyCustom = () => {
    const f = new Date(from).getTime();
    const t = new Date(to).getTime();
    if (!Number.isFinite(f) || !Number.isFinite(t)) return setProblem("Both ends need a date and time.");
    if (f >= t) return setProblem("The start must be before the end.");
    setProblem(null);
    setOpen(false);
    onChange({ from: String(f), to: String(t) });
  };

  return (
    <div ref={box} className="relative flex items-center gap-1">
      <Button aria-haspopup="dialog" aria-expanded={open} onClick={() => setOpen((o) => !o)} data-testid="time-range" title="Time range">
        <Icon name="clock" /> {describeRange(value)}
      </Button>
      <Button variant="ghost" size="sm" title="Zoom out (twice as wide)" aria-label="Zoom out" onClick={() => onChange(zoomOut(value))}>−</Button>
      {onRefresh && <Button variant="ghost" size="sm" title="Refresh" aria-label="Refresh" onClick={onRefresh}><Icon name="refresh" /></Button>}
      {open && (
        <div role="dialog" aria-label="Time range" className="absolute top-9 right-0 z-30 flex w-[min(22rem,90vw)] flex-col gap-3 rounded-lg border border-border bg-panel p-3 shadow-lg">
          <div className="grid grid-cols-2 gap-1">
            {PRESETS.map((p) => (
              <Button key={p.from} variant={value.from === p.from && value.to === "now" ? "primary" : "default"} size="sm"
                onClick={() => { setOpen(false); onChange({ from: p.from, to: "now" }); }}>{p.label}</Button>
            ))}
          </div>
          <form className="flex flex-col gap-2" onSubmit={(e) => { e.preventDefault(); applyCustom(); }}>
            <Label>From<Input type="datetime-local" step="1" value={from} onChange={(e) => setFrom(e.target.value)} /></Label>
            <Label>To<Input type="datetime-local" step="1" value={to} onChange={(e) => setTo(e.target.value)} /></Label>
            {problem && <p className="text-xs text-err">{problem}</p>}
            <Button type="submit" variant="primary" size="sm">Apply</Button>
          </form>
        </div>
      )}
    </div>
  );
}
