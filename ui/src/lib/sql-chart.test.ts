import { describe, expect, it } from "vitest";
import { planChart, toEpochSeconds, toNumber } from "./sql-chart";

describe("SQL result charts", () => {
  it("plots time series when the first column is a time", () => {
    expect(planChart([{ name: "t", type: "DateTime" }, { name: "n", type: "UInt64" }, { name: "s", type: "String" }, { name: "a", type: "Float64" }]))
      .toEqual({ kind: "time", x: 0, ys: [1, 3] });
  });

  it("plots bars for a label and a number", () => {
    expect(planChart([{ name: "svc", type: "LowCardinality(String)" }, { name: "c", type: "UInt64" }])).toEqual({ kind: "bar", x: 0, y: 1 });
  });

  it("says why it cannot chart", () => {
    expect(planChart([{ name: "x", type: "String" }]).kind).toBe("none");
    expect(planChart([{ name: "x", type: "String" }, { name: "y", type: "String" }]).kind).toBe("none");
  });

  it("reads ClickHouse's time and number formats", () => {
    expect(toEpochSeconds("2026-11-28 12:00:00")).toBe(Date.UTC(2026, 10, 28, 12) / 1000);
    expect(toEpochSeconds("2026-11-28")).toBe(Date.UTC(2026, 10, 28) / 1000);
    expect(toNumber("18446744073709551615")).toBeGreaterThan(1e19);
    expect(toNumber("abc")).toBeNull();
  });
});
