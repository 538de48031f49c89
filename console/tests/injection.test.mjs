// Everything user-controlled is text. Markup and script are planted in a
// plugin's name, description and manifest, its schema's titles, a file's
// name and content, the handler's output, return value and error, a
// rejection reason, an app's name and a key's name, a template's name and
// description, a session file's name and a session's output; then every page that
// shows them is opened. Nothing may run (window.__pwned stays undefined),
// the CSP must not even have had to block anything (no violation: the
// markup never became elements), and the payload must be visible as text.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { client, launch, newPage, pack, probes, pythonManifest, shot, signIn, startServer } from './harness.mjs';

// At most 100 characters: the manifest's name field takes no more.
const X = '<img src=x onerror=window.__pwned=1><svg onload=window.__pwned=2><script>window.__pwned=3</script>';
const PY = JSON.stringify(X);
const HOSTILE = 'tests.console.hostile';
const THROWER = 'tests.console.thrower';

let server;
let browser;
let execOk;
let execErr;

before(async () => {
  server = await startServer();
  browser = await launch();
  const admin = client(server.base, server.admin);
  const schema = {
    type: 'object',
    title: X,
    description: X,
    properties: { note: { type: 'string', title: X, description: X, default: X, enum: [X, 'plain'] } },
  };
  const files = {
    'main.py': `# ${X}\nimport sys\n\ndef handler(event):\n    print(${PY}, flush=True)\n    print(${PY}, file=sys.stderr, flush=True)\n    return {"html": ${PY}, ${PY}: "key"}\n`,
    'README.md': X,
  };
  await admin('POST', '/v1/plugins', pack(pythonManifest(HOSTILE, { name: X, description: X, author: X, changelog: X, input_schema: schema }), files), 'application/zip');
  await admin('POST', `/v1/plugins/${HOSTILE}/versions/1.0.0/submit`);
  await admin('POST', `/v1/plugins/${HOSTILE}/versions/1.0.0/approve`);
  await admin('POST', '/v1/plugins', pack(pythonManifest(THROWER, { name: X }), { 'main.py': `def handler(event):\n    raise ValueError(${PY})\n` }), 'application/zip');
  await admin('POST', `/v1/plugins/${THROWER}/versions/1.0.0/submit`);
  await admin('POST', `/v1/plugins/${THROWER}/versions/1.0.0/approve`);
  await admin('POST', '/v1/apps', { id: 'evil', name: X });
  await admin('POST', '/v1/apps/evil/installations', { plugin: HOSTILE });
  await admin('POST', '/v1/apps/evil/installations', { plugin: THROWER });
  execOk = (await admin('POST', `/v1/apps/evil/plugins/${HOSTILE}/execute`, { note: X })).id;
  execErr = (await admin('POST', `/v1/apps/evil/plugins/${THROWER}/execute`, {})).id;
  // A version rejected with markup in its reason, and a key named with markup.
  await admin('POST', '/v1/plugins', pack(pythonManifest(HOSTILE, { version: '1.1.0', name: X, description: X }), files), 'application/zip');
  await admin('POST', `/v1/plugins/${HOSTILE}/versions/1.1.0/submit`);
  await admin('POST', `/v1/plugins/${HOSTILE}/versions/1.1.0/reject`, { reason: X });
  await admin('POST', '/v1/keys', { name: X.slice(0, 60), role: 'developer' });
  // One left pending, for the review queue.
  await admin('POST', '/v1/plugins', pack(pythonManifest(HOSTILE, { version: '1.2.0', name: X, description: X }), files), 'application/zip');
  await admin('POST', `/v1/plugins/${HOSTILE}/versions/1.2.0/submit`);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function assertInert(page, where) {
  const p = await probes(page);
  assert.equal(p.pwned, undefined, `${where}: injected script ran`);
  assert.deepEqual(p.violations, [], `${where}: markup reached the DOM (the CSP had to block it)`);
  assert.equal(await page.locator('img[src="x"], body script:not([src]), svg[onload]').count(), 0, `${where}: planted elements exist`);
  assert.deepEqual(page.errors, [], `${where}: page errors`);
}

test('planted markup and script are shown as text on every page and never run', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  const visible = (text = 'onerror=window.__pwned=1') => page.getByText(text, { exact: false }).first().waitFor();
  const visits = [
    ['plugins', '/console/plugins'],
    ['plugin', `/console/plugins/${HOSTILE}`],
    ['review queue', '/console/review'],
    ['rejected version', `/console/plugins/${HOSTILE}/versions/1.1.0`],
    ['app', '/console/apps/evil'],
    ['apps', '/console/apps'],
    ['keys', '/console/keys'],
    ['audit', '/console/audit'],
    ['execution (output, return value)', `/console/executions/${execOk}`],
    ['execution (error)', `/console/executions/${execErr}`],
  ];
  for (const [where, path] of visits) {
    await page.goto(server.base + path);
    // The review queue is empty (nothing pending): it only must stay inert.
    if (where !== 'review queue') await visible().catch(async (e) => {
      await shot(page, 'injection-failed');
      throw new Error(`${where}: the payload is not shown as text (${e.message})`);
    });
    await assertInert(page, where);
  }

  // The version's files (name and content), manifest and history tabs.
  await page.goto(`${server.base}/console/plugins/${HOSTILE}/versions/1.0.0`);
  for (const tab of ['Files', 'Manifest and schemas', 'History']) {
    await page.getByRole('tab', { name: tab }).click();
    if (tab === 'Files') {
      await page.getByRole('button', { name: 'main.py' }).click();
      await page.locator('.source').getByText('# <img').waitFor();
    }
    if (tab === 'Manifest and schemas') await visible();
    await assertInert(page, `version tab ${tab}`);
  }

  // The generated form renders the schema's titles, descriptions, enum and
  // default as text; the run streams hostile output live.
  await page.goto(`${server.base}/console/apps/evil/try/${HOSTILE}`);
  await page.locator('.rjsf-wrap legend').getByText('<img src=x onerror=window.__pwned=1>', { exact: false }).waitFor();
  await assertInert(page, 'try form');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.getByRole('heading', { name: 'Result' }).waitFor({ timeout: 30_000 });
  await page.getByTestId('live-output').getByText('<script>', { exact: false }).first().waitFor();
  await shot(page, 'injection-try');
  await assertInert(page, 'try result');
  await page.context().close();
});

test('a file named with markup, uploaded through the page, is listed as text', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  await page.goto(`${server.base}/console/upload`);
  const name = `${X.slice(0, 60)}.py`;
  const zip = pack(pythonManifest('tests.console.badname'), { 'main.py': 'def handler(e):\n    return e\n', [name]: 'x = 1\n' });
  await page.locator('#package-file').setInputFiles({ name: 'hostile.zip', mimeType: 'application/zip', buffer: Buffer.from(zip) });
  // The server may take the name or refuse it (naming it): either way it is text.
  const outcome = await Promise.race([
    page.getByRole('heading', { name: 'Uploaded' }).waitFor().then(() => 'uploaded'),
    page.getByRole('alert').waitFor().then(() => 'refused'),
  ]);
  if (outcome === 'uploaded') {
    await page.getByRole('link', { name: /tests\.console\.badname/ }).click();
    await page.getByRole('tab', { name: 'Files' }).click();
    await page.getByRole('button', { name }).click();
    await page.locator('.file-view h2').getByText(name).waitFor();
  } else {
    assert.match(await page.getByRole('alert').textContent(), /onerror/);
  }
  await shot(page, 'injection-file-name');
  await assertInert(page, `file name (${outcome})`);
  await page.context().close();
});

