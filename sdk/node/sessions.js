'use strict';
/**
 * A small client for Warden's sandbox sessions (`/v1/sessions`), on the
 * built-in `fetch` (Node.js 18+), no dependencies.
 *
 *   const { Client } = require('@warden/sdk/sessions');
 *   const client = new Client('http://127.0.0.1:8080', apiKey);
 *   await client.withSession({ stateful: true }, async (s) => {
 *     await s.run('x = 21');
 *     console.log((await s.run('x * 2')).return_value); // 42
 *     for await (const e of s.stream('print("hi")', { mode: 'script' })) {
 *       if (e.kind === 'stdout') process.stdout.write(e.data);
 *     }
 *   });
 *
 * A session is closed (terminated) by `close()`, by `withSession` when its
 * callback settles, or by `await using` where the runtime has
 * `Symbol.asyncDispose`. A refused call throws `WardenError` with the
 * server's problem document. Not added to plugin packages: it talks to a
 * server from outside a box.
 */

class WardenError extends Error {
  /**
   * @param {number} status
   * @param {object} problem
   */
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {};
    const detail = p.detail || `the server answered ${status}`;
    const errors = Array.isArray(p.errors) ? p.errors : [];
    super([detail, ...errors.map((e) => `  ${e.location}: ${e.message}`)].join('\n'));
    this.name = 'WardenError';
    this.status = status;
    this.problem = p;
    this.detail = detail;
    this.errors = errors;
  }
}

/** A workspace path (`/workspace/` may lead) for a URL, name by name. */
function quotePath(path) {
  let p = path;
  if (p === '/workspace' || p.startsWith('/workspace/')) p = p.slice('/workspace'.length);
  return p.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/');
}

class Client {
  /**
   * @param {string} baseUrl  e.g. `http://127.0.0.1:8080`
   * @param {string} apiKey   an app's key (or an admin's, naming `app`)
   */
  constructor(baseUrl, apiKey) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.apiKey = apiKey;
  }

  async _fetch(method, path, { json, body, headers } = {}) {
    const h = { authorization: `Bearer ${this.apiKey}`, ...(headers || {}) };
    let payload = body;
    if (json !== undefined) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(json);
    } else if (body !== undefined) {
      h['content-type'] = 'application/octet-stream';
    }
    const r = await fetch(this.baseUrl + path, { method, headers: h, body: payload });
    if (!r.ok) {
      const text = await r.text();
      let problem;
      try {
        problem = JSON.parse(text);
      } catch {
        problem = { detail: text };
      }
      throw new WardenError(r.status, problem);
    }
    return r;
  }

  async _json(method, path, opts) {
    const r = await this._fetch(method, path, opts);
    const text = await r.text();
    return text ? JSON.parse(text) : null;
  }

  /**
   * Start a session (its box is running when this resolves).
   * @param {{template?: string, resources?: object, env?: object, stateful?: boolean,
   *   packages?: object[], network?: string[], idleTimeoutSecs?: number,
   *   maxLifetimeSecs?: number, app?: string}} [options]
   *   `stateful`: `run` defaults to the session's persistent interpreter.
   */
  async createSession(options = {}) {
    const body = {};
    const fields = {
      template: 'template', resources: 'resources', env: 'env', packages: 'packages',
      idleTimeoutSecs: 'idle_timeout_secs', maxLifetimeSecs: 'max_lifetime_secs', app: 'app',
    };
    for (const [k, f] of Object.entries(fields)) {
      if (options[k] !== undefined) body[f] = options[k];
    }
    if (options.network !== undefined) body.network = { allow: options.network };
    const record = await this._json('POST', '/v1/sessions', { json: body });
    return new Session(this, record, !!options.stateful);
  }

  /** An existing session, by id. */
  async session(id, { stateful = false } = {}) {
    const record = await this._json('GET', `/v1/sessions/${encodeURIComponent(id)}`);
    return new Session(this, record, stateful);
  }

  /** The key's sessions, newest first (every page). */
  async listSessions({ status, template } = {}) {
    const items = [];
    let cursor;
    for (;;) {
      const q = new URLSearchParams({ limit: '200' });
      if (status) q.set('status', status);
      if (template) q.set('template', template);
      if (cursor) q.set('cursor', cursor);
      const page = await this._json('GET', `/v1/sessions?${q}`);
      items.push(...page.items);
      cursor = page.next_cursor;
      if (!cursor) return items;
    }
  }

  /**
   * Create a session, call `fn(session)`, and close the session however
   * `fn` ends; `fn`'s value.
   */
  async withSession(options, fn) {
    const s = await this.createSession(options);
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  }
}

