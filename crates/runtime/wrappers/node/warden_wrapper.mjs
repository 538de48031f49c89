// Warden's Node.js handler wrapper. Runs inside the jail; never trusted.
//
// Usage: node warden_wrapper.mjs once|prestart ENTRYPOINT HANDLER
//
// Descriptors (placed by the host):
//   3  result channel (a memfd): one JSON document, written once
//   4  the event (a memfd) in `once` mode; in `prestart` mode the module is
//      imported ahead of time and the event arrives on stdin when the call
//      comes
//   5  prestart only: "ready" is written here once the module is loaded
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

async function loadHandler(entrypoint, name) {
  const file = path.join(CODE_DIR, entrypoint);
  if (!fs.existsSync(file)) {
    return { err: error('EntrypointNotFound', `entrypoint \`${entrypoint}\` does not exist in the package`) };
  }
  let mod;
  try {
    mod = await import(pathToFileURL(file).href);
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

async function main() {
  const [mode, entrypoint, name] = process.argv.slice(2);
  if (!['once', 'prestart'].includes(mode) || !entrypoint || !name) {
    process.stderr.write('usage: warden_wrapper.mjs once|prestart ENTRYPOINT HANDLER\n');
    process.exit(64);
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
