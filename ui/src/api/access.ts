/**
 * Teams and access (`query/routes/access.py`): log in and out, who am I, switch team, the team's users, API keys
 * and audit records. A key's or a webhook's secret is in one answer only, the one that created it.
 */
import { request } from "./client";

const V1 = "/api/v1";

export type Role = "viewer" | "editor" | "admin";
export const ROLES: Role[] = ["viewer", "editor", "admin"];

export type TeamInfo = { slug: string; name: string; role: Role | null };
export type Me = { email: string | null; superuser: boolean; team: string; role: Role; teams: TeamInfo[]; key: string | null };

/** True when `role` includes `needed` (admin > editor > viewer). */
export function can(role: Role | undefined | null, needed: Role): boolean {
  return role != null && ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

export const me = (signal?: AbortSignal) => request<Me>(`${V1}/auth/me`, { signal });
export const login = (email: string, password: string, team?: string) =>
  request<Me>(`${V1}/auth/login`, { body: { email, password, team: team || null } });
export const logout = () => request<void>(`${V1}/auth/logout`, { method: "POST", body: {} });
export const switchTeam = (team: string) => request<Me>(`${V1}/auth/team`, { method: "PUT", body: { team } });
export const changePassword = (current: string, next: string) =>
  request<void>(`${V1}/auth/password`, { method: "PUT", body: { current_password: current, new_password: next } });

export type User = { id: number; email: string; name: string; role: Role; superuser: boolean; disabled: boolean };
export const users = async (signal?: AbortSignal) => (await request<{ users: User[] }>(`${V1}/users`, { signal })).users;
export const addUser = (email: string, password: string, role: Role) =>
  request<User>(`${V1}/users`, { body: { email, password, role } });
export const setRole = (id: number, role: Role) => request<User>(`${V1}/users/${id}/role`, { method: "PUT", body: { role } });
export const removeUser = (id: number) => request<void>(`${V1}/users/${id}`, { method: "DELETE" });

export type ApiKey = {
  id: number; team: string; kind: "ingest" | "query"; role: Role | null; name: string; prefix: string;
  created_at: number; created_by: string; last_used_at: number | null; revoked_at: number | null;
};
export const keys = async (signal?: AbortSignal) => (await request<{ keys: ApiKey[] }>(`${V1}/keys`, { signal })).keys;
export const createKey = (kind: ApiKey["kind"], name: string, role?: Role) =>
  request<{ key: ApiKey; secret: string }>(`${V1}/keys`, { body: { kind, name, role: kind === "query" ? role ?? "viewer" : null } });
export const revokeKey = (id: number) => request<ApiKey>(`${V1}/keys/${id}`, { method: "DELETE" });

export type AuditRecord = { at: number; actor: string; action: string; target: string; outcome: "ok" | "denied"; detail: Record<string, unknown>; source: string };
export const audit = async (signal?: AbortSignal) => (await request<{ records: AuditRecord[] }>(`${V1}/audit`, { signal })).records;

/** Unix seconds as a short local date and time. */
export function formatUnix(seconds: number | null | undefined): string {
  if (seconds == null) return "–";
  return new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
