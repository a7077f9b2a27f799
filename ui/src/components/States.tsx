/** Loading, empty and error states: each says what is happening and what the user can do next. */
import type { ReactNode } from "react";
import { ApiError } from "../api/client";
import { Button } from "./ui/button";
import { cn } from "../lib/cn";

export function Loading({ label = "Loading…", className }: { label?: string; className?: string }) {
  return (
    <div role="status" aria-live="polite" className={cn("flex items-center gap-2 px-4 py-6 text-sm text-muted", className)}>
      <span className="size-3 animate-spin rounded-full border-2 border-muted/30 border-t-accent" aria-hidden />
      {label}
    </div>
  );
}

export function Empty({ title, children, className, icon = "○" }: { title: string; children?: ReactNode; className?: string; icon?: string }) {
  return (
    <div data-testid="empty-state" className={cn("flex flex-col items-center justify-center gap-1 px-6 py-10 text-center", className)}>
      <div className="text-2xl text-muted/60" aria-hidden>{icon}</div>
      <p className="font-medium">{title}</p>
      {children && <div className="max-w-md text-sm text-muted">{children}</div>}
    </div>
  );
}

export function ErrorState({ error, onRetry, className, title }: { error: unknown; onRetry?: () => void; className?: string; title?: string }) {
  const api = error instanceof ApiError ? error : null;
  const message = error instanceof Error ? error.message : String(error);
  const heading = title ?? (api?.status === 0 ? "Cannot reach Maple" : api && api.status >= 500 ? "Maple could not answer" : "This request was refused");
  return (
    <div role="alert" data-testid="error-state" className={cn("m-3 flex flex-col gap-2 rounded-lg border border-err/30 bg-err-soft px-4 py-3 text-sm", className)}>
      <p className="font-semibold text-err">{heading}{api && api.status > 0 ? ` (${api.status})` : ""}</p>
      <p className="font-mono text-xs break-words whitespace-pre-wrap text-fg">{message}</p>
      {onRetry && <div><Button size="sm" onClick={onRetry}>Try again</Button></div>}
    </div>
  );
}

/** A skeleton of table rows while the first page loads, so the layout does not jump. */
export function SkeletonRows({ rows = 8 }: { rows?: number }) {
  return (
    <div role="status" aria-label="Loading" className="flex flex-col gap-2 p-3">
      {Array.from({ length: rows }, (_, i) => (
        <div key={i} className="h-4 animate-pulse rounded bg-black/5" style={{ width: `${60 + ((i * 37) % 40)}%` }} />
      ))}
    </div>
  );
}
