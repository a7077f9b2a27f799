/** The frame around every page: navigation (a sidebar, or a top bar in a narrow window) and the content. */
import type { ReactNode } from "react";
import { Link, Outlet } from "@tanstack/react-router";
import { useQuery } from "@tanstack/react-query";
import { health } from "../api/endpoints";
import { cn } from "../lib/cn";
import { Icon } from "./ui/icons";

const NAV = [
  { to: "/logs", label: "Logs", icon: "logs" },
  { to: "/traces", label: "Traces", icon: "traces" },
  { to: "/services", label: "Services", icon: "services" },
  { to: "/sql", label: "SQL", icon: "sql" },
  { to: "/pipeline", label: "Pipeline", icon: "pipeline" },
] as const;

function HealthDot() {
  const { data, isError } = useQuery({ queryKey: ["health"], queryFn: ({ signal }) => health(signal), refetchInterval: 15_000, retry: false });
  const status = isError ? "down" : data?.status ?? "starting";
  const color = status === "ok" ? "bg-ok" : status === "degraded" || status === "starting" ? "bg-warn" : "bg-err";
  return <span className={cn("inline-block size-2 rounded-full", color)} title={`Pipeline: ${status}`} aria-label={`Pipeline ${status}`} />;
}

export function Shell() {
  return (
    <div className="flex h-full flex-col md:flex-row">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:z-50 focus:bg-panel focus:p-2">Skip to content</a>
      <nav aria-label="Main" className="flex shrink-0 items-center gap-1 overflow-x-auto border-b border-border bg-panel px-2 py-1 md:w-44 md:flex-col md:items-stretch md:border-r md:border-b-0 md:px-2 md:py-3">
        <Link to="/logs" className="mr-2 flex items-center gap-1.5 px-2 py-1 font-semibold text-accent md:mb-3 md:mr-0 md:text-lg">
          <span aria-hidden>✦</span><span className="max-sm:hidden">Maple</span>
        </Link>
        {NAV.map((n) => (
          <Link key={n.to} to={n.to}
            title={n.label}
            className="flex items-center gap-2 rounded-md px-2 py-1.5 text-sm text-muted hover:bg-black/5 hover:text-fg"
            activeProps={{ className: "bg-accent-soft !text-accent font-medium" }}>
            <Icon name={n.icon} />
            <span className="max-sm:sr-only">{n.label}</span>
            {n.to === "/pipeline" && <span className="md:ml-auto"><HealthDot /></span>}
          </Link>
        ))}
      </nav>
      <main id="main" className="flex min-h-0 min-w-0 flex-1 flex-col overflow-hidden">
        <Outlet />
      </main>
    </div>
  );
}

export function PageHeader({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <header className="flex flex-wrap items-center gap-2 border-b border-border bg-panel px-3 py-2">
      <h1 className="mr-2 text-base font-semibold">{title}</h1>
      {children}
    </header>
  );
}
