// The browser suite's harness: a real `warden serve` (SQLite, a fresh data
// folder and jail state folder, a free loopback port, the first admin key
// from its banner), packages built in memory, Debian's Chromium driven by
// playwright-core, and the probes every test checks (script injection,
// CSP violations, page errors).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { zipSync, strToU8 } from 'fflate';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '../..');
const require = createRequire(import.meta.url);

/** Screenshots go beside the test results; with WARDEN_CONSOLE_SCREENSHOTS=docs
 *  the main pages' go to docs/console/, which docs/console.md shows. */
const SHOTS = join(ROOT, 'console/test-results/screenshots');
const DOCS = join(ROOT, 'docs/console');
const DOC_PAGES = new Set([
  'signin', 'review-queue', 'version-report', 'version-files', 'plugins', 'upload-problems', 'app',
  'try', 'try-live', 'executions', 'execution', 'operations', 'keys', 'audit',
  'sessions', 'session', 'session-live', 'templates', 'template-new', 'template-build', 'signing-keys',
]);

export function wardenBin() {
  if (process.env.WARDEN_BIN) return process.env.WARDEN_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
  return join(target, 'debug/warden');
}

/** Start `warden serve` on a fresh data folder; resolves once it listens.
 *  `extraEnv` adds settings (`WARDEN_LAYERS_FOLDER`, …). */
export async function startServer(extraEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'warden-console-'));
  mkdirSync(join(dir, 'jail'));
  const env = {
    ...process.env,
    WARDEN_DATA_DIR: join(dir, 'data'),
    WARDEN_STATE_DIR: join(dir, 'jail'),
    WARDEN_SHUTDOWN_GRACE_SECS: '2',
    WARDEN_LOG: 'warn',
    ...extraEnv,
  };
  const child = spawn(wardenBin(), ['serve', '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const started = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`warden serve did not start in 60 s:\n${out}\n${err}`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(out);
      const key = /(wk_[0-9a-f]+)/.exec(out);
      if (m && key) {
        clearTimeout(timer);
        ok({ base: m[1], admin: key[1] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`warden serve exited (${code}):\n${out}\n${err}`));
    });
  });
  return {
    ...started,
    dir,
    db: join(dir, 'data', 'warden.db'),
    log: () => err,
    async stop() {
      child.removeAllListeners('exit');
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A JSON API client for setting up state (the console itself is what is tested). */
export function client(base, key) {
  return async function api(method, path, body, contentType = 'application/json') {
    const headers = { authorization: `Bearer ${key}` };
    let payload;
    if (body !== undefined) {
      headers['content-type'] = contentType;
      payload = contentType === 'application/json' ? JSON.stringify(body) : body;
    }
    const r = await fetch(base + path, { method, headers, body: payload });
    const text = await r.text();
    let data = text;
    try {
      data = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return data;
  };
}

/** A package (zip) from a manifest and files, built in memory. */
export function pack(manifest, files) {
  const entries = { 'manifest.json': strToU8(JSON.stringify(manifest, null, 2)) };
  for (const [name, text] of Object.entries(files)) entries[name] = strToU8(text);
  return zipSync(entries);
}

export function pythonManifest(code, extra = {}) {
  return {
    code,
    name: 'A plugin',
    version: '1.0.0',
    type: 'sandbox',
    runtime: 'python3',
    entrypoint: 'main.py',
    handler: 'handler',
    description: 'A test plugin.',
    author: 'Tests <tests@example.org>',
    input_schema: { type: 'object' },
    output_schema: {},
    limits: { timeout_ms: 10000, memory_mb: 128 },
    permissions: { network: false },
    ...extra,
  };
}

/** A pure-Python wheel of one module (`NAME/__init__.py`), built in memory:
 *  what a template build installs from a folder (`layers.folder`). */
export function wheel(name, version, source) {
  const info = `${name}-${version}.dist-info`;
  const files = {
    [`${name}/__init__.py`]: source,
    [`${info}/METADATA`]: `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`,
    [`${info}/WHEEL`]: 'Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
  };
  files[`${info}/RECORD`] = `${Object.keys(files).map((f) => `${f},,`).join('\n')}\n${info}/RECORD,,\n`;
  return { name: `${name}-${version}-py3-none-any.whl`, bytes: zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [k, strToU8(v)]))) };
}

/** Run the warden binary (keygen, sign): its stdout, or an error with its stderr. */
export function warden(args, cwd) {
  const r = spawnSync(wardenBin(), args, { cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  if (r.status !== 0) throw new Error(`warden ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

/** Create keys for each role; returns their secrets. */
export async function roleKeys(api, app) {
  const developer = (await api('POST', '/v1/keys', { name: 'dev', role: 'developer' })).secret;
  const appKey = (await api('POST', '/v1/keys', { name: `${app}-key`, role: 'app', app })).secret;
  return { developer, app: appKey };
}

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium; playwright-core gives it a fresh profile directory per launch. */
export function launch() {
  return chromium.launch({ executablePath: process.env.WARDEN_CHROMIUM || '/usr/bin/chromium', args: FLAGS, headless: true });
}

/** A page with the probes: CSP violations and page errors are collected, and
 *  `window.__pwned` stays undefined unless injected script ran. */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`),
    );
  });
  return page;
}

export async function signIn(page, base, key) {
  await page.goto(`${base}/console/`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('whoami').waitFor();
}

/** The probes' verdict: no injected script ran, nothing was blocked by the CSP. */
export async function probes(page) {
  return page.evaluate(() => ({ pwned: window.__pwned, violations: window.__violations ?? [] }));
}

const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core's serious and critical violations on the current page. Injected
 *  through the DevTools protocol: the page's CSP forbids inline script. */
export async function axe(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export async function shot(page, name) {
  const dir = process.env.WARDEN_CONSOLE_SCREENSHOTS === 'docs' && DOC_PAGES.has(name) ? DOCS : SHOTS;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: false });
}

export function writeResult(name, text) {
  const dir = join(ROOT, 'console/test-results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), text);
}

/** Follow an entry of the main navigation. */
export async function nav(page, label) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: label, exact: true }).click();
}
