// Live event streams: an execution's (GET /v1/executions/{id}/events) and a
// template build's (GET /v1/layers/{id}/events), both text/event-stream
// with the same events: `status`, `stdout` and `stderr` chunks with ids,
// then `result` (the final record). EventSource cannot send an
// Authorization header and the key must never be in a URL, so a stream is
// read with fetch and parsed with eventsource-parser. A dropped connection
// resumes with Last-Event-ID, which the server honours exactly.
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { authHeaders, ApiError } from './client';

/** One event of a stream whose final record is `R`. */
export type LiveEvent<R> =
  | { kind: 'status'; status: string }
  | { kind: 'stdout' | 'stderr'; text: string }
  | { kind: 'result'; record: R };

/** Follow the stream at `url` until `result` (or `signal` aborts); calls `on` per event. */
export async function followEvents<R>(url: string, on: (e: LiveEvent<R>) => void, signal: AbortSignal): Promise<void> {
  let lastId: string | undefined;
  let attempts = 0;
  for (;;) {
    let done = false;
    const parser = createParser({
      onEvent(msg: EventSourceMessage) {
        if (msg.id) lastId = msg.id;
        let data: unknown;
        try {
          data = JSON.parse(msg.data);
        } catch {
          return;
        }
        switch (msg.event) {
          case 'status':
            on({ kind: 'status', status: String((data as { status?: unknown }).status ?? '') });
            break;
          case 'stdout':
          case 'stderr':
            on({ kind: msg.event, text: typeof data === 'string' ? data : JSON.stringify(data) });
            break;
          case 'result':
            done = true;
            on({ kind: 'result', record: data as R });
            break;
        }
      },
    });
    try {
      const headers: Record<string, string> = { ...authHeaders(), Accept: 'text/event-stream' };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const r = await fetch(url, { headers, signal });
      if (!r.ok || !r.body) {
        const body = await r.json().catch(() => ({}));
        throw new ApiError(r.status, { title: `The stream answered ${r.status}`, status: r.status, type: '', ...body });
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        parser.feed(value);
      }
    } catch (e) {
      if (signal.aborted || e instanceof ApiError) throw e;
    }
    if (done || signal.aborted) return;
    attempts += 1;
    if (attempts > 5) throw new Error('the event stream kept closing before the result');
    await new Promise((res) => setTimeout(res, 500 * attempts));
  }
}

/** Where an execution's events stream. */
export function executionEvents(id: string): string {
  return `/v1/executions/${encodeURIComponent(id)}/events`;
}

/** Where a template build's (a layer's) events stream. */
export function layerEvents(id: string): string {
  return `/v1/layers/${encodeURIComponent(id)}/events`;
}
