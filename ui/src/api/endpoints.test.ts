import { describe, expect, it } from "vitest";
import { rfc3339ToNs } from "./endpoints";

describe("timestamps from the API", () => {
  it("keeps every nanosecond of an RFC 3339 string", () => {
    expect(rfc3339ToNs("2026-11-28T12:00:00.123456789Z")).toBe(1795867200123456789n);
    expect(rfc3339ToNs("2026-11-28T12:00:00Z")).toBe(1795867200000000000n);
    expect(rfc3339ToNs("2026-11-28T13:00:00.5+01:00")).toBe(1795867200500000000n);
  });
});
