import { describe, expect, it } from "vitest";
import {
  describeRange, formatDuration, isTimeBound, pickStep, resolveBound, resolveRange, zoomOut, zoomTo,
} from "./time";

const NOW = Date.UTC(2026, 10, 28, 12, 0, 0);

describe("time ranges", () => {
  it("resolves relative and absolute bounds", () => {
    expect(resolveBound("now", NOW)).toBe(NOW);
    expect(resolveBound("now-15m", NOW)).toBe(NOW - 15 * 60_000);
    expect(resolveBound("now-2h", NOW)).toBe(NOW - 7_200_000);
    expect(resolveBound("now-7d", NOW)).toBe(NOW - 7 * 86_400_000);
    expect(resolveBound("1764331200000", NOW)).toBe(1764331200000);
  });

  it("rejects what it does not understand, and ranges that end before they start", () => {
    expect(() => resolveBound("yesterday", NOW)).toThrow(/not a time/);
    expect(() => resolveBound("now+5m", NOW)).toThrow();
    expect(isTimeBound("now-5x")).toBe(false);
    expect(() => resolveRange({ from: "now", to: "now-1h" }, NOW)).toThrow(/starts after/);
  });

  it("zooms to a selection in whole seconds, whichever way it was dragged", () => {
    expect(zoomTo(NOW + 1500, NOW - 250)).toEqual({ from: String(NOW - 1000), to: String(NOW + 2000) });
    expect(zoomTo(NOW, NOW)).toEqual({ from: String(NOW), to: String(NOW + 1000) });
  });

  it("zooms out around the centre without passing now", () => {
    const r = zoomOut({ from: String(NOW - 4_000_000), to: String(NOW - 2_000_000) }, NOW);
    expect(resolveRange(r, NOW)).toEqual({ fromMs: NOW - 5_000_000, toMs: NOW - 1_000_000 });
    const clamped = resolveRange(zoomOut({ from: "now-1h", to: "now" }, NOW), NOW);
    expect(clamped.toMs).toBe(NOW);
    expect(clamped.toMs - clamped.fromMs).toBe(7_200_000);
  });

  it("picks the smallest bucket that keeps the bar count bounded", () => {
    expect(pickStep(60_000, 80)).toBe(1);
    expect(pickStep(3_600_000, 80)).toBe(60);
    expect(pickStep(86_400_000, 80)).toBe(1800);
    expect(pickStep(7 * 86_400_000, 80)).toBe(10800);
    expect(pickStep(1e12, 80)).toBe(86400);
  });

  it("describes presets by name and other ranges by their ends", () => {
    expect(describeRange({ from: "now-1h", to: "now" }, NOW)).toBe("Last 1 hour");
    expect(describeRange({ from: "now-3h", to: "now" }, NOW)).toBe("Last 3h");
    expect(describeRange({ from: String(NOW - 60_000), to: String(NOW) }, NOW)).toMatch(/→/);
  });

  it("formats durations at a readable precision", () => {
    expect(formatDuration(0.25)).toBe("250 µs");
    expect(formatDuration(3.456)).toBe("3.46 ms");
    expect(formatDuration(123.44)).toBe("123.4 ms");
    expect(formatDuration(1240)).toBe("1.24 s");
    expect(formatDuration(125_000)).toBe("2m 05s");
  });
});
