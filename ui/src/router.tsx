/**
 * Routes, with every page's state in the URL (search parameters parsed in lib/search-state.ts).
 * An auth layer (issue 16) adds a /login route and a `beforeLoad` guard on the root here; the API client
 * already reports 401s through `onUnauthorized`.
 */
import { createRootRoute, createRoute, createRouter, lazyRouteComponent, redirect, type SearchSchemaInput } from "@tanstack/react-router";
import { Shell } from "./components/Shell";
import { NotFound } from "./pages/NotFound";
import { LogsPage } from "./pages/Logs";
import { TracesPage } from "./pages/Traces";
import { TracePage } from "./pages/Trace";
import { ServicesPage } from "./pages/Services";
import { ServicePage } from "./pages/Service";
import { PipelinePage } from "./pages/Pipeline";
import {
  parseLogsSearch, parseRangeSearch, parseSearch, parseSqlSearch, parseTraceSearch, parseTracesSearch, stringifySearch,
} from "./lib/search-state";

/** Links may give any subset of a page's parameters; the parser fills in the rest. */
function optional<T>(parse: (raw: Record<string, unknown>) => T) {
  return (raw: Partial<T> & SearchSchemaInput): T => parse(raw as Record<string, unknown>);
}

const root = createRootRoute({ component: Shell, notFoundComponent: NotFound });

const index = createRoute({ getParentRoute: () => root, path: "/", beforeLoad: () => { throw redirect({ to: "/logs", search: {} }); } });
const logs = createRoute({ getParentRoute: () => root, path: "/logs", validateSearch: optional(parseLogsSearch), component: LogsPage });
const traces = createRoute({ getParentRoute: () => root, path: "/traces", validateSearch: optional(parseTracesSearch), component: TracesPage });
const trace = createRoute({ getParentRoute: () => root, path: "/traces/$traceId", validateSearch: optional(parseTraceSearch), component: TracePage });
const services = createRoute({ getParentRoute: () => root, path: "/services", validateSearch: optional(parseRangeSearch), component: ServicesPage });
const service = createRoute({ getParentRoute: () => root, path: "/services/$service", validateSearch: optional(parseRangeSearch), component: ServicePage });
const sql = createRoute({ getParentRoute: () => root, path: "/sql", validateSearch: optional(parseSqlSearch),
  // the SQL language support is the largest piece only this page needs: loaded when it is opened
  component: lazyRouteComponent(() => import("./pages/Sql"), "SqlPage") });
const pipeline = createRoute({ getParentRoute: () => root, path: "/pipeline", component: PipelinePage });

const routeTree = root.addChildren([index, logs, traces, trace, services, service, sql, pipeline]);

export const router = createRouter({
  routeTree,
  parseSearch,
  stringifySearch,
  defaultPreload: "intent",
  scrollRestoration: false,
});

declare module "@tanstack/react-router" {
  interface Register {
    router: typeof router;
  }
}
