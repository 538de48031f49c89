// Warden's Node.js handler wrapper. Runs inside the jail; never trusted.
//
// Usage: node warden_wrapper.mjs once|prestart|serve ENTRYPOINT HANDLER
//
// Descriptors (placed by the host):
//   3  result channel (a memfd): one JSON document, written once
//   4  the event (a memfd) in `once` mode; in `prestart` mode the module is
//      imported ahead of time and the event arrives on stdin when the call
//      comes
//   5  prestart only: "ready" is written here once the module is loaded
//
// `serve` mode (started by warden_node_agent.py, which speaks the host's
// fork-server protocol): one process serves many calls of one plugin
// version. Calls arrive as JSON lines on stdin ({"event": "<json text>"});
// each result leaves as one JSON line on descriptor 3 ({"doc": ..., "recycle":
// bool}). Output goes to this process's stdout and stderr (pipes: written
// synchronously, so a call's output is in them before its result is). Every
// call gets the plugin freshly evaluated (done ahead, between calls), and
// what a call leaves is undone or ends the process (see `serve`).
//
// CommonJS (`exports.handler = ...`) and ES modules (`export async function
// handler`) both work; so do async handlers.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const RESULT_FD = 3;
const EVENT_FD = 4;
const READY_FD = 5;
// The plugin's code; a session's cells live elsewhere (the session agent
// sets WARDEN_CODE_DIR).
const CODE_DIR = process.env.WARDEN_CODE_DIR || '/code';
const WRAPPER = fileURLToPath(import.meta.url);

function trimStack(stack) {
  if (!stack) return undefined;
  return stack
    .split('\n')
    .filter((l) => !l.includes(WRAPPER) && !l.includes('node:internal'))
    .join('\n');
}

function location(err) {
  const text = `${err && err.stack ? err.stack : ''}`;
  const m = text.match(/(?:file:\/\/)?\/code\/([^\s:()]+):(\d+)/);
  return m ? { file: m[1], line: Number(m[2]) } : {};
}

function error(type, message, err) {
  const e = { type, message };
  if (err) {
    const tb = trimStack(err.stack);
    if (tb) e.traceback = tb;
    Object.assign(e, location(err));
  }
  return e;
}

function writeResult(doc) {
  const data = Buffer.from(JSON.stringify(doc), 'utf8');
  let off = 0;
  while (off < data.length) off += fs.writeSync(RESULT_FD, data, off);
}

// The path and kind of the first value JSON cannot carry faithfully.
function unserializable(value, where = '$', seen = new Set()) {
  const t = typeof value;
  if (value === null || t === 'string' || t === 'boolean') return null;
  if (t === 'number') return Number.isFinite(value) ? null : [where, 'number (NaN or infinity)'];
  if (t === 'bigint' || t === 'function' || t === 'symbol' || t === 'undefined') return [where, t];
  if (t === 'object') {
    if (typeof value.toJSON === 'function') return null; // Date and friends
    if (seen.has(value)) return [where, 'circular reference'];
    seen.add(value);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const r = unserializable(value[i], `${where}[${i}]`, seen);
        if (r) return r;
      }
    } else {
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        if (value instanceof Map || value instanceof Set) return [where, value.constructor.name];
      }
      for (const [k, v] of Object.entries(value)) {
        const r = unserializable(v, `${where}.${k}`, seen);
        if (r) return r;
      }
    }
    seen.delete(value);
  }
  return null;
}

async function loadHandler(entrypoint, name, url) {
  const file = path.join(CODE_DIR, entrypoint);
  if (!fs.existsSync(file)) {
    return { err: error('EntrypointNotFound', `entrypoint \`${entrypoint}\` does not exist in the package`) };
  }
  let mod;
  try {
    mod = await import(url || pathToFileURL(file).href);
  } catch (e) {
    if (e instanceof SyntaxError) {
      let loc = location(e);
      if (!loc.line) {
        // import() of an ES module reports no location; `node --check`
        // does (only on this error path, so the cost is paid by failures).
        const { spawnSync } = await import('node:child_process');
        const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' });
        loc = location({ stack: `${check.stderr || ''}` });
      }
      const where = loc.line ? ` (${loc.file}, line ${loc.line})` : '';
      return { err: Object.assign(error('SyntaxError', `${e.message}${where}`), loc) };
    }
    return { err: error(e && e.name ? e.name : 'Error', `importing \`${entrypoint}\` failed: ${e && e.message}`, e) };
  }
  let handler = mod[name];
  if (handler === undefined && mod.default && typeof mod.default === 'object') handler = mod.default[name];
  if (handler === undefined && name === 'handler' && typeof mod.default === 'function') handler = mod.default;
  if (handler === undefined) {
    return { err: error('HandlerNotFound', `\`${entrypoint}\` exports no function \`${name}\``) };
  }
  if (typeof handler !== 'function') {
    return { err: error('HandlerNotFound', `\`${name}\` in \`${entrypoint}\` is a ${typeof handler}, not a function`) };
  }
  return { handler };
}

