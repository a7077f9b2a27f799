/** The few icons the navigation needs, as inline SVG (stroke icons in the lucide style, drawn here). */
const PATHS: Record<string, string> = {
  logs: "M4 6h16M4 10h16M4 14h10M4 18h13",
  traces: "M3 5h8M6 10h9M9 15h6M12 20h9",
  services: "M12 4a3 3 0 1 0 0 .01M5 18a3 3 0 1 0 0 .01M19 18a3 3 0 1 0 0 .01M11 7 6 15M13 7l5 8M8 18h8",
  sql: "M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3zm0 0v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3",
  pipeline: "M3 7h5l3 5-3 5H3M11 12h10M16 7l5 5-5 5",
  plus: "M12 5v14M5 12h14",
  minus: "M5 12h14",
  close: "M6 6l12 12M18 6 6 18",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7",
  clock: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zm0 4v5l3 2",
};

export function Icon({ name, className = "size-4" }: { name: keyof typeof PATHS | string; className?: string }) {
  return (
    <svg viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth={1.8} strokeLinecap="round" strokeLinejoin="round" className={className} aria-hidden>
      <path d={PATHS[name] ?? ""} />
    </svg>
  );
}
