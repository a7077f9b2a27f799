import { describe, expect, it } from "vitest";
import {
  addClause, fieldClause, parseLogsSearch, parseSearch, parseSqlSearch, parseTracesSearch, stringifySearch,
} from "./search-state";

describe("URL state", () => {
  it("round-trips the log explorer's state through a flat query string", () => {
    const state = { q: 'level:error "connection refused"', from: "1764331200000", to: "1764334800000", live: true, log: "abc" };
    const url = stringifySearch(state);
    expect(url).toBe("?q=level%3Aerror+%22connection+refused%22&from=1764331200000&to=1764334800000&live=1&log=abc");
    expect(parseLogsSearch(parseSearch(url))).toEqual(state);
  });

  it("leaves defaults out of links", () => {
    expect(stringifySearch(parseLogsSearch({}))).toBe("");
    expect(stringifySearch(parseTracesSearch({ service: "api" }))).toBe("?service=api");
  });

  it("falls back to defaults for values it cannot use", () => {
    const s = parseLogsSearch({ from: "yesterday", to: "now", live: "yes" });
    expect([s.from, s.to, s.live]).toEqual(["now-1h", "now", false]);
    const t = parseTracesSearch({ minMs: "-5", maxMs: "abc", status: "weird" });
    expect([t.minMs, t.maxMs, t.status]).toEqual([undefined, undefined, "any"]);
    expect(parseTracesSearch({ minMs: "250", status: "error" })).toMatchObject({ minMs: 250, status: "error" });
    expect(parseSqlSearch({ chart: "pie" }).chart).toBe("none");
  });

  it("keeps a relative range relative, so a shared link means the last hour", () => {
    expect(parseLogsSearch(parseSearch("?from=now-6h"))).toMatchObject({ from: "now-6h", to: "now" });
  });
});

describe("click-to-filter clauses", () => {
  it("quotes values that are not bare words", () => {
    expect(fieldClause("service", "checkout")).toBe("service:checkout");
    expect(fieldClause("http.url", "/a b")).toBe('http.url:"/a b"');
    expect(fieldClause("msg", 'say "hi"')).toBe('msg:"say \\"hi\\""');
    expect(fieldClause("k", "a:b")).toBe('k:"a:b"');
    expect(fieldClause("k", "OR")).toBe('k:"OR"');
    expect(fieldClause("service", "api", true)).toBe("-service:api");
  });

  it("adds a clause once, and keeps OR queries' meaning", () => {
    expect(addClause("", "a:1")).toBe("a:1");
    expect(addClause("timeout", "a:1")).toBe("timeout a:1");
    expect(addClause("timeout a:1", "a:1")).toBe("timeout a:1");
    expect(addClause("x OR y", "a:1")).toBe("(x OR y) a:1");
  });
});