class Session {
  constructor(client, record, stateful) {
    this.client = client;
    this.record = record;
    this.id = record.id;
    this.stateful = stateful;
  }

  _path(suffix = '') {
    return `/v1/sessions/${encodeURIComponent(this.id)}${suffix}`;
  }

  _body(code, { language = 'python', mode, event, timeoutMs, env } = {}) {
    const m = mode || (this.stateful && language !== 'shell' ? 'repl' : 'script');
    const body = { language, mode: m, code };
    if (event !== undefined) body.event = event;
    if (timeoutMs !== undefined) body.timeout_ms = timeoutMs;
    if (env) body.env = env;
    return body;
  }

  /**
   * Run code and resolve to its execution record (`status`, `stdout`,
   * `stderr`, `exit_code`, `return_value`, `error`, …).
   * @param {string} code
   * @param {{language?: 'python'|'javascript'|'shell', mode?: 'script'|'handler'|'repl',
   *   event?: object, timeoutMs?: number, env?: object}} [options]
   */
  async run(code, options) {
    let result = null;
    for await (const e of this.stream(code, options)) {
      if (e.kind === 'result') result = e.data;
    }
    return result;
  }

  /**
   * Run code and yield its live events as they come: `{kind, id, data}`
   * with `kind` `status`, `stdout`, `stderr` (data: the text) or `result`
   * (data: the execution record), the last one.
   */
  async *stream(code, options) {
    const accepted = await this.client._json('POST', this._path('/executions?mode=async'), {
      json: this._body(code, options),
    });
    yield* this._events(accepted.id);
  }

  async *_events(executionId) {
    let last;
    for (let attempt = 0; attempt < 5; attempt++) {
      const headers = { accept: 'text/event-stream' };
      if (last) headers['last-event-id'] = last;
      const r = await this.client._fetch('GET', `/v1/executions/${encodeURIComponent(executionId)}/events`, { headers });
      const decoder = new TextDecoder();
      let buf = '';
      let kind = '';
      let id = '';
      let data = [];
      for await (const chunk of r.body) {
        buf += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (kind || data.length) {
              const text = data.join('\n');
              let value;
              try {
                value = JSON.parse(text);
              } catch {
                value = text;
              }
              if (id) last = id;
              yield { kind, id, data: value };
              if (kind === 'result') return;
            }
            kind = '';
            id = '';
            data = [];
          } else if (!line.startsWith(':')) {
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            let value = i < 0 ? '' : line.slice(i + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'event') kind = value;
            else if (field === 'id') id = value;
            else if (field === 'data') data.push(value);
          }
        }
      }
    }
    throw new WardenError(0, { detail: `the events of ${executionId} ended before its result` });
  }

  /** Write `data` (a string, Buffer or Uint8Array) to `path` in the workspace; the file's entry. */
  async upload(path, data) {
    return this.client._json('PUT', this._path(`/files/${quotePath(path)}`), { body: data });
  }

  /** The bytes of the workspace file `path`, as a Buffer. */
  async download(path) {
    const r = await this.client._fetch('GET', this._path(`/files/${quotePath(path)}`));
    return Buffer.from(await r.arrayBuffer());
  }

  /** The entries of a workspace folder (`name`, `path`, `kind`, `size`, `modified_at`). */
  async listFiles(path = '') {
    const p = path.replace(/^\/+|\/+$/g, '');
    const q = p ? `?${new URLSearchParams({ path: p })}` : '';
    return (await this.client._json('GET', this._path(`/files${q}`))).entries;
  }

  /** Remove a file, a link or a folder with what it holds. */
  async remove(path) {
    await this.client._fetch('DELETE', this._path(`/files/${quotePath(path)}`));
  }

  /**
   * Install packages (`{ecosystem: 'pip', name, version}`) into the running
   * session: it moves to a box with its new dependency layer, its workspace
   * carried over (`/tmp` and a stateful interpreter's variables are not).
   * Resolves to `{session, installed, packages, files_carried, bytes_carried}`.
   */
  async install(packages) {
    const done = await this.client._json('POST', this._path('/packages'), {
      json: { packages: [...packages] },
    });
    this.record = done.session;
    return done;
  }

  /** The session's record, read again. */
  async refresh() {
    this.record = await this.client._json('GET', this._path());
    return this.record;
  }

  /** Terminate the session (its record stays); closing twice is fine. */
  async close() {
    try {
      this.record = await this.client._json('POST', this._path('/terminate'));
    } catch (e) {
      if (!(e instanceof WardenError && e.status === 409)) throw e;
    }
  }
}

if (typeof Symbol.asyncDispose === 'symbol') {
  Session.prototype[Symbol.asyncDispose] = function dispose() {
    return this.close();
  };
}

module.exports = { Client, Session, WardenError };
