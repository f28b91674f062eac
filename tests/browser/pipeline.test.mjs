// The pipeline page: a backfill started from its form, watched to the end; and every string
// that comes from a pipeline file, a trigger or a task shown as text, never run as markup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { signedIn, pipelinesFolder, screenshot, tempDir } from './harness.mjs';

test('start a backfill from the form and watch its progress to the end', { timeout: 120000 }, async () => {
  await signedIn(pipelinesFolder({ 'nightly.toml': `[pipeline]
name = "nightly"
schedule = "0 2 * * *"
catchup = "none"
[tasks.load]
command = "echo {{ run.logical_date }}"
[tasks.report]
needs = ["load"]
command = "true"
` }), 'operator', async ({ daemon, page, problems }) => {
    await page.goto(`${daemon.url}/#/pipelines/nightly`);
    await page.getByText('Schedule: at 02:00 every day').waitFor();
    await page.click('#open-backfill');
    await page.fill('#backfill-from', '2026-11-01T00:00');
    await page.fill('#backfill-to', '2026-11-03T23:00');
    await page.fill('#backfill-max', '2');
    await page.click('#backfill-submit');
    const row = page.locator('#backfills tbody tr').first();
    await row.waitFor();
    await row.locator('.backfill-progress').getByText('3 of 3 runs ended (100%)').waitFor({ timeout: 60000 });
    await row.locator('.st-success').waitFor();
    const { backfills } = (await daemon.api('/api/v1/pipelines/nightly/backfills')).body;
    assert.equal(backfills.length, 1);
    assert.equal(backfills[0].total, 3);
    assert.equal(backfills[0].created_by, 'operator');
    assert.equal(backfills[0].from, '2026-11-01T00:00:00.000Z');
    // The grid shows the three runs, every cell green.
    await page.waitForFunction(() => document.querySelectorAll('.grid-head .sq.st-success').length === 3);
    await screenshot(page, 'backfill');
    // The grid works with the keyboard: one cell takes the focus, arrows move it, Enter opens it.
    // Walked cell by cell, its labels say every task of every run succeeded.
    const runs = (await daemon.api('/api/v1/runs?pipeline=nightly')).body.runs;  // newest first
    await page.locator('.grid-focus').focus();
    const label = () => page.evaluate(() => document.activeElement.getAttribute('aria-label'));
    const seen = [];
    for (const key of ['Home', 'ArrowRight', 'ArrowRight', 'ArrowDown', 'ArrowLeft', 'ArrowLeft']) {
      await page.keyboard.press(key);
      seen.push(await label());
    }
    const [r3, r2, r1] = runs.map((r) => r.id);
    assert.deepEqual(seen, [`load, run ${r1}: success`, `load, run ${r2}: success`, `load, run ${r3}: success`,
      `report, run ${r3}: success`, `report, run ${r2}: success`, `report, run ${r1}: success`]);
    await page.keyboard.press('ArrowRight');  // report, in the run before the newest
    assert.equal(await label(), `report, run ${runs[1].id}: success`);
    // A click on a cell opens it too (the newest run's load, top right).
    const box = await page.locator('.grid-canvas').boundingBox();
    await page.mouse.move(box.x + 200 + 2 * 20 + 10, box.y + 10);
    assert.equal(await page.locator('.grid-canvas').getAttribute('title'), `load, run ${r3}: success`);
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`#/runs/${runs[1].id}/report$`));
    await page.locator('#task-h').getByText('Task report').waitFor();
    // A click on a cell opens that task in that run.
    await page.goBack();
    await page.locator('.grid-focus[href]').waitFor();
    await page.mouse.click(box.x + 200 + 2 * 20 + 10, box.y + 10);
    await page.waitForURL(new RegExp(`#/runs/${r3}/load$`));
    // More runs than a page holds: older ones are a click away. The page follows the pipeline's
    // events, so the grid fills up by itself as the new runs end.
    await page.goBack();
    await page.locator('.grid-focus[href]').waitFor();
    const more = [];
    for (let i = 0; i < 23; i++) more.push((await daemon.api('/api/v1/pipelines/nightly/runs', { method: 'POST', body: {} })).body.id);
    // Until the newest run is on the page: a run can end before the next one is created, and
    // then the page holds 25 ended runs with the oldest still among them for a moment.
    await page.waitForFunction((newest) => {
      const all = document.querySelectorAll('.grid-head .sq.st-success');
      return all.length === 25 && all[24].getAttribute('aria-label') === newest;
    }, `run ${more[22]}: success`, { timeout: 90000 });
    const heads = () => page.locator('.grid-head .sq').evaluateAll((all) => all.map((a) => a.getAttribute('aria-label')));
    assert.equal((await heads())[0], `run ${r2}: success`);  // the oldest of this page
    assert.equal(await page.locator('#grid-newer').isVisible(), false);
    await page.click('#grid-older');
    await page.waitForFunction(() => document.querySelectorAll('.grid-head .sq').length === 1);
    assert.deepEqual(await heads(), [`run ${r1}: success`]);
    assert.equal(await page.locator('#grid-older').isVisible(), false);
    await page.click('#grid-newer');
    await page.waitForFunction(() => document.querySelectorAll('.grid-head .sq').length === 25);
    assert.equal((await heads())[24], `run ${more[22]}: success`);
    assert.deepEqual(problems, []);
  });
});

