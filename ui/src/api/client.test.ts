import { describe, expect, it } from "vitest";
import { buildUrl, parseErrorBody } from "./client";

describe("API client", () => {
  it("builds query strings without empty values and with repeated keys", () => {
    expect(buildUrl("/api/v1/logs/search", { q: "a b", limit: 100, cursor: undefined, service: "" }))
      .toBe("/api/v1/logs/search?q=a+b&limit=100");
    expect(buildUrl("/x", { service: ["a", "b"] })).toBe("/x?service=a&service=b");
  });

  it("reads FastAPI's error shapes", () => {
    expect(parseErrorBody(400, { detail: "from is after to" }, "x").message).toBe("from is after to");
    const v = parseErrorBody(422, { detail: [{ loc: ["query", "limit"], msg: "Input should be less than 10001" }] }, "x");
    expect(v.message).toBe("limit: Input should be less than 10001");
    expect(v.field).toBe("limit");
    const syntax = parseErrorBody(400, { error: { code: "syntax_error", message: "unexpected ')'", position: 7, expected: ["a term"] } }, "x");
    expect(syntax.position).toEqual({ start: 7, end: 8 });
    expect(syntax.message).toBe("unexpected ')' (expected a term)");
    const field = parseErrorBody(400, { error: { code: "invalid_parameter", message: "from is after to", field: "from" } }, "x");
    expect([field.message, field.field, field.position]).toEqual(["from is after to", "from", undefined]);
    expect(parseErrorBody(502, "Bad Gateway", "502").message).toBe("Bad Gateway");
    expect(parseErrorBody(404, "<!DOCTYPE html><html>...</html>", "404 Not Found from /api/v1/x").message).toBe("404 Not Found from /api/v1/x");
  });
});
