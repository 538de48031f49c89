// A session from end to end, as an app's key: start one from a template,
// drop a file into its workspace, run code that reads it and watch its
// output arrive while it still runs, download the file, take a snapshot,
// terminate the session after confirming.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { client, launch, nav, newPage, probes, shot, signIn, startServer } from './harness.mjs';

let server;
let browser;
let appKey;

before(async () => {
  server = await startServer();
  browser = await launch();
  const admin = client(server.base, server.admin);
  await admin('POST', '/v1/apps', { id: 'lab', name: 'The lab' });
  appKey = (await admin('POST', '/v1/keys', { name: 'lab-key', role: 'app', app: 'lab' })).secret;
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// Reads the dropped file, then prints slowly: the first line must be on the
// page while the execution is still running.
const CODE = `import time
rows = open('data/in.csv').read().splitlines()
print('read', len(rows), 'rows; first:', rows[0], flush=True)
for i in range(3):
    time.sleep(0.8)
    print('step', i + 1, flush=True)
open('data/out.txt', 'w').write('sum=' + str(sum(int(r.split(',')[1]) for r in rows[1:])))
print('done', flush=True)
`;

test('create a session, drop a file, run code that reads it live, download, snapshot, terminate', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, appKey);
  await nav(page, 'Sessions');
  await page.getByLabel('Template', { exact: true }).selectOption('python-basic');
  await page.getByRole('button', { name: 'Create session' }).click();
  await page.getByRole('heading', { name: /^Session ses_/ }).waitFor({ timeout: 60_000 });
  const id = /ses_[0-9a-f]+/.exec(page.url())[0];
  await page.locator('.fields').first().getByText('running', { exact: true }).waitFor();

  // A file picked through the input, a folder, and a file dropped into it.
  await page.locator('#session-file').setInputFiles({ name: 'readme.txt', mimeType: 'text/plain', buffer: Buffer.from('hello\n') });
  const files = page.getByRole('table', { name: 'Workspace files' });
  await files.getByRole('row', { name: /readme\.txt/ }).waitFor();
  const admin = client(server.base, server.admin);
  await page.getByLabel('New folder', { exact: true }).fill('data');
  await page.getByRole('button', { name: 'Make folder' }).click();
  await page.getByText('Drop a file here to upload it into data').waitFor();
  const csv = 'name,n\na,1\nb,2\nc,39\n';
  const drop = await page.evaluateHandle((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], 'in.csv', { type: 'text/csv' }));
    return dt;
  }, csv);
  await page.getByTestId('session-dropzone').dispatchEvent('drop', { dataTransfer: drop });
  await files.getByRole('row', { name: /in\.csv/ }).waitFor();
  assert.equal(await admin('GET', `/v1/sessions/${id}/files/data/in.csv`), csv);

  // Run code that reads it; the first line shows while it still runs.
  await page.getByLabel('Language', { exact: true }).selectOption('python');
  await page.getByLabel('Code', { exact: true }).fill(CODE);
  await page.getByRole('button', { name: 'Run', exact: true }).click();
  const live = page.getByTestId('live-output');
  await live.getByText('read 4 rows; first: name,n').waitFor({ timeout: 30_000 });
  const liveSection = page.getByRole('region', { name: 'Live output' });
  assert.equal(await liveSection.locator('.badge').textContent(), 'running', 'the output arrived while the execution ran');
  await shot(page, 'session-live');
  await page.getByRole('heading', { name: 'Result' }).waitFor({ timeout: 30_000 });
  assert.match(await live.textContent(), /step 3\s+done/);
  assert.match(await page.getByTestId('stdout').textContent(), /done/);

  // Download what it wrote (the list was reloaded after the run).
  await files.getByRole('row', { name: /out\.txt/ }).waitFor();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    files.getByRole('row', { name: /out\.txt/ }).getByRole('button', { name: 'Download' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'out.txt');
  assert.equal(readFileSync(await download.path(), 'utf8'), 'sum=42');

  // The execution is in the session's list and has its own page.
  await page.getByRole('table', { name: 'Session executions' }).getByText('success').waitFor();

  // A snapshot of the workspace.
  await page.getByRole('button', { name: 'Take a snapshot' }).click();
  await page.getByRole('table', { name: 'Snapshots' }).getByText('ready').waitFor({ timeout: 30_000 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'session');

  // The list shows it with its template, resources and idle time.
  await page.getByRole('link', { name: 'All sessions' }).click();
  const row = page.getByRole('table', { name: 'Sessions' }).getByRole('row', { name: new RegExp(id) });
  await row.waitFor();
  const text = await row.textContent();
  assert.match(text, /running/);
  assert.match(text, /python-basic/);
  assert.match(text, /MiB memory/);
  assert.match(text, /\d+ s|\d+ min/);
  assert.match(text, /lab/);
  await shot(page, 'sessions');

  // Terminate, after the confirmation.
  await row.getByRole('link', { name: id }).click();
  let asked = '';
  page.once('dialog', (d) => {
    asked = d.message();
    void d.accept();
  });
  await page.getByRole('button', { name: 'Terminate' }).click();
  await page.locator('.fields').first().getByText('terminated', { exact: true }).waitFor();
  assert.match(asked, /Terminate the session/);
  assert.equal((await admin('GET', `/v1/sessions/${id}`)).status, 'terminated');
  assert.equal(await page.getByRole('button', { name: 'Run', exact: true }).count(), 0, 'an ended session offers no run');

  assert.deepEqual(await probes(page), { pwned: undefined, violations: [] });
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a cancelled confirmation leaves the session running', async () => {
  const page = await newPage(browser);
  await signIn(page, server.base, appKey);
  const s = await client(server.base, appKey)('POST', '/v1/sessions', { template: 'shell' });
  await page.goto(`${server.base}/console/sessions/${s.id}`);
  await page.locator('.fields').first().getByText('running', { exact: true }).waitFor();
  page.once('dialog', (d) => void d.dismiss());
  await page.getByRole('button', { name: 'Terminate' }).click();
  await page.getByRole('button', { name: 'Terminate' }).waitFor();
  assert.equal((await client(server.base, appKey)('GET', `/v1/sessions/${s.id}`)).status, 'running');
  await client(server.base, appKey)('POST', `/v1/sessions/${s.id}/terminate`);
  await page.context().close();
});