test('session file names, session output and template names are shown as text and never run', async () => {
  const admin = client(server.base, server.admin);
  await admin('POST', '/v1/templates', { id: 'hostile', runtime: 'python', name: X, description: X });
  const session = await admin('POST', '/v1/sessions', { app: 'evil', template: 'hostile' });
  // A file name holds no `/`: the payload without its slashes.
  const fileName = `${X.replace(/\//g, '')}.txt`;
  await admin('PUT', `/v1/sessions/${session.id}/files/${encodeURIComponent(fileName)}`, X, 'application/octet-stream');
  const code = `import sys\nprint(${PY}, flush=True)\nprint(${PY}, file=sys.stderr, flush=True)\n`;
  const ran = await admin('POST', `/v1/sessions/${session.id}/executions`, { language: 'python', code });
  assert.equal(ran.status, 'success');

  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  const visible = (text = 'onerror=window.__pwned=1') => page.getByText(text, { exact: false }).first().waitFor();
  for (const [where, path, payload] of [
    ['templates', '/console/templates', true],
    ['template', '/console/templates/hostile', true],
    ['sessions', '/console/sessions', false],
    ['session (file names)', `/console/sessions/${session.id}`, true],
    ['session execution (output)', `/console/executions/${ran.id}`, true],
  ]) {
    await page.goto(server.base + path);
    if (payload) await visible().catch(async (e) => {
      await shot(page, 'injection-failed');
      throw new Error(`${where}: the payload is not shown as text (${e.message})`);
    });
    else await page.getByRole('table', { name: 'Sessions' }).getByText(session.id).waitFor();
    await assertInert(page, where);
  }

  // The file's name in the browser, and output streamed live through the page.
  await page.goto(`${server.base}/console/sessions/${session.id}`);
  await page.getByRole('table', { name: 'Workspace files' }).getByText(fileName).waitFor();
  await page.getByLabel('Code', { exact: true }).fill(code);
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await page.getByRole('heading', { name: 'Result' }).waitFor({ timeout: 30_000 });
  await page.getByTestId('live-output').getByText('<script>', { exact: false }).first().waitFor();
  await shot(page, 'injection-session');
  await assertInert(page, 'session run');
  await admin('POST', `/v1/sessions/${session.id}/terminate`);
  await page.context().close();
});
