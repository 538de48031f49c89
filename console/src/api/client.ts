// The console's one way to the server: a typed client over the public API,
// its types generated from docs/openapi.json (src/api/schema.d.ts, made by
// `npm run gen`). Everything the console does, a script can do with the
// same calls. The API key lives in sessionStorage (this tab, this session)
// and travels only in the Authorization header, never in a URL.
import createClient from 'openapi-fetch';
import type { components, paths } from './schema';

export type Schemas = components['schemas'];
export type Plugin = Schemas['PluginView'];
export type Version = Schemas['VersionView'];
export type App = Schemas['AppView'];
export type Installation = Schemas['InstallationView'];
export type Execution = Schemas['ExecutionView'];
export type AuditEvent = Schemas['AuditView'];
export type Key = Schemas['KeyView'];
export type Me = Schemas['MeView'];
export type Problem = Schemas['Problem'];
export type FieldError = Schemas['FieldError'];
export type Health = Schemas['Health'];
export type Session = Schemas['SessionView'];
export type FileEntry = Schemas['FileEntryView'];
export type Snapshot = Schemas['SnapshotView'];
export type Template = Schemas['TemplateView'];
export type Layer = Schemas['LayerView'];
export type SigningKey = Schemas['SigningKeyView'];

const STORAGE = 'warden.apiKey';

export function storedKey(): string | null {
  return sessionStorage.getItem(STORAGE);
}

export function storeKey(key: string | null) {
  if (key) sessionStorage.setItem(STORAGE, key);
  else sessionStorage.removeItem(STORAGE);
}

/** Headers that authenticate a raw `fetch` (downloads, the event stream). */
export function authHeaders(): Record<string, string> {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export const api = createClient<paths>({ baseUrl: '' });
api.use({
  onRequest({ request }) {
    const key = storedKey();
    if (key) request.headers.set('Authorization', `Bearer ${key}`);
    return request;
  },
});

/** An API answer that is not a success: the problem document, as sent. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(status: number, problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function toProblem(status: number, body: unknown): Problem {
  if (body && typeof body === 'object' && 'title' in body) return body as Problem;
  return {
    type: '/problems/unknown',
    title: `The server answered ${status}`,
    status,
    detail: typeof body === 'string' ? body.slice(0, 500) : '',
  } as Problem;
}

/** Await an openapi-fetch call: its data, or an ApiError with the problem. */
export async function call<T>(
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let r: { data?: T; error?: unknown; response: Response };
  try {
    r = await pending;
  } catch (e) {
    throw new ApiError(0, {
      type: '/problems/network',
      title: 'The server could not be reached',
      status: 0,
      detail: e instanceof Error ? e.message : String(e),
    } as Problem);
  }
  if (!r.response.ok) throw new ApiError(r.response.status, toProblem(r.response.status, r.error));
  return r.data as T;
}

/** A raw authenticated GET (package and artifact downloads, /metrics). */
export async function fetchRaw(path: string): Promise<Response> {
  const r = await fetch(path, { headers: authHeaders() });
  if (!r.ok) {
    let body: unknown = await r.text();
    try {
      body = JSON.parse(body as string);
    } catch {
      /* a plain-text answer */
    }
    throw new ApiError(r.status, toProblem(r.status, body));
  }
  return r;
}

/** Save a response body as a file, through a blob URL (no key in any URL). */
export async function download(path: string, filename: string) {
  const blob = await (await fetchRaw(path)).blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Send a raw body (a package, a session file) with the key; the answer's
 *  JSON, or an ApiError carrying the problem document. */
export async function sendBody<T>(method: 'POST' | 'PUT', path: string, body: Blob, contentType: string): Promise<T> {
  let r: Response;
  try {
    r = await fetch(path, { method, headers: { ...authHeaders(), 'Content-Type': contentType }, body });
  } catch (e) {
    throw new ApiError(0, { type: '/problems/network', title: 'The server could not be reached', status: 0, detail: String(e) } as Problem);
  }
  const answer: unknown = await r.json().catch(() => undefined);
  if (!r.ok) throw new ApiError(r.status, toProblem(r.status, answer));
  return answer as T;
}

/** Upload a package (POST /v1/plugins, the zip as the body). The answer is
 *  the version; a refused package is an ApiError whose problem lists every
 *  problem with its location (`archive:PATH`, a manifest JSON pointer). */
export function uploadPackage(file: Blob): Promise<Version> {
  return sendBody<Version>('POST', '/v1/plugins', file, 'application/zip');
}

/** A workspace path as URL path segments (each one encoded, `/` kept). */
export function filePath(session: string, path: string): string {
  return `/v1/sessions/${encodeURIComponent(session)}/files/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** Upload a file into a session's workspace (PUT, the raw bytes as the body). */
export function uploadSessionFile(session: string, path: string, file: Blob): Promise<FileEntry> {
  return sendBody<FileEntry>('PUT', filePath(session, path), file, 'application/octet-stream');
}
