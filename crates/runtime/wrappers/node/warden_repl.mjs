// Warden's persistent JavaScript interpreter for a session's stateful cells.
//
// Runs inside the jail, started by the session agent; never trusted. Reads
// one JSON line per cell on stdin ({"code": ...}), runs it in this process's
// global scope (declarations, `require`d modules and state persist, as in a
// REPL), awaits a promise it evaluates to, and writes one JSON line per cell
// on descriptor 3: {"ok": true, "value": <the completion value when it is
// JSON>, "repr": <util.inspect of it>} or {"ok": false, "error": {...}}.

import fs from 'node:fs';
import readline from 'node:readline';
import util from 'node:util';
import vm from 'node:vm';
import { createRequire } from 'node:module';

const RESULT_FD = 3;
globalThis.require = createRequire('/workspace/');

function writeResult(doc) {
  const data = Buffer.from(JSON.stringify(doc) + '\n', 'utf8');
  let off = 0;
  while (off < data.length) off += fs.writeSync(RESULT_FD, data, off);
}

function jsonable(value) {
  try {
    return JSON.stringify(value) !== undefined;
  } catch {
    return false;
  }
}

function error(e) {
  const err = { type: (e && e.name) || typeof e, message: e && e.message !== undefined ? String(e.message) : String(e) };
  if (e && e.stack) {
    err.traceback = String(e.stack)
      .split('\n')
      .filter((l) => !l.includes('node:internal') && !l.includes('warden_repl.mjs'))
      .join('\n');
    const m = String(e.stack).match(/cell-(\d+)\.js:(\d+)/);
    if (m) err.line = Number(m[2]);
  }
  return err;
}

let n = 0;
const lines = readline.createInterface({ input: process.stdin, terminal: false });
for await (const line of lines) {
  n += 1;
  let doc;
  try {
    const { code } = JSON.parse(line);
    let value = vm.runInThisContext(code, { filename: `cell-${n}.js` });
    if (value && typeof value.then === 'function') value = await value;
    doc = { ok: true, value: jsonable(value) ? value : null };
    if (value !== undefined) doc.repr = util.inspect(value, { depth: 4 }).slice(0, 65536);
  } catch (e) {
    doc = { ok: false, error: error(e) };
  }
  await new Promise((resolve) => process.stdout.write('', () => process.stderr.write('', resolve)));
  writeResult(doc);
}
