import { describe, expect, it } from "vitest";
import { PALETTE, serviceColor, serviceColors, severityOf } from "./colors";

describe("colours", () => {
  it("maps OTel severity numbers and common texts to one severity", () => {
    expect(severityOf("", 17)).toBe("ERROR");
    expect(severityOf("whatever", 9)).toBe("INFO");
    expect(severityOf("warning")).toBe("WARN");
    expect(severityOf("Err")).toBe("ERROR");
    expect(severityOf("critical")).toBe("FATAL");
    expect(severityOf("")).toBe("UNSET");
  });

  it("gives a service the same colour every time", () => {
    expect(serviceColor("checkout")).toBe(serviceColor("checkout"));
    expect(new Set(["a", "b", "c", "d", "e", "f"].map(serviceColor)).size).toBeGreaterThan(3);
  });

  it("gives services shown together different colours", () => {
    const names = Array.from({ length: PALETTE.length }, (_, i) => `svc-${i}`);
    const colors = serviceColors(names);
    expect(new Set(colors.values()).size).toBe(PALETTE.length);
    expect(serviceColors(["b", "a"]).get("a")).toBe(serviceColor("a"));
  });
});
