// Performance: the first load is small (its compressed size is measured in
// the browser and reported), and the executions page stays responsive with
// 100,000 executions in the store: it asks for one page, never the lot.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { client, launch, nav, newPage, signIn, startServer, writeResult } from './harness.mjs';
import { QUICK, quick } from './fixtures.mjs';

const SEEDED = 100_000;
let server;
let browser;
/** The id of the one execution made through the API (the newest). */
let real;

before(async () => {
  server = await startServer();
  browser = await launch();
  const admin = client(server.base, server.admin);
  await admin('POST', '/v1/plugins', quick(), 'application/zip');
  await admin('POST', `/v1/plugins/${QUICK}/versions/1.0.0/submit`);
  await admin('POST', `/v1/plugins/${QUICK}/versions/1.0.0/approve`);
  await admin('POST', '/v1/apps', { id: 'shop', name: 'The shop' });
  await admin('POST', '/v1/apps/shop/installations', { plugin: QUICK });
  real = (await admin('POST', `/v1/apps/shop/plugins/${QUICK}/execute`, { n: 0 })).id;
  // 100,000 copies of a real record, older than it, straight into the store
  // (one SQL statement; the server keeps running: SQLite's WAL lets it).
  const started = Date.now();
  execFileSync('sqlite3', [
    '-cmd',
    '.timeout 10000',
    server.db,
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${SEEDED})
     INSERT INTO executions (id, app, plugin, version, status, mode, node, error_kind, result, created_at, started_at, finished_at, duration_ms)
     SELECT printf('exe_%024x', i), app, plugin, version, status, mode, node, error_kind, result,
            created_at - (${SEEDED} + 1 - i) * 1000, started_at - (${SEEDED} + 1 - i) * 1000, finished_at - (${SEEDED} + 1 - i) * 1000, duration_ms
     FROM executions, n WHERE executions.id = '${real}';`,
  ]);
  const count = execFileSync('sqlite3', ['-cmd', '.timeout 10000', server.db, 'SELECT count(*) FROM executions;']).toString().trim();
  assert.equal(Number(count), SEEDED + 1);
  writeResult('seeded.txt', `seeded ${SEEDED} executions in ${Date.now() - started} ms\n`);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the first load is small: its compressed size, measured in the browser', async (t) => {
  const page = await newPage(browser);
  const sizes = [];
  page.on('requestfinished', async (req) => {
    const s = await req.sizes();
    sizes.push({ url: new URL(req.url()).pathname, bytes: s.responseBodySize + s.responseHeadersSize, body: s.responseBodySize });
  });
  const response = await page.goto(`${server.base}/console/`, { waitUntil: 'networkidle' });
  await page.getByLabel('API key').waitFor();
  // The page came with the strict policy, compressed.
  const headers = response.headers();
  assert.match(headers['content-security-policy'], /default-src 'none'; script-src 'self'; style-src 'self';.*connect-src 'self'/);
  assert.doesNotMatch(headers['content-security-policy'], /unsafe/);
  assert.equal(headers['content-encoding'], 'gzip');
  const body = sizes.reduce((a, s) => a + s.body, 0);
  const total = sizes.reduce((a, s) => a + s.bytes, 0);
  const report = [
    `First load of /console/ (gzip, as transferred): ${(body / 1024).toFixed(1)} KiB of bodies, ${(total / 1024).toFixed(1)} KiB with headers`,
    ...sizes.map((s) => `  ${s.url}: ${(s.body / 1024).toFixed(1)} KiB`),
  ].join('\n');
  t.diagnostic(report);
  writeResult('first-load.txt', `${report}\n`);
  assert.ok(body < 150 * 1024, `the first load stays under 150 KiB compressed: ${body}`);
  // The form library loads only when a plugin is tried.
  assert.ok(!sizes.some((s) => s.url.includes('TryPlugin')), 'the generated-form chunk is not part of the first load');
  await page.context().close();
});

test(`the executions page with ${SEEDED.toLocaleString('en')} executions asks for one page at a time`, async (t) => {
  const page = await newPage(browser);
  await signIn(page, server.base, server.admin);
  const lists = [];
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.pathname === '/v1/executions') lists.push(Object.fromEntries(u.searchParams));
  });
  const started = Date.now();
  await nav(page, 'Executions');
  const rows = page.getByRole('table', { name: 'Executions' }).locator('tbody tr');
  await rows.nth(49).waitFor();
  const firstPageMs = Date.now() - started;
  assert.equal(await rows.count(), 50);
  assert.equal(lists.length, 1, `one list request: ${JSON.stringify(lists)}`);
  assert.equal(lists[0].limit, '50');
  assert.equal(lists[0].cursor, undefined);

  await page.getByRole('button', { name: 'Next page' }).click();
  await page.getByText('Page 2').waitFor();
  // The label changes before the rows do: wait until the first row is no
  // longer page 1's (the one real execution, the newest). A second page
  // that never comes fails here, by timeout.
  await rows.first().filter({ hasNotText: real }).waitFor();
  await rows.nth(49).waitFor();
  assert.equal(lists.length, 2, 'the next page is one more request');
  assert.ok(lists[1].cursor, 'the next page is asked for by cursor');
  const secondFirst = await rows.first().textContent();
  assert.match(secondFirst, /exe_0000000000000000000/, 'the second page holds seeded (older) executions');

  // A filter is one request too, and still answers at once.
  await page.getByLabel('Status').selectOption('success');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Page 1').waitFor();
  await rows.nth(49).waitFor();
  assert.equal(lists.length, 3);
  assert.equal(lists[2].status, 'success');
  t.diagnostic(`first page of executions shown in ${firstPageMs} ms`);
  writeResult('executions-first-page.txt', `${firstPageMs} ms with ${SEEDED} executions in the store\n`);
  assert.ok(firstPageMs < 5000, `the first page shows within 5 s: ${firstPageMs} ms`);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
