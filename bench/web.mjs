#!/usr/bin/env node
// The status page at 2,000 tasks, in Debian's headless Chromium (playwright-core from
// tests/browser, installed by scripts/setup.sh --tests), against `kiln serve` on its embedded
// PostgreSQL (synchronous_commit on):
//   - the grid endpoint for 100 runs × 2,000 tasks (response time on loopback, bytes);
//   - the graph layout of 2,000 tasks by Graphviz dot, first (made) and again (cached);
//   - a 2,000-task run's page: from navigation to the graph, the task table's rows in view and
//     the timeline drawn;
//   - the grid of 100 runs × 2,000 tasks: time to draw, then each scroll step (frame time);
//   - live updates: from a task's end (its event's instant) to its box changing colour;
//   - the page's files: bytes the browser loads.
// Run as: node bench/web.mjs [--kiln build/cli/kiln] [--tasks 2000] [--runs 100]
// One run of the pipeline is carried out for real; the other 99 are copies made in SQL (only
// their rows matter to the page).
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'tests/browser/package.json'));
const { chromium } = require('playwright-core');

const args = Object.fromEntries(process.argv.slice(2).reduce((out, a, i, all) =>
  (a.startsWith('--') ? [...out, [a.slice(2), all[i + 1]]] : out), []));
