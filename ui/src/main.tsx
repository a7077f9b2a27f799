import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { RouterProvider } from "@tanstack/react-router";
import { ApiError, onUnauthorized } from "./api/client";
import { createAppRouter, ME_KEY } from "./router";
import "uplot/dist/uPlot.min.css";
import "./index.css";

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 10_000,
      refetchOnWindowFocus: false,
      // A 4xx will answer the same again: show it at once. Retry only what may pass on a second try.
      retry: (count, error) => count < 2 && !(error instanceof ApiError && error.status >= 400 && error.status < 500),
    },
  },
});

const router = createAppRouter(queryClient);

// The session ended (expired, logged out elsewhere, membership removed): forget it and log in again, back here after.
onUnauthorized(() => {
  const { pathname, searchStr } = router.state.location;
  if (pathname === "/login") return;
  queryClient.removeQueries({ queryKey: ME_KEY });
  router.navigate({ to: "/login", search: { redirect: pathname + searchStr } });
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <RouterProvider router={router} />
    </QueryClientProvider>
  </StrictMode>,
);
