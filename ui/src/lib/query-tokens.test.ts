import { describe, expect, it } from "vitest";
import { fieldPrefixAt, tokenizeQuery } from "./query-tokens";

const kinds = (q: string) => tokenizeQuery(q).map((t) => [q.slice(t.from, t.to), t.type]);

describe("query tokens", () => {
  it("finds fields, phrases, operators and negation", () => {
    expect(kinds('level:error service:api "connection refused"')).toEqual([
      ["level:", "field"], ["error", "word"], ["service:", "field"], ["api", "word"], ['"connection refused"', "string"]]);
    expect(kinds("-foo AND (a OR NOT b)")).toEqual([
      ["-", "neg"], ["foo", "word"], ["AND", "op"], ["(", "paren"], ["a", "word"], ["OR", "op"], ["NOT", "op"], ["b", "word"], [")", "paren"]]);
  });

  it("marks comparisons and ranges", () => {
    expect(kinds("duration:>=1000 status:[500 TO 599]")).toEqual([
      ["duration:", "field"], [">=1000", "range"], ["status:", "field"], ["[500 TO 599]", "range"]]);
  });

  it("keeps hyphens inside words and wildcards in values", () => {
    expect(kinds("k8s.pod.name:payment-*")).toEqual([["k8s.pod.name:", "field"], ["payment-*", "word"]]);
  });

  it("survives unterminated input while typing", () => {
    expect(kinds('body:"half')).toEqual([["body:", "field"], ['"half', "string"]]);
    expect(kinds("status:[500 TO")).toEqual([["status:", "field"], ["[500 TO", "range"]]);
  });

  it("knows when the cursor is on a field name", () => {
    expect(fieldPrefixAt("level:error ser", 15)).toEqual({ from: 12, text: "ser" });
    expect(fieldPrefixAt("-ser", 4)).toEqual({ from: 1, text: "ser" });
    expect(fieldPrefixAt('"a b', 4)).toBeNull();
  });
});