const kiln = path.resolve(args.kiln || path.join(root, 'build/cli/kiln'));
const TASKS = Number(args.tasks || 2000);
const RUNS = Number(args.runs || 100);
const TOKEN = 'kiln_bench_web_0123456789';
const LAYERS = 50;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(1)} ms`;
const sleep = (t) => new Promise((r) => setTimeout(r, t));

function pipeline() {
  const width = Math.ceil(TASKS / LAYERS);
  let text = '[pipeline]\nname = "wide"\ndescription = "a layered DAG for the page benchmark"\n';
  for (let n = 0; n < TASKS; n++) {
    const layer = Math.floor(n / width);
    const i = n % width;
    const needs = layer === 0 ? [] : [`t${layer - 1}_${i}`, `t${layer - 1}_${(i + 1) % width}`]
      .filter((t, k, all) => all.indexOf(t) === k && Number(t.split('_')[1]) + (layer - 1) * width < TASKS);
    text += `[tasks.t${layer}_${i}]\ncommand = "true"\n${needs.length ? `needs = ${JSON.stringify(needs)}\n` : ''}`;
  }
  return text;
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-web-'));
  fs.chmodSync(work, 0o755);
  fs.mkdirSync(path.join(work, 'pipelines'));
  fs.writeFileSync(path.join(work, 'pipelines/wide.toml'), pipeline());
  fs.writeFileSync(path.join(work, 'pipelines/live.toml'), `[pipeline]\nname = "live"\n[tasks.wait]\ncommand = "while [ ! -e ${work}/go ]; do sleep 0.01; done"\n`);
  fs.writeFileSync(path.join(work, 'kiln.toml'), `[[auth.tokens]]\nname = "bench"\nrole = "admin"\nsha256 = "${createHash('sha256').update(TOKEN).digest('hex')}"\n`);
  const env = { ...process.env };
  delete env.KILN_DATABASE_URL;
  const data = path.join(work, 'data');
  const daemon = spawn(kiln, ['serve', '--config', path.join(work, 'kiln.toml'), '--pipelines',
    path.join(work, 'pipelines'), '--data-dir', data, '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
  const lines = readline.createInterface({ input: daemon.stdout });
  const first = await new Promise((r) => lines.once('line', r));
  const base = `http://127.0.0.1:${/127\.0\.0\.1:(\d+)/.exec(first)[1]}`;
  const api = async (p, method = 'GET', body) => {
    const res = await fetch(base + p, { method, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body && JSON.stringify(body) });
    return { status: res.status, text: await res.text() };
  };
  const sql = (q) => execFileSync('psql', [`postgresql:///kiln?host=${data}/postgres&user=kiln`, '-v', 'ON_ERROR_STOP=1', '-Atqc', q]).toString().trim();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  try {
    console.log(`machine: ${os.cpus().length} cores, ${os.cpus()[0].model}; Chromium headless; ${TASKS} tasks in ${LAYERS} layers, ${RUNS} runs`);
    // One real run of every task.
    let t = Date.now();
    const run = JSON.parse((await api('/api/v1/pipelines/wide/runs', 'POST', {})).text);
    for (;;) {
      const state = JSON.parse((await api(`/api/v1/runs/${run.id}`)).text).state;
      if (state !== 'queued' && state !== 'running') break;
      await sleep(200);
    }
    console.log(`one run of ${TASKS} tasks carried out in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    sql(`DO $$ DECLARE cols text; tcols text; r bigint; BEGIN
      SELECT string_agg(quote_ident(column_name), ',') INTO cols FROM information_schema.columns WHERE table_name = 'runs' AND column_name <> 'id';
      SELECT string_agg(quote_ident(column_name), ',') INTO tcols FROM information_schema.columns WHERE table_name = 'task_instances' AND column_name <> 'run_id';
      FOR i IN 2..${RUNS} LOOP
        EXECUTE format('INSERT INTO runs (%s) SELECT %s FROM runs WHERE id = ${run.id} RETURNING id', cols, cols) INTO r;
        EXECUTE format('INSERT INTO task_instances (run_id, %s) SELECT $1, %s FROM task_instances WHERE run_id = ${run.id}', tcols, tcols) USING r;
      END LOOP; END $$`);
    sql(`UPDATE task_instances SET state = 'failed' WHERE run_id % 7 = 0 AND position % 97 = 0`);

    // The grid endpoint.
    const gridMs = [];
    let gridBytes = 0;
    for (let i = 0; i < 11; i++) {
      t = performance.now();
      const g = await api(`/api/v1/pipelines/wide/grid?limit=${RUNS}`);
      gridMs.push(performance.now() - t);
      gridBytes = g.text.length;
    }
    console.log(`grid endpoint, ${RUNS} runs × ${TASKS} tasks: median ${ms(median(gridMs))}, min ${ms(Math.min(...gridMs))} (${(gridBytes / 1024).toFixed(0)} KiB)`);

    // The layout: made once, then kept.
    t = performance.now();
    await api('/api/v1/pipelines/wide/graph');
    const cold = performance.now() - t;
    t = performance.now();
    const layout = await api('/api/v1/pipelines/wide/graph');
    console.log(`graph layout of ${TASKS} tasks: first ${ms(cold)} (dot), again ${ms(performance.now() - t)} (cached, ${(layout.text.length / 1024).toFixed(0)} KiB)`);

    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${base}/?token=${TOKEN}`);
    await page.locator('#who').getByText('Signed in').waitFor();
    const files = await page.evaluate(() => [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
      .filter((e) => new URL(e.name).pathname === '/' || new URL(e.name).pathname.startsWith('/ui/'))
      .map((e) => e.decodedBodySize));
    console.log(`page files loaded: ${files.length}, ${(files.reduce((a, b) => a + b, 0) / 1024).toFixed(1)} KiB`);

    // The run page of a 2,000-task run.
    const renders = [];
    for (let i = 0; i < 3; i++) {
      await page.goto(`${base}/#/runs`);
      await page.locator('table.list').waitFor();
      t = performance.now();
      await page.goto(`${base}/#/runs/${run.id}`);
      await page.waitForFunction((n) => document.querySelectorAll('svg.dag .node').length === n
        && document.querySelector('#tasks')?.getAttribute('aria-rowcount') === String(n + 1)
        && document.querySelector('#tasks tbody tr[data-task]') && document.querySelector('.gantt-row'), TASKS, { timeout: 60000 });
      renders.push(performance.now() - t);
    }
    console.log(`run page of ${TASKS} tasks drawn (graph, task table, timeline): median ${ms(median(renders))} of ${renders.map((x) => x.toFixed(0)).join(', ')} ms`);

    // The grid of 100 runs × 2,000 tasks, and scrolling it.
    console.error('… the pipeline page');
    t = performance.now();
    await page.goto(`${base}/#/pipelines/wide`);
    await page.locator('.grid-scroll').waitFor();
    await page.selectOption('#grid-limit', '100');
    await page.waitForFunction((n) => document.querySelectorAll('.grid-head .sq').length === n, RUNS, { timeout: 60000 });
    const gridPage = performance.now() - t;
    console.error('… scrolling its grid');
    const frames = await page.evaluate(async () => {
      const s = document.querySelector('.grid-scroll');
      const out = [];
      const long = [];
      const watch = new PerformanceObserver((list) => long.push(...list.getEntries().map((e) => e.duration)));
      watch.observe({ type: 'longtask' });
      for (let i = 0; i < 60; i++) {
        const start = performance.now();
        s.scrollTop += 300;
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        out.push(performance.now() - start);
      }
      watch.disconnect();
      const c = document.querySelector('.grid-canvas');
      return { out, long, cells: Math.ceil(c.clientHeight / 20) * Math.ceil((c.clientWidth - 200) / 20) };
    });
    console.log(`pipeline page with the ${RUNS}-run grid drawn in ${ms(gridPage)}; scrolling: median ${ms(median(frames.out))} per step of two frames, max ${ms(Math.max(...frames.out))} (about ${frames.cells} cells in view, painted per step); ${frames.long.length} long tasks (over 50 ms) while scrolling`);

    // Live updates: a task's end, from its event's instant to the page.
    const lags = [];
    for (let i = 0; i < 10; i++) {
      fs.rmSync(path.join(work, 'go'), { force: true });
      const live = JSON.parse((await api('/api/v1/pipelines/live/runs', 'POST', {})).text);
      await page.goto(`${base}/#/runs/${live.id}`);
      await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="wait"]')?.dataset.state === 'running', null, { timeout: 30000 });
      await page.evaluate(() => {
        const node = document.querySelector('svg.dag .node[data-task="wait"]');
        new MutationObserver(() => {
          if (node.dataset.state === 'success' && !window.kilnSeen) window.kilnSeen = Date.now();
        }).observe(node, { attributes: true });
        window.kilnSeen = 0;
      });
      fs.writeFileSync(path.join(work, 'go'), '');
      await page.waitForFunction(() => window.kilnSeen > 0, null, { timeout: 30000 });
      const seen = await page.evaluate(() => window.kilnSeen);
      const at = Number(sql(`SELECT (extract(epoch FROM at) * 1000)::bigint FROM events WHERE run_id = ${live.id} AND task_id = 'wait' AND to_state = 'success'`));
      lags.push(seen - at);
    }
    console.log(`live update, task end to its box on the page: median ${ms(median(lags))}, max ${ms(Math.max(...lags))} (${lags.length} ends)`);
  } finally {
    await browser.close();
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
