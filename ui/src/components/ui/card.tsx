import type { HTMLAttributes, ReactNode } from "react";
import { cn } from "../../lib/cn";

export function Card({ className, ...props }: HTMLAttributes<HTMLDivElement>) {
  return <section className={cn("rounded-lg border border-border bg-panel", className)} {...props} />;
}

export function CardHeader({ title, children, className }: { title: ReactNode; children?: ReactNode; className?: string }) {
  return (
    <header className={cn("flex flex-wrap items-center justify-between gap-2 border-b border-border px-3 py-2", className)}>
      <h2 className="text-sm font-semibold">{title}</h2>
      {children}
    </header>
  );
}

export function Badge({ className, tone = "default", ...props }: HTMLAttributes<HTMLSpanElement> & { tone?: "default" | "err" | "ok" | "warn" | "accent" }) {
  const tones = {
    default: "bg-black/5 text-fg",
    err: "bg-err-soft text-err",
    ok: "bg-green-50 text-ok",
    warn: "bg-amber-50 text-warn",
    accent: "bg-accent-soft text-accent",
  };
  return <span className={cn("inline-flex items-center gap-1 rounded px-1.5 py-0.5 text-xs font-medium whitespace-nowrap", tones[tone], className)} {...props} />;
}

export function Stat({ label, value, hint, tone }: { label: string; value: ReactNode; hint?: ReactNode; tone?: "err" | "ok" | "warn" }) {
  const color = tone === "err" ? "text-err" : tone === "ok" ? "text-ok" : tone === "warn" ? "text-warn" : "text-fg";
  return (
    <div className="min-w-0 rounded-lg border border-border bg-panel px-3 py-2">
      <div className="text-xs text-muted">{label}</div>
      <div className={cn("text-xl font-semibold tabular-nums", color)}>{value}</div>
      {hint && <div className="truncate text-xs text-muted">{hint}</div>}
    </div>
  );
}

export function Kbd({ children }: { children: ReactNode }) {
  return <kbd className="rounded border border-border bg-bg px-1 font-mono text-[11px] text-muted">{children}</kbd>;
}
