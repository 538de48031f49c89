// The whole journey in a real browser against a real `warden serve`:
// upload (problems located, then a good package) → submit → review with its
// findings → approve → install → run through the generated form → watch the
// live output → see the execution; and a rejection with its reason.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { client, launch, nav, newPage, probes, shot, signIn, startServer } from './harness.mjs';
import { GREETER, broken, greeter } from './fixtures.mjs';

let server;
let browser;
let keys;

before(async () => {
  server = await startServer();
  browser = await launch();
  const admin = client(server.base, server.admin);
  keys = { admin: server.admin, developer: (await admin('POST', '/v1/keys', { name: 'dana', role: 'developer' })).secret };
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Drop a file on the upload page's drop zone, as a person dragging it would. */
async function drop(page, bytes, name) {
  const dt = await page.evaluateHandle(
    ({ data, name }) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(data)], name, { type: 'application/zip' }));
      return dt;
    },
    { data: Array.from(bytes), name },
  );
  await page.getByTestId('dropzone').dispatchEvent('drop', { dataTransfer: dt });
}

test('upload → submit → review with findings → approve → install → run → live output → execution', async () => {
  // The developer uploads: first a broken package, every problem located.
  const dev = await newPage(browser);
  await signIn(dev, server.base, keys.developer);
  await nav(dev, 'Upload');
  await drop(dev, broken(), 'broken.zip');
  const problems = dev.locator('.problems li');
  await problems.first().waitFor();
  const listed = await problems.allTextContents();
  assert.ok(listed.some((p) => p.startsWith('/code')), `the code is located: ${listed}`);
  assert.ok(listed.some((p) => p.startsWith('/version')), `the version is located: ${listed}`);
  await shot(dev, 'upload-problems');

  // Then the real one, dragged in, and submitted.
  await drop(dev, greeter(), 'greeter.zip');
  await dev.getByRole('heading', { name: 'Uploaded' }).waitFor();
  await dev.getByRole('button', { name: 'Submit for review' }).click();
  await dev.locator('.uploaded .badge-pending').waitFor();

  // The admin reviews it: the queue, the report with its finding, the source with the line marked.
  const admin = await newPage(browser);
  await signIn(admin, server.base, keys.admin);
  await nav(admin, 'Review queue');
  const row = admin.getByRole('row', { name: new RegExp(GREETER.replace(/\./g, '\\.')) });
  await row.waitFor();
  await shot(admin, 'review-queue');
  await row.getByRole('link', { name: GREETER }).click();
  const finding = admin.getByRole('table', { name: 'Findings' }).getByRole('row', { name: /PY-SUBPROCESS/ });
  await finding.waitFor();
  await shot(admin, 'review-report');
  await finding.getByRole('button', { name: /^main\.py:\d+$/ }).click();
  const marked = admin.locator('.source tr.mark');
  await marked.first().waitFor();
  assert.match(await marked.first().textContent(), /import subprocess/);
  await shot(admin, 'review-source');
  await admin.getByRole('tab', { name: 'Manifest and schemas' }).click();
  await admin.getByLabel('Input schema').getByText('"mood"').waitFor();
  await admin.getByRole('tab', { name: 'History' }).click();
  await admin.getByRole('table', { name: 'Version history' }).getByRole('cell', { name: 'submit' }).waitFor();
  await admin.getByRole('button', { name: 'Approve' }).click();
  await admin.locator('.fields .badge-active').waitFor();

  // An app, the plugin installed in it (following the latest active version).
  await nav(admin, 'Apps');
  await admin.getByLabel('Id').fill('shop');
  await admin.getByLabel('Name').fill('The shop');
  await admin.getByRole('button', { name: 'Create app' }).click();
  await admin.getByRole('heading', { name: 'App shop' }).waitFor();
  await admin.getByLabel('Plugin code').fill(GREETER);
  await admin.getByRole('button', { name: 'Install' }).click();
  const inst = admin.getByRole('table', { name: 'Installations' }).getByRole('row', { name: new RegExp(GREETER.replace(/\./g, '\\.')) });
  await inst.getByText('follows the latest active version').waitFor();
  await inst.getByLabel(/Version to pin/).fill('1.0.0');
  await inst.getByRole('button', { name: 'Pin' }).click();
  await inst.getByText('pinned to 1.0.0').waitFor();
  await inst.getByRole('button', { name: 'Follow latest' }).click();
  await inst.getByText('follows the latest active version').waitFor();
  await shot(admin, 'app');

  // Try it: the form comes from the input_schema; the browser checks it first.
  await inst.getByRole('link', { name: 'Try' }).click();
  await admin.getByLabel(/^Name/).waitFor();
  assert.equal(await admin.getByLabel(/^Times/).inputValue(), '2', 'the default is filled in');
  await admin.getByRole('button', { name: 'Run' }).click();
  await admin.locator('.rjsf-wrap .errors').getByText(/required/).first().waitFor();
  await admin.getByLabel(/^Name/).fill('Ada');
  await admin.getByLabel(/^Mood/).selectOption('grumpy');
  await admin.getByRole('button', { name: 'Add item' }).click();
  await admin.locator('#root_tags_0').fill('vip');
  await admin.getByLabel('Loud').check();
  await shot(admin, 'try-form');
  await admin.getByRole('button', { name: 'Run' }).click();

  // The output arrives while the execution still runs, then the result.
  const live = admin.getByTestId('live-output');
  await live.getByText('step 1 of 3 for Ada').waitFor();
  const statusWhileRunning = await admin.locator('.live h2 .badge').textContent();
  assert.equal(statusWhileRunning, 'running', 'the first line was seen before the end');
  await shot(admin, 'try-live');
  await admin.getByRole('heading', { name: 'Result' }).waitFor({ timeout: 30_000 });
  assert.match(await live.textContent(), /step 3 of 3 for Ada/);
  const value = await admin.getByLabel('Return value').textContent();
  assert.deepEqual(JSON.parse(value), { greeting: 'HELLO, Ada!', times: 2, mood: 'grumpy', tags: ['vip'] });
  await shot(admin, 'try-result');

  // The execution, in the list and on its own page.
  await nav(admin, 'Executions');
  const exec = admin.getByRole('table', { name: 'Executions' }).getByRole('row', { name: /success/ });
  await exec.first().waitFor();
  await shot(admin, 'executions');
  await exec.first().getByRole('link', { name: /^exe_/ }).click();
  await admin.getByTestId('stdout').getByText('step 2 of 3 for Ada').waitFor();
  await shot(admin, 'execution');
  // Its artifact, downloaded through the API (the key in a header, never in the URL).
  const artifact = admin.getByRole('table', { name: 'Artifacts' }).getByRole('row', { name: /greeting\.txt/ });
  const [download] = await Promise.all([admin.waitForEvent('download'), artifact.getByRole('button', { name: 'Download' }).click()]);
  assert.equal(download.suggestedFilename(), 'greeting.txt');
  assert.equal(readFileSync(await download.path(), 'utf8'), 'HELLO, Ada!\n');

  for (const page of [dev, admin]) {
    assert.deepEqual(await probes(page), { pwned: undefined, violations: [] });
    assert.deepEqual(page.errors, []);
  }
  await dev.context().close();
  await admin.context().close();
});