async function call(handler, eventBytes) {
  let event;
  try {
    const text = eventBytes.toString('utf8');
    event = text.trim() ? JSON.parse(text) : {};
  } catch (e) {
    return { ok: false, error: error('InvalidEvent', `the event is not valid JSON: ${e.message}`) };
  }
  let value;
  try {
    value = await handler(event);
  } catch (e) {
    const type = e && e.name ? e.name : typeof e;
    const message = e && e.message !== undefined ? e.message : String(e);
    return { ok: false, error: error(type, message, e instanceof Error ? e : undefined) };
  }
  if (value === undefined) value = null;
  const bad = unserializable(value);
  if (bad) {
    return { ok: false, error: error('ResultNotSerializable', `the return value is not JSON-serializable: ${bad[1]} at ${bad[0]}`) };
  }
  return { ok: true, value };
}

// Calls served by one `serve` process before it is replaced: each call's
// fresh module instance stays in V8's ES module map.
const SERVE_MAX_CALLS = 500;

function ownState(obj) {
  const m = new Map();
  for (const k of Reflect.ownKeys(obj)) m.set(k, Object.getOwnPropertyDescriptor(obj, k));
  return m;
}

function sameDescriptor(a, b) {
  return Object.is(a.value, b.value) && a.get === b.get && a.set === b.set && a.writable === b.writable;
}

// Put `obj`'s own properties back to `saved`; false when that is not
// possible (a property made non-configurable, a frozen object).
function restoreOwn(obj, saved) {
  let ok = true;
  for (const k of Reflect.ownKeys(obj)) {
    if (!saved.has(k)) ok = Reflect.deleteProperty(obj, k) && ok;
  }
  for (const [k, d] of saved) {
    const now = Object.getOwnPropertyDescriptor(obj, k);
    if (!now || !sameDescriptor(now, d)) {
      try {
        Object.defineProperty(obj, k, d);
      } catch {
        ok = false;
      }
    }
  }
  return ok;
}

// Whether any of `protos`' own properties differ from `saved` (not undone:
// a polluted prototype ends the process).
function changed(protos, saved) {
  return protos.some((p, i) => {
    const before = saved[i];
    const keys = Reflect.ownKeys(p);
    if (keys.length !== before.size) return true;
    return keys.some((k) => !before.has(k) || !sameDescriptor(Object.getOwnPropertyDescriptor(p, k), before.get(k)));
  });
}

function resourceCount() {
  const counts = new Map();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) || 0) + 1);
  return counts;
}

function moreResources(now, base) {
  for (const [k, n] of now) if (n > (base.get(k) || 0)) return true;
  return false;
}

