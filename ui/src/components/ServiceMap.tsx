/** The service map as SVG: nodes sized by traffic, edges by calls and coloured by errors; nodes are links. */
import { useMemo } from "react";
import { useNavigate } from "@tanstack/react-router";
import type { DependencyEdge, ServiceRed } from "../api/types";
import { errorColor, layoutServiceMap } from "../lib/service-map";
import { compact } from "./Chart";
import { formatDuration } from "../lib/time";

export function ServiceMap({ edges, services, search, colors }: {
  edges: DependencyEdge[];
  services: ServiceRed[];
  search: { from: string; to: string };
  colors: Map<string, string>;
}) {
  const navigate = useNavigate();
  const traffic = useMemo(() => new Map(services.map((s) => [s.service, { calls: s.calls, errors: s.errors }])), [services]);
  const layout = useMemo(() => layoutServiceMap(edges, traffic), [edges, traffic]);
  const pos = new Map(layout.nodes.map((n) => [n.id, n]));
  const open = (service: string) => navigate({ to: "/services/$service", params: { service }, search });
  return (
    <div className="overflow-auto" data-testid="service-map">
      <svg width={Math.max(layout.width, 300)} height={layout.height} role="img" aria-label={`Service map: ${layout.nodes.length} services, ${edges.length} edges`} className="mx-auto block">
        <defs>
          {["#a8a29e", "#d97706", "#dc2626"].map((c) => (
            <marker key={c} id={`arrow-${c.slice(1)}`} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="11" markerHeight="11" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" fill={c} />
            </marker>
          ))}
        </defs>
        {layout.edges.map((e) => {
          const a = pos.get(e.caller)!;
          const b = pos.get(e.callee)!;
          const color = errorColor(e.errorShare);
          if (a === b) {
            return <path key={`${e.caller}>${e.callee}`} d={`M${a.x - 8},${a.y - a.r} C${a.x - 40},${a.y - a.r - 50} ${a.x + 40},${a.y - a.r - 50} ${a.x + 8},${a.y - a.r}`}
              fill="none" stroke={color} strokeWidth={e.width} markerEnd={`url(#arrow-${color.slice(1)})`}><title>{`${e.caller} → itself: ${e.calls} calls, ${e.errors} errors`}</title></path>;
          }
          const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
          const x1 = a.x + (dx / len) * a.r, y1 = a.y + (dy / len) * a.r;
          const x2 = b.x - (dx / len) * (b.r + 3), y2 = b.y - (dy / len) * (b.r + 3);
          const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
          return (
            <g key={`${e.caller}>${e.callee}`} data-testid="map-edge">
              <line x1={x1} y1={y1} x2={x2} y2={y2} stroke={color} strokeWidth={e.width} markerEnd={`url(#arrow-${color.slice(1)})`} opacity={0.85}>
                <title>{`${e.caller} → ${e.callee}: ${e.calls} calls, ${e.errors} errors${e.p50Ms != null ? `, p50 ${formatDuration(e.p50Ms)}` : ""}${e.p95Ms != null ? `, p95 ${formatDuration(e.p95Ms)}` : ""}`}</title>
              </line>
              <text x={mx} y={my - 6} textAnchor="middle" fontSize={11} fill={e.errors ? "#b91c1c" : "#6b6b66"} paintOrder="stroke" stroke="#fff" strokeWidth={3}>
                {compact(e.calls)}{e.errors ? ` · ${compact(e.errors)} err` : ""}{e.p95Ms != null ? ` · p95 ${formatDuration(e.p95Ms)}` : ""}
              </text>
            </g>
          );
        })}
        {layout.nodes.map((n) => (
          <g key={n.id} role="link" tabIndex={0} aria-label={`${n.id}: ${n.traffic} calls`} className="cursor-pointer" data-testid="map-node"
            onClick={() => open(n.id)} onKeyDown={(e) => { if (e.key === "Enter") open(n.id); }}>
            <circle cx={n.x} cy={n.y} r={n.r} fill={colors.get(n.id) ?? "#888"} fillOpacity={0.18} stroke={n.errors ? "#dc2626" : colors.get(n.id) ?? "#888"} strokeWidth={2} />
            <text x={n.x} y={n.y + n.r + 14} textAnchor="middle" fontSize={12} fontWeight={600} fill="#1c1c1a">{n.id}</text>
            <text x={n.x} y={n.y + 4} textAnchor="middle" fontSize={10} fill="#44443f">{compact(n.traffic)}</text>
          </g>
        ))}
      </svg>
    </div>
  );
}
