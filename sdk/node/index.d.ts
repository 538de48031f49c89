// Types of Warden's Node.js SDK.

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A handler: the event in, a JSON-serializable value (or a promise of one) out. */
export type Handler<In = any, Out = any> = (event: In) => Out | Promise<Out>;

/** An error the platform reports with `type` and `message`. */
export declare class PluginError extends Error {
  constructor(type: string, message: string);
  constructor(message: string);
  readonly type: string;
}

/** What the platform would report for a failed call (from `invoke`). */
export declare class InvocationError extends Error {
  readonly type: string;
  readonly detail: string;
}

export interface EventChecks {
  /** Fields the event must have. */
  required?: string[];
  /** Expected JSON types of fields, when present. */
  types?: Record<string, 'string' | 'number' | 'boolean' | 'object' | 'array' | 'null'>;
}

/** Wrap a handler so the event is checked first (PluginError `InvalidEvent`). */
export declare function handler<In extends object, Out>(fn: Handler<In, Out>, checks?: EventChecks): Handler<In, Out>;

/** Call a handler as the platform does, for local tests. */
export declare function invoke<In, Out>(fn: Handler<In, Out>, event: In): Promise<Out>;

export declare const VERSION: string;

/** What `request` got back. */
export interface WardenResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Set when the platform's proxy refused the request (and said why). */
  egressReason: string | null;
  text(): string;
  json(): unknown;
}

/**
 * An HTTP request through the platform's egress proxy; `credential` names a
 * platform-held credential the proxy injects (the plugin never holds it).
 */
export declare function request(
  url: string,
  options?: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer | unknown;
    credential?: string;
    timeoutMs?: number;
  },
): Promise<WardenResponse>;
