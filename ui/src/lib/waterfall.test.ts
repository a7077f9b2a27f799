import { describe, expect, it } from "vitest";
import { layoutWaterfall, niceTicks, nsToRelativeMs, type WaterfallSpan } from "./waterfall";

const span = (spanId: string, parentSpanId: string, startMs: number, durationMs: number, extra: Partial<WaterfallSpan> = {}) =>
  ({ spanId, parentSpanId, startMs, durationMs, service: "svc", name: spanId, error: false, ...extra });

describe("waterfall layout", () => {
  // root 0..100; a 10..40 (a1 15..25, a2 12..14), b 50..90 (error), whatever order they arrive in
  const spans = [
    span("b", "root", 50, 40, { error: true }),
    span("a1", "a", 15, 10),
    span("root", "", 0, 100),
    span("a2", "a", 12, 2),
    span("a", "root", 10, 30),
  ];

  it("nests children under parents, in start order, depth first", () => {
    const { rows, depth } = layoutWaterfall(spans);
    expect(rows.map((r) => [r.span.spanId, r.depth])).toEqual([["root", 0], ["a", 1], ["a2", 2], ["a1", 2], ["b", 1]]);
    expect(depth).toBe(3);
  });

  it("places bars as fractions of the trace", () => {
    const { rows, durationMs } = layoutWaterfall(spans);
    expect(durationMs).toBe(100);
    const b = rows.find((r) => r.span.spanId === "b")!;
    expect(b.offset).toBeCloseTo(0.5);
    expect(b.width).toBeCloseTo(0.4);
  });

  it("counts children and the errors below a span", () => {
    const { rows } = layoutWaterfall(spans);
    const root = rows[0];
    expect(root.childCount).toBe(2);
    expect(root.errorsBelow).toBe(1);
    expect(rows.find((r) => r.span.spanId === "a")!.errorsBelow).toBe(0);
  });

  it("hides what is below a collapsed span but keeps the span", () => {
    const { rows } = layoutWaterfall(spans, new Set(["a"]));
    expect(rows.map((r) => r.span.spanId)).toEqual(["root", "a", "b"]);
  });

  it("shows spans whose parent is missing as roots, marked", () => {
    const { rows } = layoutWaterfall([span("root", "", 0, 10), span("late", "gone", 5, 1)]);
    expect(rows.map((r) => [r.span.spanId, r.depth, r.orphan])).toEqual([["root", 0, false], ["late", 0, true]]);
  });

  it("keeps spans caught in a parent cycle, and terminates", () => {
    const { rows } = layoutWaterfall([span("x", "y", 0, 1), span("y", "x", 1, 1)]);
    expect(rows.map((r) => r.span.spanId).sort()).toEqual(["x", "y"]);
  });

  it("walks deep traces without recursion limits", () => {
    const deep = Array.from({ length: 20000 }, (_, i) => span(`s${i}`, i ? `s${i - 1}` : "", i, 20000 - i));
    const { rows, depth } = layoutWaterfall(deep);
    expect(rows).toHaveLength(20000);
    expect(depth).toBe(20000);
  });

  it("handles an empty trace", () => {
    expect(layoutWaterfall([]).rows).toEqual([]);
  });
});

describe("ticks and time", () => {
  it("gives round ticks covering the duration", () => {
    expect(niceTicks(100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(7.3)).toEqual([0, 2, 4, 6]);
    expect(niceTicks(0)).toEqual([0]);
  });

  it("keeps nanosecond differences that doubles would round away", () => {
    expect(nsToRelativeMs("1764331200123456789", "1764331200123000000")).toBeCloseTo(0.456789, 9);
  });
});
