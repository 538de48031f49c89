// Warden's program runner for JavaScript: one-shot runs (`POST /v1/run` and
// the compatibility APIs). Runs inside the jail; never trusted.
//
// The handler wrapper loads this module as a plugin in a prestarted box
// (Node.js started and waiting) and calls `handler` with the run's event:
// it writes the program's files into the workspace, puts its stdin on
// descriptor 0 and starts the entry file as the main module, as
// `node FILE ARGS...` would. It never returns: the process ends when the
// program does (its event loop empties, it calls process.exit, or an error
// goes uncaught), and the host reads the exit status. When the event itself
// is unusable the handler throws, and the wrapper reports a runner failure.
//
// Event: {"main": PATH, "files": [{"path", "content" (base64), "mode"}],
// "stdin" (base64), "args": [string]}; paths are relative to /workspace.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');

const WORKSPACE = '/workspace';

function writeFiles(files) {
  for (const f of files) {
    const file = path.join(WORKSPACE, f.path);
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
    const fd = fs.openSync(file, flags, (Number(f.mode) || 0o644) & 0o777);
    try {
      const data = Buffer.from(f.content || '', 'base64');
      let off = 0;
      while (off < data.length) off += fs.writeSync(fd, data, off);
    } finally {
      fs.closeSync(fd);
    }
  }
}

// Descriptor 0 held the event (the box's stdin); it becomes the program's
// stdin: a file in the box's /tmp, unlinked once open (the lowest free
// descriptor is 0 right after closing it).
function placeStdin(data) {
  const file = `/tmp/.warden-stdin-${process.pid}`;
  fs.writeFileSync(file, data, { mode: 0o600 });
  fs.closeSync(0);
  const fd = fs.openSync(file, 'r');
  fs.unlinkSync(file);
  if (fd !== 0) throw new Error(`stdin landed on descriptor ${fd}, not 0`);
}

exports.handler = function handler(event) {
  const main = path.join(WORKSPACE, String(event.main));
  writeFiles(event.files || []);
  placeStdin(Buffer.from(event.stdin || '', 'base64'));
  process.argv = [process.execPath, main, ...(event.args || []).map(String)];
  // Outside the wrapper's promise chain: an error the program does not
  // catch is uncaught, and Node.js reports it and exits 1 as it would.
  setImmediate(() => Module.runMain(main));
  return new Promise(() => {});
};
