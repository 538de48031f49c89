// Templates in the console: the list (built-ins included), a new template
// through the form generated from the server's NewTemplate schema (the
// browser's check first, then the server's), and its build, whose log is
// followed live until the layer is ready with what it installed. Builds
// install from a folder of wheels (layers.folder): no network.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { client, launch, nav, newPage, probes, shot, signIn, startServer, wheel } from './harness.mjs';

let server;
let browser;
let folder;

before(async () => {
  // Boxes run as other uids: the folder and its wheels are world-readable.
  folder = mkdtempSync(join(tmpdir(), 'warden-wheels-'));
  chmodSync(folder, 0o755);
  const w = wheel('tinyhello', '1.0.0', "def hi():\n    return 'hi'\n");
  writeFileSync(join(folder, w.name), w.bytes, { mode: 0o644 });
  server = await startServer({ WARDEN_LAYERS_FOLDER: folder });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (folder) rmSync(folder, { recursive: true, force: true });
});

test('an admin creates a template through the generated form and builds it, watching the log', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  await nav(page, 'Templates');
  const list = page.getByRole('table', { name: 'Templates' });
  for (const id of ['node-basic', 'python-basic', 'shell']) await list.getByRole('link', { name: id, exact: true }).waitFor();
  await shot(page, 'templates');

  await page.getByRole('link', { name: 'New template' }).click();
  await page.locator('#root_id').waitFor();
  // The browser checks the contract's patterns before anything is sent.
  await page.locator('#root_id').fill('Not An Id');
  await page.getByRole('button', { name: 'Create template' }).click();
  await page.locator('.rjsf-wrap .errors').waitFor();
  assert.match(await page.locator('.rjsf-wrap .errors').textContent(), /id/);

  await page.locator('#root_id').fill('tiny');
  await page.locator('#root_name').fill('Tiny');
  await page.locator('#root_packages').getByRole('button', { name: 'Add item' }).click();
  await page.locator('#root_packages_0_name').fill('tinyhello');
  await page.locator('#root_packages_0_version').fill('==1.0.0');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'template-new');
  await page.getByRole('button', { name: 'Create template' }).click();
  await page.getByRole('heading', { name: 'Template tiny' }).waitFor();
  // The heading may come before the table's rows: wait for the row, then
  // count (count() itself does not wait).
  const packages = page.getByRole('table', { name: 'Packages' });
  await packages.getByText('tinyhello').first().waitFor();
  assert.equal(await packages.getByText('tinyhello').count(), 1);

  await page.getByRole('button', { name: 'Build' }).click();
  // The live log follows the build to its end, then the layer's record shows
  // what was installed and the installer's output.
  await page.getByRole('region', { name: 'Build log' }).locator('.badge').getByText('ready').waitFor({ timeout: 120_000 });
  const streamed = await page.getByTestId('build-log').textContent();
  assert.match(streamed + (await page.getByTestId('layer-log').textContent()), /tinyhello/i);
  await page.getByRole('status').getByText('ready').waitFor();
  const installed = page.getByRole('table', { name: 'Installed' });
  await installed.getByText('tinyhello').waitFor();
  assert.match(await installed.textContent(), /1\.0\.0/);
  await shot(page, 'template-build');

  const t = await client(server.base, server.admin)('GET', '/v1/templates/tiny');
  assert.equal(t.name, 'Tiny');
  assert.match(t.layer, /^[0-9a-f]{64}$/);
  // Opened again, the page shows the stored layer and its log.
  await page.reload();
  await page.getByRole('region', { name: 'Dependency layer' }).getByText('ready').first().waitFor();
  assert.notEqual((await page.getByTestId('layer-log').textContent()).trim(), '');

  assert.deepEqual(await probes(page), { pwned: undefined, violations: [] });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('what only the server can check is refused at its location', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  await page.goto(`${server.base}/console/templates/new`);
  // Each field fits its own grammar; together they do not.
  await page.locator('#root_id').fill('sleepy');
  await page.locator('#root_resources_idle_timeout_secs').fill('7200');
  await page.locator('#root_resources_max_lifetime_secs').fill('3600');
  await page.getByRole('button', { name: 'Create template' }).click();
  const alert = page.getByRole('alert').filter({ hasText: '/resources/idle_timeout_secs' });
  await alert.waitFor();
  assert.match(await alert.textContent(), /longer than max_lifetime_secs/);
  // A taken id: the server's conflict, as it said it.
  await page.locator('#root_id').fill('shell');
  await page.locator('#root_resources_idle_timeout_secs').fill('60');
  await page.getByRole('button', { name: 'Create template' }).click();
  await page.getByRole('alert').getByText('(409)').waitFor();
  await assert.rejects(client(server.base, server.admin)('GET', '/v1/templates/sleepy'), /404/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('developers and apps read templates but are not offered to change them', async () => {
  const admin = client(server.base, server.admin);
  await admin('POST', '/v1/apps', { id: 'lab', name: 'Lab' });
  const developer = (await admin('POST', '/v1/keys', { name: 'dev', role: 'developer' })).secret;
  const app = (await admin('POST', '/v1/keys', { name: 'lab-key', role: 'app', app: 'lab' })).secret;
  for (const key of [developer, app]) {
    const page = await newPage(browser);
    await signIn(page, server.base, key);
    await nav(page, 'Templates');
    await page.getByRole('table', { name: 'Templates' }).getByRole('link', { name: 'python-basic' }).click();
    await page.getByRole('heading', { name: 'Template python-basic' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Build' }).count(), 0);
    await page.goto(`${server.base}/console/templates`);
    await page.getByRole('table', { name: 'Templates' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'New template' }).count(), 0);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});
