/**
 * Routes, with every page's state in the URL (search parameters parsed in lib/search-state.ts).
 * Every page but /login sits under the `app` layout, whose `beforeLoad` asks the API who the user is: without
 * a session it goes to /login?redirect=<where they were>. A 401 later on (the session expired) does the same
 * through the API client's `onUnauthorized` hook (main.tsx).
 */
import {
  createRootRouteWithContext, createRoute, createRouter, lazyRouteComponent, Outlet, redirect, type SearchSchemaInput,
} from "@tanstack/react-router";
import type { QueryClient } from "@tanstack/react-query";
import { ApiError } from "./api/client";
import { me } from "./api/access";
import { Shell } from "./components/Shell";
import { NotFound } from "./pages/NotFound";
import { LogsPage } from "./pages/Logs";
import { TracesPage } from "./pages/Traces";
import { TracePage } from "./pages/Trace";
import { ServicesPage } from "./pages/Services";
import { ServicePage } from "./pages/Service";
import { PipelinePage } from "./pages/Pipeline";
import { LoginPage } from "./pages/Login";
import { AlertsPage } from "./pages/Alerts";
import { AlertPage } from "./pages/Alert";
import { KeysPage } from "./pages/Keys";
import { UsersPage } from "./pages/Users";
import { SavedPage } from "./pages/Saved";
import { DashboardsPage, DashboardPage } from "./pages/Dashboards";
import {
  parseAlertsSearch, parseLoginSearch, parseLogsSearch, parseRangeSearch, parseSavedSearch, parseSearch, parseSqlSearch,
  parseTraceSearch, parseTracesSearch, stringifySearch,
} from "./lib/search-state";

export type RouterContext = { queryClient: QueryClient };

/** Links may give any subset of a page's parameters; the parser fills in the rest. */
function optional<T>(parse: (raw: Record<string, unknown>) => T) {
  return (raw: Partial<T> & SearchSchemaInput): T => parse(raw as Record<string, unknown>);
}

export const ME_KEY = ["me"] as const;

const root = createRootRouteWithContext<RouterContext>()({ component: Outlet, notFoundComponent: NotFound });

const login = createRoute({ getParentRoute: () => root, path: "/login", validateSearch: optional(parseLoginSearch), component: LoginPage });

const app = createRoute({
  getParentRoute: () => root, id: "app", component: Shell, notFoundComponent: NotFound,
  beforeLoad: async ({ context, location }) => {
    try {
      const who = await context.queryClient.ensureQueryData({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
      return { me: who };
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw redirect({ to: "/login", search: { redirect: location.href } });
      throw e;
    }
  },
});

const index = createRoute({ getParentRoute: () => app, path: "/", beforeLoad: () => { throw redirect({ to: "/logs", search: {} }); } });
const logs = createRoute({ getParentRoute: () => app, path: "/logs", validateSearch: optional(parseLogsSearch), component: LogsPage });
const traces = createRoute({ getParentRoute: () => app, path: "/traces", validateSearch: optional(parseTracesSearch), component: TracesPage });
const trace = createRoute({ getParentRoute: () => app, path: "/traces/$traceId", validateSearch: optional(parseTraceSearch), component: TracePage });
const services = createRoute({ getParentRoute: () => app, path: "/services", validateSearch: optional(parseRangeSearch), component: ServicesPage });
const service = createRoute({ getParentRoute: () => app, path: "/services/$service", validateSearch: optional(parseRangeSearch), component: ServicePage });
const sql = createRoute({ getParentRoute: () => app, path: "/sql", validateSearch: optional(parseSqlSearch),
  // the SQL language support is the largest piece only this page needs: loaded when it is opened
  component: lazyRouteComponent(() => import("./pages/Sql"), "SqlPage") });
const pipeline = createRoute({ getParentRoute: () => app, path: "/pipeline", component: PipelinePage });
const alerts = createRoute({ getParentRoute: () => app, path: "/alerts", validateSearch: optional(parseAlertsSearch), component: AlertsPage });
const alert = createRoute({ getParentRoute: () => app, path: "/alerts/$ruleId", component: AlertPage });
const saved = createRoute({ getParentRoute: () => app, path: "/saved", validateSearch: optional(parseSavedSearch), component: SavedPage });
const dashboardList = createRoute({ getParentRoute: () => app, path: "/dashboards", component: DashboardsPage });
const dashboardView = createRoute({ getParentRoute: () => app, path: "/dashboards/$dashboardId", validateSearch: optional(parseRangeSearch), component: DashboardPage });
const keys = createRoute({ getParentRoute: () => app, path: "/settings/keys", component: KeysPage });
const users = createRoute({ getParentRoute: () => app, path: "/settings/users", component: UsersPage });

const routeTree = root.addChildren([
  login,
  app.addChildren([index, logs, traces, trace, services, service, sql, pipeline, alerts, alert, saved, dashboardList, dashboardView, keys, users]),
]);

export function createAppRouter(queryClient: QueryClient) {
  return createRouter({
    routeTree,
    context: { queryClient },
    parseSearch,
    stringifySearch,
    defaultPreload: "intent",
    scrollRestoration: false,
  });
}

declare module "@tanstack/react-router" {
  interface Register {
    router: ReturnType<typeof createAppRouter>;
  }
}
