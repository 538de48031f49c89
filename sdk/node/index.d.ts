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
