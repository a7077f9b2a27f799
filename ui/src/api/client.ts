/**
 * The one way the UI talks to `maple api`: same origin, JSON, errors as ApiError with the API's message
 * (and, for a search syntax error, the position it names). A 401 goes to a handler that an auth layer
 * (issue 16) registers to send the user to a login page; until then it surfaces as an ordinary error.
 */

export type ErrorPosition = { start: number; end: number };

export class ApiError extends Error {
  readonly status: number;
  /** Where in the query string the API found a syntax error (0-based character offsets). */
  readonly position?: ErrorPosition;
  readonly field?: string;

  constructor(status: number, message: string, position?: ErrorPosition, field?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.position = position;
    this.field = field;
  }
}

type UnauthorizedHandler = (error: ApiError) => void;
let unauthorized: UnauthorizedHandler | null = null;

/** Register what happens on a 401 (e.g. navigate to /login?redirect=...). Returns an unregister function. */
export function onUnauthorized(handler: UnauthorizedHandler): () => void {
  unauthorized = handler;
  return () => {
    if (unauthorized === handler) unauthorized = null;
  };
}

/** Headers every request carries; an auth layer may add a token here. */
export const defaultHeaders: Record<string, string> = { Accept: "application/json" };

export type Params = Record<string, string | number | boolean | undefined | null | readonly (string | number)[]>;

export function buildUrl(path: string, params?: Params): string {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) for (const item of v) qs.append(k, String(item));
    else qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * Turns an error body into an ApiError: Maple's `{"error": {code, message, field, position, expected}}`,
 * and FastAPI's own `{"detail": ...}` (string, or 422's list of {loc, msg}) for anything that bypasses it.
 */
export function parseErrorBody(status: number, body: unknown, fallback: string): ApiError {
  const obj = body && typeof body === "object" ? (body as Record<string, unknown>) : null;
  const detail = obj && "error" in obj ? obj.error : obj && "detail" in obj ? obj.detail : body;
  if (typeof detail === "string") {
    // A proxy's or a static server's HTML page says nothing useful here; the status line does.
    const html = /^\s*</.test(detail);
    return new ApiError(status, html || !detail ? fallback : detail.slice(0, 2000));
  }
  if (Array.isArray(detail)) {
    const parts = detail.map((d) => {
      const loc = Array.isArray(d?.loc) ? d.loc.filter((x: unknown) => x !== "query" && x !== "body").join(".") : "";
      return loc ? `${loc}: ${d?.msg ?? "invalid"}` : String(d?.msg ?? "invalid");
    });
    const field = Array.isArray(detail[0]?.loc) ? String(detail[0].loc[detail[0].loc.length - 1]) : undefined;
    return new ApiError(status, parts.join("; ") || fallback, undefined, field);
  }
  if (detail && typeof detail === "object") {
    const d = detail as Record<string, unknown>;
    let message = typeof d.message === "string" ? d.message : fallback;
    if (Array.isArray(d.expected) && d.expected.length && !/\bexpected\b/.test(message)) {
      message += ` (expected ${d.expected.join(", ")})`;
    }
    const pos = typeof d.position === "number" ? d.position : undefined;
    const position = pos !== undefined ? { start: pos, end: pos + 1 } : undefined;
    return new ApiError(status, message, position, typeof d.field === "string" ? d.field : undefined);
  }
  return new ApiError(status, fallback);
}

export async function request<T>(path: string, init: { params?: Params; body?: unknown; method?: string; signal?: AbortSignal } = {}): Promise<T> {
  const url = buildUrl(path, init.params);
  let response: Response;
  try {
    response = await fetch(url, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: init.body === undefined ? defaultHeaders : { ...defaultHeaders, "Content-Type": "application/json" },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: init.signal,
      credentials: "same-origin",
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, "Maple's API could not be reached. Is `maple api` (or `maple up`) running?");
  }
  const text = await response.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  if (!response.ok) {
    const error = parseErrorBody(response.status, body, `${response.status} ${response.statusText} from ${path}`.replace(/\s+/g, " "));
    if (response.status === 401 && unauthorized) unauthorized(error);
    throw error;
  }
  return body as T;
}
