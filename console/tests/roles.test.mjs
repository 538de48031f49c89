// Signing in, per role: each role sees the navigation its API rights allow
// and nothing else; the key lives in this tab's sessionStorage only (never
// a URL, a cookie or localStorage); a wrong key is refused with the
// server's reason.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { client, launch, newPage, probes, signIn, startServer } from './harness.mjs';
import { GREETER, greeter } from './fixtures.mjs';

let server;
let browser;
let keys;

before(async () => {
  server = await startServer();
  browser = await launch();
  const admin = client(server.base, server.admin);
  await admin('POST', '/v1/apps', { id: 'shop', name: 'The shop' });
  const developer = (await admin('POST', '/v1/keys', { name: 'dana', role: 'developer' })).secret;
  await client(server.base, developer)('POST', '/v1/plugins', greeter(), 'application/zip');
  await client(server.base, developer)('POST', `/v1/plugins/${GREETER}/versions/1.0.0/submit`);
  await admin('POST', `/v1/plugins/${GREETER}/versions/1.0.0/approve`);
  await admin('POST', '/v1/apps/shop/installations', { plugin: GREETER });
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

const NAV = {
  admin: ['Review queue', 'Plugins', 'Upload', 'Apps', 'Sessions', 'Executions', 'Templates', 'Signing keys', 'Operations', 'API keys', 'Audit log'],
  developer: ['Plugins', 'Upload', 'Executions', 'Templates', 'Signing keys', 'Audit log'],
  app: ['My app', 'Sessions', 'Executions', 'Templates'],
};

for (const role of ['admin', 'developer', 'app']) {
  test(`${role === 'admin' ? 'an' : 'a'} ${role} key sees what its role may do, and the key stays in this tab`, async () => {
    const page = await newPage(browser);
    await signIn(page, server.base, keys[role]);
    assert.match(await page.getByTestId('whoami').textContent(), new RegExp(role));
    const links = await page.getByRole('navigation', { name: 'Main' }).getByRole('link').allTextContents();
    assert.deepEqual(links, NAV[role]);

    const stored = await page.evaluate(() => ({
      session: Object.fromEntries(Object.entries(sessionStorage)),
      local: localStorage.length,
      cookie: document.cookie,
    }));
    assert.deepEqual(stored, { session: { 'warden.apiKey': keys[role] }, local: 0, cookie: '' });
    assert.ok(!page.url().includes(keys[role]), 'the key is not in the URL');

    // A page the role may not use is not offered, and the server refuses it anyway.
    if (role !== 'admin') {
      await page.goto(`${server.base}/console/keys`);
      await page.getByRole('alert').getByText(/needs an admin key/).waitFor();
    }
    if (role === 'app') {
      // App keys cannot read manifests: the try page offers a JSON editor instead of the form.
      await page.goto(`${server.base}/console/apps/shop/try/${GREETER}`);
      await page.getByLabel('Event (JSON)').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Install' }).count(), 0);
    }

    // A new tab (a new browser session) asks again; signing out forgets the key.
    const other = await newPage(browser);
    await other.goto(`${server.base}/console/`);
    await other.getByLabel('API key').waitFor();
    await other.context().close();
    await page.goto(`${server.base}/console/`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(await probes(page), { pwned: undefined, violations: [] });
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
}

test('a wrong key is refused with the reason, and nothing is kept', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.base}/console/`);
  await page.getByLabel('API key').fill('wk_0000000000000000000000000000000000000000');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText(/401/).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.context().close();
});

test('an admin makes a key (its secret shown once) and revokes it', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, keys.admin);
  await page.goto(`${server.base}/console/keys`);
  await page.getByLabel('Name').fill('temp-dev');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = await page.getByTestId('new-secret').textContent();
  assert.match(secret, /^wk_[0-9a-f]{40}$/);
  const me = await client(server.base, secret)('GET', '/v1/me');
  assert.equal(me.name, 'temp-dev');
  page.once('dialog', (d) => d.accept());
  const row = page.getByRole('table', { name: 'API keys' }).getByRole('row', { name: /temp-dev/ });
  await row.getByRole('button', { name: 'Revoke' }).click();
  await row.getByRole('button', { name: 'Revoke' }).waitFor({ state: 'detached' });
  await assert.rejects(client(server.base, secret)('GET', '/v1/me'), /401/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