test('a run that ends while the page reads its grid is shown ended', { timeout: 120000 }, async () => {
  const go = path.join(tempDir(), 'go');
  await signedIn(pipelinesFolder({ 'quick.toml': `[pipeline]
name = "quick"
[tasks.wait]
command = "while [ ! -e ${go} ]; do sleep 0.05; done"
` }), 'viewer', async ({ daemon, page, problems }) => {
    const id = (await daemon.api('/api/v1/pipelines/quick/runs', { method: 'POST', body: {} })).body.id;
    // Its task has started: the 201 comes before the run's start is committed.
    await daemon.waitForRunState(id, (state) => state !== 'queued');
    // The page's first read of the grid is answered only after the run ended: what it read
    // has the task running, and everything after comes as events.
    let held = false;
    await page.route('**/api/v1/pipelines/quick/grid*', async (route) => {
      if (held) return route.continue();
      held = true;
      const response = await route.fetch();
      assert.equal((await response.json()).runs[0].state, 'running');
      fs.writeFileSync(go, '');
      assert.equal((await daemon.waitForRun(id)).state, 'success');
      await route.fulfill({ response });
    });
    await page.goto(`${daemon.url}/#/pipelines/quick`);
    await page.waitForFunction(() => document.querySelectorAll('.grid-head .sq.st-success').length === 1, null, { timeout: 30000 });
    assert.deepEqual(await page.locator('.grid-head .sq').evaluateAll((all) => all.map((a) => a.getAttribute('aria-label'))),
      [`run ${id}: success`]);
    assert.deepEqual(problems, []);
  });
});

test('the grid follows a task live, and a new run keeps the keyboard on its cell', { timeout: 120000 }, async () => {
  const go = path.join(tempDir(), 'go');
  await signedIn(pipelinesFolder({ 'live.toml': `[pipeline]
name = "live"
[tasks.wait]
command = "while [ ! -e ${go} ]; do sleep 0.05; done"
` }), 'viewer', async ({ daemon, page, problems }) => {
    const trigger = async () => (await daemon.api('/api/v1/pipelines/live/runs', { method: 'POST', body: {} })).body.id;
    const first = await trigger();
    fs.writeFileSync(go, '');
    await daemon.waitForRun(first);
    fs.rmSync(go);
    await page.goto(`${daemon.url}/#/pipelines/live`);
    await page.locator('.grid-focus[href]').focus();
    const focused = (label) => page.waitForFunction((l) => document.activeElement.getAttribute('aria-label') === l, label);
    await focused(`wait, run ${first}: success`);
    // A new run: the grid is read again, and the focus stays on the cell it was on.
    const second = await trigger();
    await page.waitForFunction(() => document.querySelectorAll('.grid-head .sq').length === 2);
    await focused(`wait, run ${first}: success`);
    // Its task's states arrive from the event stream, cell by cell.
    await page.keyboard.press('ArrowRight');
    await focused(`wait, run ${second}: running`);
    fs.writeFileSync(go, '');
    await focused(`wait, run ${second}: success`);
    assert.deepEqual(problems, []);
  });
});

const XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>';

test('names, descriptions, params, notes and log lines holding markup are shown as text', { timeout: 120000 }, async () => {
  await signedIn(pipelinesFolder({ 'evil.toml': `[pipeline]
name = "evil"
description = '${XSS}<a href="javascript:alert(3)">x</a>'
tags = ['<b onmouseover=alert(4)>tag</b>']
[params]
payload = '<svg onload=alert(5)><img src="//evil.example/p.png">'
[tasks.say]
command = '''printf '%s\\n' '${XSS}' '<img src=//evil.example/log.png>' '''
`, 'broken.toml': `[pipeline]
name = "broken"
[tasks."<img src=x onerror=alert(6)>"]
command = "true"
` }), 'admin', async ({ daemon, page, problems }) => {
    await page.locator('tr[data-pipeline="evil"]').waitFor();
    await page.getByText(`${XSS}<a href="javascript:alert(3)">x</a>`).waitFor();
    await page.getByText('<b onmouseover=alert(4)>tag</b>').waitFor();
    await page.locator('.broken pre').getByText('<img src=x onerror=alert(6)>').waitFor();
    await screenshot(page, 'markup-pipelines');
    // Trigger with a note and a param of markup, from the form.
    await page.goto(`${daemon.url}/#/pipelines/evil/trigger`);
    await page.locator('#trigger-form').waitFor();
    assert.equal(await page.inputValue('#param-payload'), '<svg onload=alert(5)><img src="//evil.example/p.png">');
    await page.fill('#param-payload', `${XSS}!`);
    await page.fill('#trigger-note', `${XSS}?`);
    await page.click('#trigger-submit');
    await page.waitForURL(/#\/runs\/\d+$/);
    const id = Number(/#\/runs\/(\d+)/.exec(page.url())[1]);
    await daemon.waitForRun(id);
    await page.goto(`${daemon.url}/#/runs/${id}/say`);
    await page.locator('.log-status').getByText('whole log').waitFor();
    assert.equal(await page.locator('pre.log').textContent(), `${XSS}\n<img src=//evil.example/log.png>\n`);
    await page.locator('dd.note').getByText(`${XSS}?`).waitFor();
    await page.locator('table.params code').getByText(JSON.stringify(`${XSS}!`)).waitFor();
    await page.goto(`${daemon.url}/#/pipelines/evil`);
    await page.locator('.grid-scroll').waitFor();
    await screenshot(page, 'markup-run');
    // Nothing was parsed as markup: no injected element, no dialog, no request elsewhere.
    for (const selector of ['img[src="x"]', 'main script', 'main svg[onload]', 'a[href^="javascript:"]', '[onmouseover]', '[onerror]']) {
      assert.equal(await page.locator(selector).count(), 0, selector);
    }
    assert.deepEqual(problems, []);
  });
});

test('the metrics tasks recorded are charted run by run, each point a link to its run', { timeout: 120000 }, async () => {
  await signedIn(pipelinesFolder({ 'scored.toml': `[pipeline]
name = "scored"
[params]
score = 0.5
[tasks.evaluate]
command = '''printf '{"accuracy": %s, "rows": 100}' "$KILN_PARAM_SCORE" > "$KILN_RUN_DIR/m.json"'''
metrics = "{{ run.dir }}/m.json"
[tasks.gate]
kind = "gate"
needs = ["evaluate"]
metrics = "{{ run.dir }}/m.json"
model = "scored"
require = ["accuracy >= 0.85"]
` }), 'viewer', async ({ daemon, page, problems }) => {
    await page.goto(`${daemon.url}/#/pipelines/scored`);
    await page.getByText('No metrics recorded yet').waitFor();
    const runs = [];
    for (const score of ['0.81', '0.87', '0.84']) {
      const created = await daemon.api('/api/v1/pipelines/scored/runs', { method: 'POST', body: { params: { score } } });
      runs.push(created.body.id);
      await daemon.waitForRun(created.body.id);
    }
    // The page reads them again as the runs end.
    const accuracy = page.locator('figure.metric[data-series="evaluate · accuracy"]');
    await accuracy.locator('a').nth(2).waitFor();
    assert.deepEqual(await accuracy.locator('a').evaluateAll((links) => links.map((a) => a.getAttribute('aria-label'))),
      runs.map((id, i) => `run ${id}: evaluate · accuracy ${['0.81', '0.87', '0.84'][i]}`));
    assert.equal(await accuracy.locator('figcaption').textContent(),
      `evaluate · accuracy latest 0.84 (run ${runs[2]}); range 0.81 – 0.87 over 3 runs`);
    assert.deepEqual(await page.locator('figure.metric').evaluateAll((f) => f.map((e) => e.dataset.series)),
      ['evaluate · accuracy', 'evaluate · rows', 'gate · accuracy', 'gate · rows']);
    // The gate's numbers are charted whether it passed or not; where it did not, hollow.
    const gate = page.locator('figure.metric[data-series="gate · accuracy"]');
    await gate.locator('a').nth(2).waitFor();
    assert.deepEqual(await gate.locator('a').evaluateAll((links) => links.map((a) => a.getAttribute('aria-label'))),
      [`run ${runs[0]}: gate · accuracy 0.81 (did not pass)`, `run ${runs[1]}: gate · accuracy 0.87`,
        `run ${runs[2]}: gate · accuracy 0.84 (did not pass)`]);
    assert.equal(await gate.locator('circle.dot.skipped').count(), 2);
    await screenshot(page, 'pipeline-metrics');
    await accuracy.locator('a').nth(1).click();
    await page.waitForURL(`**/#/runs/${runs[1]}`);
    assert.deepEqual(problems, []);
  });
});

test('a pipeline whose file was deleted still shows its runs, backfills and graph', { timeout: 120000 }, async () => {
  const folder = pipelinesFolder({ 'old.toml': `[pipeline]
name = "old"
[tasks.extract]
command = "true"
[tasks.load]
needs = ["extract"]
command = "true"
` });
  await signedIn(folder, 'operator', async ({ daemon, page, problems }) => {
    const created = await daemon.api('/api/v1/pipelines/old/runs', { method: 'POST', body: {} });
    assert.equal(await daemon.waitForRun(created.body.id).then((r) => r.state), 'success');
    fs.unlinkSync(path.join(folder, 'old.toml'));
    for (let i = 0; (await daemon.api('/api/v1/pipelines/old')).status !== 404; i++) {
      assert.ok(i < 200, 'the deleted file is still loaded after 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.goto(`${daemon.url}/#/pipelines/old`);
    await page.locator('#pipeline-gone').getByText('No pipeline file declares it now').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('.grid-head .sq.st-success').length === 1);
    await page.locator('svg.dag .node[data-task="load"]').waitFor();
    assert.deepEqual(await page.$$eval('svg.dag .node', (n) => n.map((e) => e.dataset.task)), ['extract', 'load']);
    await page.getByText('No backfills.').waitFor();
    assert.equal(await page.locator('#open-trigger').count(), 0);
    await screenshot(page, 'pipeline-gone');
    // The only problems are the browser's notes of the answers that said it is gone.
    assert.deepEqual(problems.filter((p) => !p.includes('status of 404')), []);
    // Its last run deleted by retention between the page's reads (the graph's read of the newest
    // run finds none): the graph box says so instead of failing.
    await page.route('**/api/v1/pipelines/old/grid?limit=1', (route) => route.fulfill({
      status: 200, contentType: 'application/json', body: '{"runs": [], "next_cursor": null}' }));
    await page.reload();
    await page.getByText('No run of it is left to draw the graph from.').waitFor();
    assert.equal(await page.locator('svg.dag').count(), 0);
    await page.unroute('**/api/v1/pipelines/old/grid?limit=1');
    // A name that never had runs is still not found.
    await page.goto(`${daemon.url}/#/pipelines/never`);
    await page.getByText("no pipeline named 'never'").waitFor();
  });
});