// Serve calls until stdin ends. Between calls the next module instance is
// prepared (the CommonJS cache emptied, the entrypoint imported under a new
// URL), so a call pays only for its handler. After each call the timers it
// started are cleared and globals, `process.env`, the working directory and
// listeners are put back; anything that cannot be undone (a socket or child
// left open, a polluted prototype, a non-configurable global) makes this
// process ask to be replaced, and the agent starts a fresh one.
async function serve(entrypoint, name) {
  const { createRequire } = await import('node:module');
  const cjsCache = createRequire(import.meta.url).cache;
  const realTimers = {
    setTimeout: globalThis.setTimeout,
    setInterval: globalThis.setInterval,
    setImmediate: globalThis.setImmediate,
  };
  const clears = [];
  for (const [fn, clear] of [
    ['setTimeout', clearTimeout],
    ['setInterval', clearInterval],
    ['setImmediate', clearImmediate],
  ]) {
    const real = realTimers[fn];
    globalThis[fn] = Object.assign(
      function (...args) {
        const t = real(...args);
        clears.push(() => clear(t));
        return t;
      },
      real,
    );
  }
  const protos = [Object, Array, Function, String, Number, Boolean, Promise, RegExp, Map, Set, Error, Symbol, Date, JSON, Math, Reflect, globalThis.Buffer]
    .filter(Boolean)
    .flatMap((c) => (c.prototype ? [c, c.prototype] : [c]));
  let calls = 0;
  let n = 0;
  async function prepare() {
    for (const k of Object.keys(cjsCache)) delete cjsCache[k];
    n += 1;
    const file = path.join(CODE_DIR, entrypoint);
    return loadHandler(entrypoint, name, `${pathToFileURL(file).href}?warden-call=${n}`);
  }
  const result = (doc, recycle) => {
    const data = Buffer.from(`${JSON.stringify({ doc, recycle })}\n`, 'utf8');
    let off = 0;
    while (off < data.length) off += fs.writeSync(RESULT_FD, data, off);
  };
  let next = await prepare();
  if (next.err) {
    result({ ok: false, error: next.err }, true);
    return;
  }
  // The state every call starts from, taken once the plugin is loaded.
  const globals = ownState(globalThis);
  const env = { ...process.env };
  const cwd = process.cwd();
  const protoState = protos.map(ownState);
  const readline = await import('node:readline');
  const lines = readline.createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
  // stdout and stderr open their pipes on first use: open them now, so the
  // baseline holds them.
  process.stdout.write('');
  process.stderr.write('');
  const events = new Map(process.eventNames().map((e) => [e, process.listenerCount(e)]));
  const baseResources = resourceCount();
  result({ ready: true }, false);
  for await (const line of lines) {
    let eventText = '';
    try {
      eventText = JSON.parse(line).event;
    } catch {
      eventText = '\u0000'; // not JSON: reported as an invalid event
    }
    const doc = next.err ? { ok: false, error: next.err } : await call(next.handler, Buffer.from(eventText, 'utf8'));
    calls += 1;
    for (const clear of clears.splice(0)) clear();
    let recycle = calls >= SERVE_MAX_CALLS || next.err !== undefined;
    recycle = !restoreOwn(globalThis, globals) || recycle;
    for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
    Object.assign(process.env, env);
    try {
      if (process.cwd() !== cwd) process.chdir(cwd);
    } catch {
      recycle = true;
    }
    recycle = recycle || changed(protos, protoState);
    const names = process.eventNames();
    recycle = recycle || names.length !== events.size || names.some((e) => process.listenerCount(e) !== events.get(e));
    // Give closed handles a turn of the loop to leave the list.
    await new Promise((r) => realTimers.setImmediate(r));
    recycle = recycle || moreResources(resourceCount(), baseResources);
    result(doc, recycle);
    if (recycle) process.exit(0);
    next = await prepare();
  }
}

async function main() {
  const [mode, entrypoint, name] = process.argv.slice(2);
  if (!['once', 'prestart', 'serve'].includes(mode) || !entrypoint || !name) {
    process.stderr.write('usage: warden_wrapper.mjs once|prestart|serve ENTRYPOINT HANDLER\n');
    process.exit(64);
  }
  if (mode === 'serve') {
    await serve(entrypoint, name);
    return;
  }
  const { handler, err } = await loadHandler(entrypoint, name);
  if (mode === 'prestart') {
    fs.writeSync(READY_FD, err ? 'failed\n' : 'ready\n');
    fs.closeSync(READY_FD);
  }
  const eventBytes = fs.readFileSync(mode === 'prestart' ? 0 : EVENT_FD);
  const doc = err ? { ok: false, error: err } : await call(handler, eventBytes);
  writeResult(doc);
  // Let pending writes to stdout/stderr drain, then leave even if the
  // handler left timers or sockets behind.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(0)));
}

main().catch((e) => {
  try {
    writeResult({ ok: false, error: error('WrapperError', String(e && e.stack ? e.stack : e)) });
  } finally {
    process.exit(70);
  }
});
