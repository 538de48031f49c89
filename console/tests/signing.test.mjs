// Signing keys and trusted versions: a developer registers a public key on
// the signing-keys page (a malformed one is refused at its field), signs a
// version with `warden plugin sign`; an admin sees the signature in the
// review queue, approves the version as trusted there, and the version
// shows its trust level and signer.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { client, launch, nav, newPage, probes, shot, signIn, startServer, warden } from './harness.mjs';
import { GREETER, greeter } from './fixtures.mjs';

let server;
let browser;
let dir;
let developer;

before(async () => {
  server = await startServer();
  browser = await launch();
  dir = mkdtempSync(join(tmpdir(), 'warden-signing-'));
  warden(['plugin', 'keygen', '--out', join(dir, 'alice')]);
  developer = (await client(server.base, server.admin)('POST', '/v1/keys', { name: 'alice', role: 'developer' })).secret;
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a developer registers a key; a signed version is approved as trusted from the review queue', async () => {
  const pub = readFileSync(join(dir, 'alice.pub'), 'utf8').trim().split('\n').pop();
  const page = await newPage(browser);
  await signIn(page, server.base, developer);
  await nav(page, 'Signing keys');

  // A malformed key is refused, located at its field.
  await page.getByLabel('Name', { exact: true }).fill('laptop');
  await page.getByLabel('Public key', { exact: true }).fill('RWQnot-a-key');
  await page.getByRole('button', { name: 'Register key' }).click();
  await page.getByRole('alert').locator('code.location').getByText('/public_key').waitFor();

  await page.getByLabel('Public key', { exact: true }).fill(pub);
  await page.getByRole('button', { name: 'Register key' }).click();
  const row = page.getByRole('table', { name: 'Signing keys' }).getByRole('row', { name: /laptop/ });
  await row.waitFor();
  const keyId = (await row.locator('code').first().textContent()).trim();
  assert.match(keyId, /^[0-9A-F]{16}$/);
  assert.match(await row.textContent(), new RegExp(pub.slice(0, 20).replace(/[+/]/g, '\\$&')));
  await shot(page, 'signing-keys');

  // Upload, sign with the CLI, attach, submit (the developer's own API calls).
  const dev = client(server.base, developer);
  const zip = greeter();
  writeFileSync(join(dir, 'greeter.zip'), zip);
  warden(['plugin', 'sign', join(dir, 'greeter.zip'), '--key', join(dir, 'alice.key')]);
  await dev('POST', '/v1/plugins', zip, 'application/zip');
  await dev('PUT', `/v1/plugins/${GREETER}/versions/1.0.0/signature`, { signature: readFileSync(join(dir, 'greeter.zip.minisig'), 'utf8') });
  await dev('POST', `/v1/plugins/${GREETER}/versions/1.0.0/submit`);
  await page.goto(`${server.base}/console/plugins/${GREETER}/versions/1.0.0`);
  await page.locator('.fields').getByText(keyId).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Approve as trusted' }).count(), 0, 'developers do not approve');
  await page.context().close();

  const admin = await newPage(browser);
  await signIn(admin, server.base, server.admin);
  const queued = admin.getByRole('table', { name: 'Pending versions' }).getByRole('row', { name: new RegExp(GREETER.replace(/\./g, '\\.')) });
  await queued.getByText(keyId).waitFor();
  await queued.getByRole('button', { name: 'Approve as trusted' }).click();
  await admin.getByText('Nothing waits for review.').waitFor();
  await admin.goto(`${server.base}/console/plugins/${GREETER}/versions/1.0.0`);
  const fields = admin.locator('.fields');
  await fields.getByText('active').waitFor();
  await fields.getByText('trusted', { exact: true }).waitFor();
  assert.equal((await client(server.base, server.admin)('GET', `/v1/plugins/${GREETER}/versions/1.0.0`)).trust_level, 'trusted');
  await admin.goto(`${server.base}/console/plugins/${GREETER}`);
  await admin.getByRole('table', { name: 'Versions' }).getByText(`signed by ${keyId}`).waitFor();

  // An admin sees every owner's keys and may revoke one: the version is no longer trusted.
  await admin.goto(`${server.base}/console/signing-keys`);
  const adminRow = admin.getByRole('table', { name: 'Signing keys' }).getByRole('row', { name: /laptop/ });
  admin.once('dialog', (d) => void d.accept());
  await adminRow.getByRole('button', { name: 'Revoke' }).click();
  await adminRow.getByRole('button', { name: 'Revoke' }).waitFor({ state: 'detached' });
  assert.equal((await client(server.base, server.admin)('GET', `/v1/plugins/${GREETER}/versions/1.0.0`)).trust_level, 'untrusted');

  assert.deepEqual(await probes(admin), { pwned: undefined, violations: [] });
  assert.deepEqual(admin.errors, []);
  await admin.context().close();
});

test('an unsigned version offers no trusted approval', async () => {
  const dev = client(server.base, developer);
  await dev('POST', '/v1/plugins', greeter('1.1.0'), 'application/zip');
  await dev('POST', `/v1/plugins/${GREETER}/versions/1.1.0/submit`);
  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  const row = page.getByRole('table', { name: 'Pending versions' }).getByRole('row', { name: /1\.1\.0/ });
  await row.getByText('not signed').waitFor();
  assert.equal(await row.getByRole('button', { name: 'Approve as trusted' }).count(), 0);
  await page.goto(`${server.base}/console/plugins/${GREETER}/versions/1.1.0`);
  await page.getByRole('button', { name: 'Approve', exact: true }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Approve as trusted' }).count(), 0);
  await page.context().close();
});