test('reject with a required reason, which the developer then reads', async () => {
  const api = client(server.base, keys.developer);
  await api('POST', '/v1/plugins', greeter('1.1.0'), 'application/zip');
  await api('POST', `/v1/plugins/${GREETER}/versions/1.1.0/submit`);

  const admin = await newPage(browser);
  await signIn(admin, server.base, keys.admin);
  await nav(admin, 'Review queue');
  await admin.getByRole('row', { name: /1\.1\.0/ }).getByRole('link').click();
  const reject = admin.getByRole('button', { name: 'Reject' });
  await reject.waitFor();
  assert.equal(await reject.isDisabled(), true, 'no reason, no rejection');
  await admin.getByLabel(/Reason for rejecting/).fill('Please drop the unused subprocess import.');
  await reject.click();
  await admin.locator('.fields .badge-rejected').waitFor();

  const dev = await newPage(browser);
  await signIn(dev, server.base, keys.developer);
  await dev.goto(`${server.base}/console/plugins/${GREETER}/versions/1.1.0`);
  await dev.getByText('Please drop the unused subprocess import.').first().waitFor();
  await dev.getByRole('tab', { name: 'History' }).click();
  const rejected = dev.getByRole('table', { name: 'Version history' }).getByRole('row', { name: /reject/ });
  assert.match(await rejected.textContent(), /pending → rejected.*Please drop the unused subprocess import\./);
  await shot(dev, 'rejected');
  assert.deepEqual(dev.errors, []);
  await dev.context().close();
  await admin.context().close();
});
