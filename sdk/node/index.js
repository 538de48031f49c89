'use strict';
/**
 * Warden's Node.js SDK: optional helpers for plugin handlers. A plain
 * `exports.handler = async (event) => ...` needs none of this.
 *
 * - `PluginError(type, message)`: an error the platform reports with that
 *   type and message.
 * - `handler(fn, { required, types })`: wraps a handler, checking the event
 *   is an object with the required fields and field types first.
 * - `invoke(fn, event)`: calls a handler the way the platform does (JSON in,
 *   JSON out) for local tests.
 * - `request(url, { credential })`: an HTTP request through the platform's
 *   egress proxy, a platform-held credential injected by the proxy.
 *
 * No dependencies. `warden plugin pack` adds this package to a plugin whose
 * package.json depends on `@warden/sdk` and that does not ship it.
 */

const VERSION = '0.1.0';

class PluginError extends Error {
  /**
   * @param {string} type  the error's type as the platform reports it
   * @param {string} message
   */
  constructor(type, message) {
    if (message === undefined) {
      message = type;
      type = 'PluginError';
    }
    if (typeof type !== 'string' || !/^[A-Za-z_$][\w$]*$/.test(type)) {
      throw new TypeError(`error type ${JSON.stringify(type)} must be an identifier`);
    }
    super(message);
    // The platform reports `error.name` as the error's type.
    this.name = type;
    this.type = type;
  }
}

const typeOf = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

/**
 * Wrap `fn` so that the event is checked first: an object, with `required`
 * fields present and fields of `types` (`string`, `number`, `boolean`,
 * `object`, `array`) of that type. A mismatch raises PluginError
 * `InvalidEvent` naming the field.
 */
function handler(fn, options = {}) {
  if (typeof fn !== 'function') throw new TypeError('handler() takes a function');
  const required = options.required || [];
  const types = options.types || {};
  return async function wardenHandler(event) {
    if (typeOf(event) !== 'object') {
      throw new PluginError('InvalidEvent', `the event must be an object, not ${typeOf(event)}`);
    }
    for (const field of required) {
      if (!Object.hasOwn(event, field)) throw new PluginError('InvalidEvent', `missing required field ${field}`);
    }
    for (const [field, want] of Object.entries(types)) {
      if (Object.hasOwn(event, field) && typeOf(event[field]) !== want) {
        throw new PluginError('InvalidEvent', `${field}: expected ${want}, got ${typeOf(event[field])}`);
      }
    }
    return fn(event);
  };
}

/** What the platform would report for a failed call. */
class InvocationError extends Error {
  constructor(type, message) {
    super(`${type}: ${message}`);
    this.name = 'InvocationError';
    this.type = type;
    this.detail = message;
  }
}

/** Where `value` stops being JSON, as the platform's wrapper judges it. */
function unserializable(value, where = '$', seen = new Set()) {
  const t = typeof value;
  if (value === null || t === 'string' || t === 'boolean') return null;
  if (t === 'number') return Number.isFinite(value) ? null : [where, 'number (NaN or infinity)'];
  if (t === 'bigint' || t === 'function' || t === 'symbol' || t === 'undefined') return [where, t];
  if (t === 'object') {
    if (typeof value.toJSON === 'function') return null;
    if (seen.has(value)) return [where, 'circular reference'];
    seen.add(value);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const r = unserializable(value[i], `${where}[${i}]`, seen);
        if (r) return r;
      }
    } else {
      if (value instanceof Map || value instanceof Set) return [where, value.constructor.name];
      for (const [k, v] of Object.entries(value)) {
        const r = unserializable(v, `${where}.${k}`, seen);
        if (r) return r;
      }
    }
    seen.delete(value);
  }
  return null;
}

/**
 * Call `fn` as the platform does: the event through JSON, awaited, the
 * result checked and passed through JSON (`undefined` becomes `null`).
 * Resolves with the result or rejects with InvocationError carrying the
 * reported type.
 */
