// What every browser test needs: a real `kiln serve` on its own database of the test PostgreSQL
// cluster, tokens of every role, Debian's Chromium driven by playwright-core, and a watch on the
// page for anything that must never happen (a script error, a dialog, a request elsewhere).
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

export const TOKENS = {
  viewer: 'kiln_browser_viewer_0123456789',
  operator: 'kiln_browser_operator_0123456789',
  admin: 'kiln_browser_admin_0123456789',
};

const kiln = process.env.KILN_BINARY;
const databaseUrl = process.env.KILN_TEST_DATABASE_URL;
const shots = process.env.KILN_SCREENSHOTS || path.join(os.tmpdir(), 'kiln-screenshots');
if (!kiln || !databaseUrl) throw new Error('set KILN_BINARY and KILN_TEST_DATABASE_URL (ctest does)');

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

// Every folder tempDir made, removed when the test file's process exits (KILN_KEEP_TEMP=1 keeps
// them to look into).
const made = [];
process.on('exit', () => {
  if (process.env.KILN_KEEP_TEMP) return;
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

// A folder every user may enter (tasks run as their run's own user when the tests run as root).
export function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-browser-'));
  fs.chmodSync(dir, 0o1777);
  made.push(dir);
  return dir;
}

// A fresh database on the test cluster.
function newDatabase() {
  const name = `kiln_browser_${randomBytes(6).toString('hex')}`;
  execFileSync('psql', [databaseUrl, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${name}`]);
  return databaseUrl.replace(/\/kiln_test\?/, `/${name}?`);
}

// A kiln process whose stdout is read a line at a time.
function launchKiln(args, env) {
  const child = spawn(kiln, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const queue = [];
  const waiting = [];
  lines.on('line', (line) => (waiting.length ? waiting.shift()(line) : queue.push(line)));
  lines.on('close', () => { while (waiting.length) waiting.shift()(null); });
  return {
    readLine: () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r))),
    // Sends `signal` and resolves with the exit code once the process has ended.
    signal(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
      const ended = new Promise((r) => child.once('exit', (code) => r(code)));
      child.kill(signal);
      return ended;
    },
  };
}

// Starts `kiln serve` on a free port with `pipelines` (a folder) and waits until it listens.
// tokens: false to let the daemon make its admin token and print the sign-in address.
export async function startDaemon({ pipelines, tokens = true, config = '' }) {
  const dir = tempDir();
  let toml = `[daemon]\non_stop = "cancel"\n${config}\n`;
  if (tokens) {
    for (const [role, token] of Object.entries(TOKENS)) {
      toml += `\n[[auth.tokens]]\nname = "${role}"\nrole = "${role}"\nsha256 = "${sha256(token)}"\n`;
    }
  }
  fs.writeFileSync(path.join(dir, 'kiln.toml'), toml);
  const env = { PATH: process.env.PATH, KILN_DATABASE_URL: newDatabase() };
  const launchOn = (listen) => launchKiln(['serve', '--config', path.join(dir, 'kiln.toml'),
    '--pipelines', pipelines, '--listen', listen, '--data-dir', path.join(dir, 'data')], env);
  let proc = launchOn('127.0.0.1:0');
  const first = await proc.readLine();
  const match = first && /http:\/\/127\.0\.0\.1:(\d+)/.exec(first);
  if (!match) throw new Error(`kiln serve did not start: ${first}`);
  const daemon = {
    dir,
    first,
    readLine: () => proc.readLine(),
    url: `http://127.0.0.1:${match[1]}`,
    dataDir: path.join(dir, 'data'),
    async stop() {
      return proc.signal('SIGTERM');
    },
    // SIGKILL, as a crash would: no clean-up of any kind.
    async kill() {
      return proc.signal('SIGKILL');
    },
    // Starts the daemon again on the same port, database and data folder.
    async restart() {
      proc = launchOn(`127.0.0.1:${match[1]}`);
      const line = await proc.readLine();
      if (!line || !line.includes(daemon.url)) throw new Error(`kiln serve did not start again: ${line}`);
    },
    // A call of the API as `role`.
    async api(apiPath, { role = 'admin', method = 'GET', body } = {}) {
      const res = await fetch(daemon.url + apiPath, {
        method,
        headers: { Authorization: `Bearer ${TOKENS[role]}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    // Resolves once the run has ended, with its final state.
    async waitForRun(id, timeoutMs = 120000) {
      return daemon.waitForRunState(id, (state) => !['queued', 'running'].includes(state), timeoutMs);
    },
    // Resolves with the run once done(its state) holds.
    async waitForRunState(id, done, timeoutMs = 120000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { body } = await daemon.api(`/api/v1/runs/${id}`);
        if (done(body.state)) return body;
        if (Date.now() > deadline) throw new Error(`run ${id} still ${body.state} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
  return daemon;
}

// Writes `files` ({name: text}) into a new pipelines folder.
export function pipelinesFolder(files) {
  const dir = path.join(tempDir(), 'pipelines');
  fs.mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.KILN_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A new page of a fresh browser context, watched: `problems` lists every script error, console
// error, dialog and request to another origin than the daemon's.
export async function watchedPage(browser, daemon) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  const origin = new URL(daemon.url).origin;
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('dialog', (d) => { problems.push(`dialog: ${d.type()} ${d.message()}`); d.dismiss(); });
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith('data:')) problems.push(`request elsewhere: ${url}`);
  });
  return { page, context, problems };
}

// A daemon on `pipelines` (a folder) and a watched page signed in as `role`, for fn({daemon, page,
// problems}); then the browser and the daemon stop, whatever happened.
export async function signedIn(pipelines, role, fn) {
  const daemon = await startDaemon({ pipelines });
  const browser = await launch();
  try {
    const { page, problems } = await watchedPage(browser, daemon);
    await signIn(page, daemon, role);
    await fn({ daemon, page, problems });
  } finally {
    await browser.close();
    await daemon.stop();
  }
}

// Signs the page in with a token through the sign-in address.
export async function signIn(page, daemon, role) {
  await page.goto(`${daemon.url}/?token=${TOKENS[role]}`);
  await page.locator('#who').getByText(`Signed in as ${role}`).waitFor();
}

export async function screenshot(page, name) {
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}
