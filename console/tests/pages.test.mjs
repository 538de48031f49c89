// Every page, for the role that uses it: axe-core finds no serious or
// critical accessibility violation, the probes stay clean, and a screenshot
// is taken (docs/console/ with WARDEN_CONSOLE_SCREENSHOTS=docs).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { axe, client, launch, newPage, probes, shot, signIn, startServer, warden } from './harness.mjs';
import { GREETER, QUICK, greeter, quick } from './fixtures.mjs';

let server;
let browser;
let keys;
let execution;

before(async () => {
  server = await startServer();
  browser = await launch();
  const admin = client(server.base, server.admin);
  const developer = (await admin('POST', '/v1/keys', { name: 'dana', role: 'developer' })).secret;
  const dev = client(server.base, developer);
  for (const [code, zip] of [
    [QUICK, quick()],
    [GREETER, greeter()],
  ]) {
    await dev('POST', '/v1/plugins', zip, 'application/zip');
    await dev('POST', `/v1/plugins/${code}/versions/1.0.0/submit`);
    await admin('POST', `/v1/plugins/${code}/versions/1.0.0/approve`);
  }
  await dev('POST', '/v1/plugins', greeter('1.1.0', { limits: { timeout_ms: 20000, memory_mb: 256 } }), 'application/zip');
  await dev('POST', `/v1/plugins/${GREETER}/versions/1.1.0/submit`);
  await admin('POST', '/v1/apps', { id: 'shop', name: 'The shop' });
  await admin('POST', '/v1/apps/shop/installations', { plugin: QUICK });
  await admin('POST', '/v1/apps/shop/installations', { plugin: GREETER, version: '1.0.0' });
  execution = (await admin('POST', `/v1/apps/shop/plugins/${GREETER}/execute`, { name: 'Ada', mood: 'happy', tags: ['vip'] })).id;
  for (let i = 0; i < 5; i++) await admin('POST', `/v1/apps/shop/plugins/${QUICK}/execute`, { n: i, fail: i === 3 });
  keys = {
    admin: server.admin,
    developer,
    app: (await admin('POST', '/v1/keys', { name: 'shop-key', role: 'app', app: 'shop' })).secret,
  };
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function check(page, name, ready) {
  await ready().catch(async (e) => {
    await shot(page, `${name}-failed`);
    throw e;
  });
  const violations = await axe(page);
  assert.deepEqual(violations, [], `${name}: ${JSON.stringify(violations, null, 1)}`);
  assert.deepEqual(await probes(page), { pwned: undefined, violations: [] }, name);
  assert.deepEqual(page.errors, [], name);
  await shot(page, name);
}

test('the sign-in page', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.base}/console/`);
  await check(page, 'signin', () => page.getByLabel('API key').waitFor());
  await page.context().close();
});

test('every admin page', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, keys.admin);
  const go = async (path, name, ready) => {
    await page.goto(server.base + path);
    await check(page, name, ready);
  };
  await go('/console/review', 'review-queue', () => page.getByRole('link', { name: GREETER }).waitFor());
  await go(`/console/plugins/${GREETER}/versions/1.1.0`, 'version-report', () =>
    page.getByRole('table', { name: 'Permission changes' }).getByText('limits.memory_mb').waitFor(),
  );
  await page.getByRole('tab', { name: 'Files' }).click();
  await check(page, 'version-files', () => page.locator('.source tr.mark').first().waitFor());
  await page.getByRole('tab', { name: 'Manifest and schemas' }).click();
  await check(page, 'version-manifest', () => page.getByLabel('Input schema').waitFor());
  await page.getByRole('tab', { name: 'History' }).click();
  await check(page, 'version-history', () => page.getByRole('table', { name: 'Version history' }).waitFor());
  await go('/console/plugins', 'plugins', () => page.getByRole('link', { name: QUICK }).waitFor());
  await go(`/console/plugins/${GREETER}`, 'plugin', () => page.getByRole('table', { name: 'Versions' }).waitFor());
  await go('/console/upload', 'upload', () => page.getByTestId('dropzone').waitFor());
  await go('/console/apps', 'apps', () => page.getByRole('link', { name: 'shop' }).waitFor());
  await go('/console/apps/shop', 'app', () => page.getByRole('table', { name: 'Installations' }).waitFor());
  await go(`/console/apps/shop/try/${GREETER}`, 'try', () => page.getByLabel(/^Name/).waitFor());
  await go('/console/executions', 'executions', () => page.getByRole('link', { name: execution }).waitFor());
  await go(`/console/executions/${execution}`, 'execution', () => page.getByLabel('Return value').waitFor());
  await go('/console/keys', 'keys', () => page.getByRole('table', { name: 'API keys' }).getByText('dana').waitFor());
  await go('/console/audit', 'audit', () => page.getByRole('table', { name: 'Audit events' }).getByText('approve').first().waitFor());

  // Operations: load arrives while the page polls, and the charts draw it.
  await page.goto(`${server.base}/console/operations`);
  const admin = client(server.base, keys.admin);
  const deadline = Date.now() + 7000;
  for (let i = 0; Date.now() < deadline; i++) await admin('POST', `/v1/apps/shop/plugins/${QUICK}/execute`, { n: i, fail: i % 5 === 4 });
  await check(page, 'operations', async () => {
    await page.locator('.chart path.line').first().waitFor();
    await page.getByRole('img', { name: /Executions per second: all [0-9.]+ \/s/ }).waitFor();
    await page.getByRole('img', { name: /Latency: p50 [0-9.]+ ms/ }).waitFor();
  });
  await page.context().close();
});

test('the developer and app pages', async () => {
  const dev = await newPage(browser);
  await signIn(dev, server.base, keys.developer);
  await dev.goto(`${server.base}/console/executions?plugin=${QUICK}`);
  await check(dev, 'developer-executions', () => dev.getByRole('table', { name: 'Executions' }).getByText('success').first().waitFor());
  await dev.goto(`${server.base}/console/audit`);
  await check(dev, 'developer-audit', () => dev.getByText(/one of their plugins at a time/).waitFor());
  await dev.context().close();

  const app = await newPage(browser);
  await signIn(app, server.base, keys.app);
  await check(app, 'app-home', () => app.getByRole('table', { name: 'Installations' }).waitFor());
  await app.goto(`${server.base}/console/apps/shop/try/${QUICK}`);
  await check(app, 'app-try', () => app.getByLabel('Event (JSON)').waitFor());
  await app.context().close();
});

test('the sessions, templates and signing-key pages', async () => {
  const admin = client(server.base, keys.admin);
  const session = await admin('POST', '/v1/sessions', { app: 'shop', template: 'python-basic' });
  await admin('PUT', `/v1/sessions/${session.id}/files/notes.txt`, 'hello', 'application/octet-stream');
  const ran = await admin('POST', `/v1/sessions/${session.id}/executions`, { language: 'python', code: "print('hi')" });
  await admin('POST', `/v1/sessions/${session.id}/snapshots`);
  await admin('POST', '/v1/templates', {
    id: 'data',
    runtime: 'python',
    name: 'Data',
    description: 'tabulate, not built',
    packages: [{ ecosystem: 'pip', name: 'tabulate', version: '==0.9.0' }],
    env: { LANG: 'C.UTF-8' },
  });
  const dir = mkdtempSync(join(tmpdir(), 'warden-pages-'));
  try {
    warden(['plugin', 'keygen', '--out', join(dir, 'k')]);
    const pub = readFileSync(join(dir, 'k.pub'), 'utf8').trim().split('\n').pop();
    await client(server.base, keys.developer)('POST', '/v1/signing-keys', { name: 'laptop', public_key: pub });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const page = await newPage(browser);
  await signIn(page, server.base, keys.admin);
  const go = async (p, path, name, ready) => {
    await p.goto(server.base + path);
    await check(p, name, ready);
  };
  await go(page, '/console/sessions', 'a11y-sessions', () => page.getByRole('link', { name: session.id }).waitFor());
  await go(page, `/console/sessions/${session.id}`, 'a11y-session', async () => {
    await page.getByRole('table', { name: 'Workspace files' }).getByText('notes.txt').waitFor();
    await page.getByRole('table', { name: 'Session executions' }).getByRole('link', { name: ran.id }).waitFor();
    await page.getByRole('table', { name: 'Snapshots' }).getByText('ready').waitFor();
  });
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  await check(page, 'a11y-session-run', () => page.getByRole('heading', { name: 'Result' }).waitFor({ timeout: 30_000 }));
  await go(page, `/console/executions/${ran.id}`, 'a11y-session-execution', () => page.getByTestId('stdout').getByText('hi').waitFor());
  await go(page, '/console/templates', 'a11y-templates', () => page.getByRole('link', { name: 'data', exact: true }).waitFor());
  await go(page, '/console/templates/data', 'a11y-template', () => page.getByRole('table', { name: 'Packages' }).waitFor());
  await go(page, '/console/templates/new', 'a11y-template-new', () => page.locator('#root_id').waitFor());
  await go(page, '/console/signing-keys', 'a11y-signing-keys', () => page.getByRole('table', { name: 'Signing keys' }).getByText('laptop').waitFor());
  await go(page, `/console/plugins/${GREETER}/versions/1.0.0`, 'a11y-version-trust', () => page.locator('.fields').getByText('untrusted').waitFor());
  await page.context().close();

  const app = await newPage(browser);
  await signIn(app, server.base, keys.app);
  await go(app, '/console/sessions', 'a11y-app-sessions', () => app.getByRole('link', { name: session.id }).waitFor());
  await go(app, `/console/sessions/${session.id}`, 'a11y-app-session', () => app.getByRole('table', { name: 'Workspace files' }).getByText('notes.txt').waitFor());
  await go(app, '/console/templates', 'a11y-app-templates', () => app.getByRole('link', { name: 'python-basic' }).waitFor());
  await app.context().close();

  const dev = await newPage(browser);
  await signIn(dev, server.base, keys.developer);
  await go(dev, '/console/signing-keys', 'a11y-developer-signing-keys', () => dev.getByRole('table', { name: 'Signing keys' }).getByText('laptop').waitFor());
  await go(dev, '/console/templates/python-basic', 'a11y-developer-template', () => dev.getByRole('heading', { name: 'Template python-basic' }).waitFor());
  await dev.context().close();
  await admin('POST', `/v1/sessions/${session.id}/terminate`);
});
