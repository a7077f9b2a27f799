/** The frame around every page: navigation (a sidebar, or a top bar in a narrow window) and the content. */
import type { ReactNode } from "react";
import { Link, Outlet, useNavigate } from "@tanstack/react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { health } from "../api/endpoints";
import { can, logout, me, switchTeam } from "../api/access";
import { ME_KEY } from "../router";
import { cn } from "../lib/cn";
import { Icon } from "./ui/icons";

const NAV = [
  { to: "/logs", label: "Logs", icon: "logs" },
  { to: "/traces", label: "Traces", icon: "traces" },
  { to: "/services", label: "Services", icon: "services" },
  { to: "/sql", label: "SQL", icon: "sql" },
  { to: "/alerts", label: "Alerts", icon: "bell" },
  { to: "/saved", label: "Saved", icon: "bookmark" },
  { to: "/dashboards", label: "Dashboards", icon: "grid" },
  { to: "/pipeline", label: "Pipeline", icon: "pipeline" },
] as const;

/** Who is logged in, in which team (switchable), the team's settings for admins, and logging out. */
function Account() {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const team = useMutation({
    mutationFn: switchTeam,
    onSuccess: (next) => { queryClient.clear(); queryClient.setQueryData(ME_KEY, next); navigate({ to: "/logs", search: {} }); },
  });
  const out = useMutation({
    mutationFn: logout,
    onSettled: () => { queryClient.clear(); navigate({ to: "/login", search: {} }); },
  });
  const m = who.data;
  if (!m) return null;
  return (
    <div className="flex items-center gap-1 md:mt-auto md:flex-col md:items-stretch md:gap-1 md:border-t md:border-border md:pt-2" data-testid="account">
      {m.teams.length > 1 ? (
        <select aria-label="Team" value={m.team} onChange={(e) => team.mutate(e.target.value)} data-testid="team-switch"
          className="h-7 rounded-md border border-border bg-panel px-1 text-xs">
          {m.teams.map((t) => <option key={t.slug} value={t.slug}>{t.name || t.slug}</option>)}
        </select>
      ) : <span className="px-2 text-xs font-medium" data-testid="team-name" title="Your team">{m.team}</span>}
      <span className="px-2 text-xs text-muted max-md:hidden" data-testid="role">{m.role}{m.superuser ? " · superuser" : ""}</span>
      <span className="truncate px-2 text-xs text-muted max-md:hidden" title={m.email ?? m.key ?? ""}>{m.email ?? `${m.key}…`}</span>
      {can(m.role, "admin") && <>
        <Link to="/settings/users" className="rounded-md px-2 py-1 text-xs text-muted hover:bg-black/5 hover:text-fg" activeProps={{ className: "!text-accent" }}>Users</Link>
        <Link to="/settings/keys" className="rounded-md px-2 py-1 text-xs text-muted hover:bg-black/5 hover:text-fg" activeProps={{ className: "!text-accent" }}>API keys</Link>
      </>}
      {m.email && <button type="button" onClick={() => out.mutate()} className="rounded-md px-2 py-1 text-left text-xs text-muted hover:bg-black/5 hover:text-fg" data-testid="logout">Log out</button>}
    </div>
  );
}

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
        <Account />
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
