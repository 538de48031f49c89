'use strict';
// The sessions client against a real `warden serve` (node --test sdk/node/test/).
// The binary comes from WARDEN_BIN (scripts/test builds it and sets it);
// without it the tests are skipped, saying so loudly, unless
// WARDEN_REQUIRE_SDK_SERVER=1 (set by scripts/test) makes that a failure.
// The server needs root (the jail).
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const { Client, WardenError } = require('../sessions');

const BIN = process.env.WARDEN_BIN || '';
const REASON =
  'WARDEN_BIN is not set to a built `warden` binary: the sessions client is NOT tested ' +
  '(scripts/test sets it; or `cargo build -p warden-cli` and WARDEN_BIN=target/debug/warden)';
let usable = false;
try {
  usable = !!BIN && (fs.accessSync(BIN, fs.constants.X_OK), true);
} catch {
  usable = false;
}
if (!usable) {
  if (process.env.WARDEN_REQUIRE_SDK_SERVER === '1') throw new Error(REASON);
  process.stderr.write(`\n*** SKIPPED: ${REASON} ***\n`);
}

async function post(base, p, key, body) {
  const r = await fetch(base + p, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(r.ok, `${p}: ${r.status}`);
  return r.json();
}

test('sessions through the client', { skip: usable ? false : REASON }, async (t) => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-sdk-'));
  const env = { ...process.env, WARDEN_LOG: 'warn' };
  delete env.WARDEN_DATABASE_URL;
  const server = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', data], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env,
  });
  t.after(() => {
    server.kill('SIGTERM');
    fs.rmSync(data, { recursive: true, force: true });
  });
  let admin;
  let base;
  const lines = readline.createInterface({ input: server.stdout });
  for await (const line of lines) {
    if (line.trim().startsWith('wk_')) admin = line.trim();
    if (line.startsWith('warden: listening on ')) {
      base = line.split(/\s+/)[3];
      break;
    }
  }
  // Keep reading so the server never blocks on a full pipe.
  server.stdout.resume();
  assert.ok(admin && base, 'warden serve started (is this root?)');
  await post(base, '/v1/apps', admin, { id: 'shop' });
  const key = (await post(base, '/v1/keys', admin, { name: 'shop', role: 'app', app: 'shop' })).secret;
  const client = new Client(base, key);

  await t.test('code in each mode; a stateful session keeps its variables', async () => {
    let kept;
    const value = await client.withSession({ stateful: true, env: { GREETING: 'hi' }, resources: { memory_mb: 256 } }, async (s) => {
      kept = s;
      assert.strictEqual(s.record.status, 'running');
      await s.run('x = 21');
      const r = await s.run('x * 2');
      assert.strictEqual(r.return_value, 42, JSON.stringify(r));
      const js = await s.run('let y = 5', { language: 'javascript' });
      assert.strictEqual(js.status, 'success', JSON.stringify(js));
      assert.strictEqual((await s.run('y + 1', { language: 'javascript' })).return_value, 6);
      const sc = await s.run("import os\nprint(os.environ['GREETING'])\nraise SystemExit(3)", { mode: 'script' });
      assert.deepStrictEqual([sc.stdout, sc.exit_code], ['hi\n', 3]);
      const h = await s.run("def handler(e):\n    return {'twice': e['n'] * 2}", { mode: 'handler', event: { n: 4 } });
      assert.deepStrictEqual(h.return_value, { twice: 8 });
      return 'done';
    });
    assert.strictEqual(value, 'done');
    assert.strictEqual(kept.record.status, 'terminated');
    await kept.close(); // twice is fine
    await assert.rejects(kept.run('print(1)'), (e) => e instanceof WardenError && e.status === 409);
  });

  await t.test('output streams as events; files move both ways', async () => {
    const s = await client.createSession();
    try {
      const events = [];
      for await (const e of s.stream("import sys\nprint('out')\nprint('err', file=sys.stderr)")) events.push(e);
      const kinds = events.map((e) => e.kind);
      assert.ok(kinds.includes('stdout') && kinds.includes('stderr'), kinds.join());
      assert.strictEqual(kinds[kinds.length - 1], 'result');
      assert.strictEqual(events.filter((e) => e.kind === 'stdout').map((e) => e.data).join(''), 'out\n');

      const bytes = Buffer.alloc(1024, 7);
      const entry = await s.upload('/workspace/data/in.bin', bytes);
      assert.strictEqual(entry.size, 1024);
      assert.strictEqual((await s.run("print(len(open('data/in.bin','rb').read()))")).stdout, '1024\n');
      assert.ok((await s.download('data/in.bin')).equals(bytes));
      assert.deepStrictEqual((await s.listFiles('data')).map((e) => e.name), ['in.bin']);
      await s.remove('data/in.bin');
      assert.deepStrictEqual(await s.listFiles('data'), []);
      await assert.rejects(s.download('data/in.bin'), (e) => e.status === 404);
      const listed = await client.listSessions({ status: 'running' });
      assert.ok(listed.some((x) => x.id === s.id));
    } finally {
      await s.close();
    }
  });

  await t.test('bad requests reject with the server problem', async () => {
    await assert.rejects(client.createSession({ template: 'no-such-template' }), (e) => {
      assert.ok(e instanceof WardenError);
      assert.strictEqual(e.status, 422);
      assert.deepStrictEqual(e.errors.map((x) => x.location), ['/template']);
      return true;
    });
    await assert.rejects(client.session('ses_00000000000000000000000000'), (e) => e.status === 404);
    // An install the server refuses (a shell session takes no packages)
    // rejects with its located problem, and the session runs on.
    const sh = await client.createSession({ template: 'shell' });
    try {
      await assert.rejects(sh.install([{ ecosystem: 'pip', name: 'six' }]), (e) => {
        assert.strictEqual(e.status, 422);
        assert.deepStrictEqual(e.errors.map((x) => x.location), ['/packages']);
        return true;
      });
      assert.strictEqual((await sh.run('echo still', { language: 'shell' })).stdout, 'still\n');
    } finally {
      await sh.close();
    }
  });
});
