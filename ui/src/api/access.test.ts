import { describe, expect, it } from "vitest";
import { can } from "./access";
import { describeCondition, formatWindow } from "./alerts";

describe("roles", () => {
  it("ranks admin over editor over viewer", () => {
    expect(can("admin", "editor")).toBe(true);
    expect(can("editor", "editor")).toBe(true);
    expect(can("viewer", "editor")).toBe(false);
    expect(can(undefined, "viewer")).toBe(false);
  });
});

describe("conditions in words", () => {
  it("says what a rule watches", () => {
    expect(describeCondition({ kind: "search", signal: "logs", q: "level:error", window_s: 300, group_by_service: true, op: ">", threshold: 10 }))
      .toBe("log records matching “level:error” in 5 min > 10, per service");
    expect(describeCondition({ kind: "pipeline", measure: "lag_seconds", window_s: 300, op: ">", threshold: 60 })).toBe("consumer lag (s) > 60");
    expect(describeCondition({ kind: "metric", query: "sum(rate(x[5m]))", op: "<", threshold: 1 })).toBe("sum(rate(x[5m])) < 1");
    expect(formatWindow(90)).toBe("90 s");
    expect(formatWindow(7200)).toBe("2 h");
  });
});
