import { describe, expect, it } from "vitest";
import { layoutServiceMap } from "./service-map";

describe("service map layout", () => {
  const edges = [
    { caller: "frontend", callee: "checkout", calls: 100, errors: 5 },
    { caller: "checkout", callee: "payments", calls: 80, errors: 0 },
    { caller: "frontend", callee: "payments", calls: 10, errors: 0 },
    { caller: "checkout", callee: "db", calls: 1000, errors: 0 },
  ];

  it("puts callers left of callees, by the longest path", () => {
    const { nodes } = layoutServiceMap(edges);
    const col = Object.fromEntries(nodes.map((n) => [n.id, n.column]));
    expect(col).toEqual({ frontend: 0, checkout: 1, payments: 2, db: 2 });
    const x = Object.fromEntries(nodes.map((n) => [n.id, n.x]));
    expect(x.frontend).toBeLessThan(x.checkout);
    expect(x.checkout).toBeLessThan(x.payments);
  });

  it("sizes nodes by traffic and edges by calls", () => {
    const { nodes, edges: out } = layoutServiceMap(edges);
    const r = Object.fromEntries(nodes.map((n) => [n.id, n.r]));
    expect(r.db).toBeGreaterThan(r.payments);
    const byPair = Object.fromEntries(out.map((e) => [`${e.caller}>${e.callee}`, e]));
    expect(byPair["checkout>db"].width).toBeGreaterThan(byPair["frontend>payments"].width);
    expect(byPair["frontend>checkout"].errorShare).toBeCloseTo(0.05);
  });

  it("uses given traffic figures and shows services without edges", () => {
    const { nodes } = layoutServiceMap([], new Map([["lonely", { calls: 3, errors: 0 }]]));
    expect(nodes.map((n) => n.id)).toEqual(["lonely"]);
  });

  it("tolerates cycles and self-calls", () => {
    const { nodes } = layoutServiceMap([
      { caller: "a", callee: "b", calls: 1, errors: 0 }, { caller: "b", callee: "a", calls: 1, errors: 0 },
      { caller: "c", callee: "c", calls: 1, errors: 0 }]);
    expect(nodes.map((n) => n.id).sort()).toEqual(["a", "b", "c"]);
    for (const n of nodes) expect(Number.isFinite(n.x) && Number.isFinite(n.y)).toBe(true);
  });
});
