// Types of the sessions client (sessions.js).

export class WardenError extends Error {
  status: number;
  problem: { detail?: string; errors?: { location: string; message: string }[]; [k: string]: unknown };
  detail: string;
  errors: { location: string; message: string }[];
}

export interface SessionOptions {
  template?: string;
  resources?: { cpu_cores?: number; memory_mb?: number; disk_mb?: number; pids?: number };
  env?: Record<string, string>;
  /** `run` defaults to the session's persistent interpreter (`repl`). */
  stateful?: boolean;
  packages?: { ecosystem: 'pip' | 'npm'; name: string; version?: string; hashes?: string[] }[];
  network?: string[];
  idleTimeoutSecs?: number;
  maxLifetimeSecs?: number;
  app?: string;
}

export interface RunOptions {
  language?: 'python' | 'javascript' | 'shell';
  mode?: 'script' | 'handler' | 'repl';
  event?: Record<string, unknown>;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** The execution record (see docs/api.md). */
export interface Execution {
  id: string;
  status: string;
  stdout?: string;
  stderr?: string;
  exit_code?: number | null;
  return_value?: unknown;
  error?: { type?: string; message?: string; traceback?: string } | null;
  interpreter_restarted?: boolean;
  [k: string]: unknown;
}

export interface SessionEvent {
  kind: 'status' | 'stdout' | 'stderr' | 'result' | string;
  id: string;
  data: any;
}

export interface FileEntry {
  name: string;
  path: string;
  kind: 'file' | 'directory' | 'link' | 'other';
  size: number;
  modified_at: number;
}

export class Session {
  id: string;
  record: Record<string, any>;
  stateful: boolean;
  run(code: string, options?: RunOptions): Promise<Execution>;
  stream(code: string, options?: RunOptions): AsyncGenerator<SessionEvent>;
  upload(path: string, data: string | Uint8Array): Promise<FileEntry>;
  download(path: string): Promise<Buffer>;
  listFiles(path?: string): Promise<FileEntry[]>;
  remove(path: string): Promise<void>;
  install(packages: Array<{ ecosystem: 'pip' | 'npm'; name: string; version?: string }>): Promise<{
    session: Record<string, any>;
    installed: Array<Record<string, any>>;
    packages: Array<Record<string, any>>;
    files_carried: number;
    bytes_carried: number;
  }>;
  refresh(): Promise<Record<string, any>>;
  close(): Promise<void>;
}

export class Client {
  constructor(baseUrl: string, apiKey: string);
  createSession(options?: SessionOptions): Promise<Session>;
  session(id: string, options?: { stateful?: boolean }): Promise<Session>;
  listSessions(filter?: { status?: string; template?: string }): Promise<Record<string, any>[]>;
  withSession<T>(options: SessionOptions, fn: (s: Session) => Promise<T>): Promise<T>;
}