async function invoke(fn, event) {
  const copy = JSON.parse(JSON.stringify(event === undefined ? null : event));
  let result;
  try {
    result = await fn(copy);
  } catch (e) {
    const type = e && e.name ? e.name : typeof e;
    throw new InvocationError(type, e && e.message !== undefined ? e.message : String(e));
  }
  if (result === undefined) result = null;
  const bad = unserializable(result);
  if (bad) throw new InvocationError('ResultNotSerializable', `${bad[0]} is a ${bad[1]}, which is not JSON`);
  return JSON.parse(JSON.stringify(result));
}

/**
 * Send an HTTP request from a plugin through the platform's egress proxy
 * (the box's `HTTP_PROXY`; Node's own `fetch` ignores it). `url` must be on
 * a host the version declares in `permissions.network`; `credential` names
 * a credential the version declares and the app stores: the proxy puts the
 * secret in and opens the connection itself (TLS for `https://`), so the
 * plugin never holds it. `body` may be a string, a Buffer, or a value sent
 * as JSON. Resolves to `{status, headers, body (Buffer), egressReason,
 * text(), json()}`; a refusal by the proxy is a response (403,
 * `egressReason` set). Rejects with PluginError `NetworkUnavailable` when
 * the version has no network.
 */
function request(url, { method = 'GET', headers = {}, body, credential, timeoutMs = 30000 } = {}) {
  const http = require('http');
  const tls = require('tls');
  const proxy = process.env.HTTP_PROXY || process.env.http_proxy;
  if (!proxy) {
    return Promise.reject(
      new PluginError('NetworkUnavailable', 'this plugin version has no network: declare the host in permissions.network'),
    );
  }
  let target;
  try {
    target = new URL(url);
  } catch {
    return Promise.reject(new TypeError(`url ${JSON.stringify(url)}: give an absolute http:// or https:// URL`));
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    return Promise.reject(new TypeError(`url ${JSON.stringify(url)}: give an absolute http:// or https:// URL`));
  }
  const via = new URL(proxy);
  const sent = { ...headers };
  if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
    body = JSON.stringify(body);
    if (!Object.keys(sent).some((k) => k.toLowerCase() === 'content-type')) sent['Content-Type'] = 'application/json';
  }
  const answer = (res, resolve, reject) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () => {
      const data = Buffer.concat(chunks);
      resolve({
        status: res.statusCode,
        headers: res.headers,
        body: data,
        egressReason: res.headers['x-warden-egress-reason'] || null,
        text: () => data.toString('utf8'),
        json: () => JSON.parse(data.toString('utf8')),
      });
    });
  };
  const proxyAt = { host: via.hostname, port: Number(via.port) || 80 };
  return new Promise((resolve, reject) => {
    if (credential !== undefined || target.protocol === 'http:') {
      // Absolute form to the proxy over plain HTTP: the proxy opens the
      // connection (TLS for https://) and injects the credential.
      if (credential !== undefined) sent['X-Warden-Credential'] = credential;
      const req = http.request({ ...proxyAt, method, path: url, headers: { Host: target.host, ...sent }, timeout: timeoutMs });
      req.on('response', (res) => answer(res, resolve, reject));
      req.on('timeout', () => req.destroy(new Error(`no answer from ${target.host} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
      return;
    }
    // No credential: a CONNECT tunnel, TLS end to end.
    const port = Number(target.port) || 443;
    const connect = http.request({ ...proxyAt, method: 'CONNECT', path: `${target.hostname}:${port}`, timeout: timeoutMs });
    connect.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.alloc(0),
          egressReason: res.headers['x-warden-egress-reason'] || 'refused',
          text: () => '',
          json: () => null,
        });
        return;
      }
      const secure = tls.connect({ socket, servername: target.hostname });
      const req = http.request({
        method,
        path: `${target.pathname}${target.search}`,
        headers: { Host: target.host, ...sent },
        createConnection: () => secure,
        timeout: timeoutMs,
      });
      req.on('response', (r) => answer(r, resolve, reject));
      req.on('error', reject);
      req.end(body);
    });
    connect.on('timeout', () => connect.destroy(new Error(`no answer from the proxy within ${timeoutMs} ms`)));
    connect.on('error', reject);
    connect.end();
  });
}

module.exports = { PluginError, InvocationError, handler, invoke, request, VERSION };
