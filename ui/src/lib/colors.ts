/** Colours that mean something: severities in a fixed order, services by a stable hash of their name. */

export const SEVERITIES = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "UNSET"] as const;
export type Severity = (typeof SEVERITIES)[number];

export const SEVERITY_COLOR: Record<Severity, string> = {
  TRACE: "#a8a29e",
  DEBUG: "#93c5fd",
  INFO: "#60a5fa",
  WARN: "#f59e0b",
  ERROR: "#dc2626",
  FATAL: "#7f1d1d",
  UNSET: "#d6d3d1",
};

/** A severity from the OTel number (1-24) or a text like "warning", "Error", "err". */
export function severityOf(text: string, num = 0): Severity {
  if (num >= 21) return "FATAL";
  if (num >= 17) return "ERROR";
  if (num >= 13) return "WARN";
  if (num >= 9) return "INFO";
  if (num >= 5) return "DEBUG";
  if (num >= 1) return "TRACE";
  const t = text.trim().toUpperCase();
  if (t.startsWith("FATAL") || t === "CRITICAL" || t === "PANIC" || t === "EMERG" || t === "ALERT" || t === "CRIT") return "FATAL";
  if (t.startsWith("ERR")) return "ERROR";
  if (t.startsWith("WARN")) return "WARN";
  if (t.startsWith("INFO") || t === "NOTICE") return "INFO";
  if (t.startsWith("DEBUG")) return "DEBUG";
  if (t.startsWith("TRACE")) return "TRACE";
  return "UNSET";
}

// Ten hues that stay apart from each other and from the error red, dark enough for white text on a bar.
export const PALETTE = ["#2f6fb0", "#e07b1a", "#3f8f3a", "#8e5aa0", "#2a9d95", "#7a7d1a", "#8a5a3c", "#d45d8a", "#5a6b8c", "#1493a8"];

function hash(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** A service's colour on its own (stable across pages). */
export function serviceColor(name: string): string {
  return PALETTE[hash(name) % PALETTE.length];
}

/**
 * Colours for the services shown together (a trace, the map): each keeps its own colour unless an
 * earlier one (by name) took it, then it moves to the next free one, so no two in view look alike
 * while there are at most as many services as colours.
 */
export function serviceColors(names: Iterable<string>): Map<string, string> {
  const out = new Map<string, string>();
  const taken = new Set<number>();
  for (const name of [...new Set(names)].sort()) {
    let i = hash(name) % PALETTE.length;
    for (let k = 0; k < PALETTE.length && taken.has(i); k++) i = (i + 1) % PALETTE.length;
    taken.add(i);
    out.set(name, PALETTE[i]);
  }
  return out;
}
