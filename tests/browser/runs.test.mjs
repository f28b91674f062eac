// Operating runs from the page: trigger with a typed param and watch the graph go green live,
// follow a running task's log, cancel a run, retry a failed run from its failed task.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { signedIn, pipelinesFolder, screenshot, tempDir, TOKENS } from './harness.mjs';

const examples = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples');

// The states the page shows on the graph, by task.
async function graphStates(page) {
  return page.$$eval('svg.dag .node', (nodes) => Object.fromEntries(nodes.map((n) => [n.dataset.task, n.dataset.state])));
}

test('trigger the ML example with a typed param and watch its graph go green live', { timeout: 240000 }, async () => {
  // A copy of the example, so the page (and its screenshots) show a neutral path.
  const copy = path.join(tempDir(), 'ml-lifecycle');
  fs.cpSync(path.join(examples, 'ml-lifecycle'), copy, { recursive: true });
  await signedIn(copy, 'operator', async ({ daemon, page, problems }) => {
    await page.locator('tr[data-pipeline="ml-lifecycle"] a.button').click();
    await page.locator('#trigger-form').waitFor();
    await page.fill('#param-c', '0.5');
    await page.fill('#trigger-note', 'from the page');
    await page.click('#trigger-submit');
    await page.waitForURL(/#\/runs\/\d+$/);
    const id = Number(/#\/runs\/(\d+)/.exec(page.url())[1]);
    await page.locator('svg.dag').waitFor();
    // The page is not reloaded: what changes comes from the event stream.
    await page.evaluate(() => { window.kilnMarker = 'same page'; });
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="gate"]')?.dataset.state === 'success',
      null, { timeout: 180000 });
    assert.equal(await page.evaluate(() => window.kilnMarker), 'same page');
    assert.deepEqual(await graphStates(page), {
      prepare: 'success', check_data: 'success', train: 'success', evaluate: 'success',
      gate: 'success', alert: 'skipped',
    });
    await page.locator('#run-state .st-success').waitFor();
    const run = (await daemon.api(`/api/v1/runs/${id}`)).body;
    assert.equal(run.params.c, 0.5);
    assert.equal(run.note, 'from the page');
    assert.equal(run.created_by, 'operator');
    await page.locator('#events').getByText('run: running → success').waitFor();
    // The task table and the run's times follow too.
    await page.locator('#tasks tr[data-task="gate"] .st-success').waitFor();
    await page.locator('dl.facts dd').getByText(/UTC \(\d/).waitFor();
    // The timeline marks the chain that decided the run's length.
    await page.locator('.gantt-row.critical[data-task="train"]').waitFor();
    assert.equal(await page.locator('.gantt-row.critical[data-task="alert"]').count(), 0);
    await screenshot(page, 'run');
    await page.goto(`${daemon.url}/#/pipelines/ml-lifecycle`);
    await page.locator('.grid-focus[href]').waitFor();
    await screenshot(page, 'pipeline');
    await page.goto(`${daemon.url}/#/`);
    await page.locator('tr[data-pipeline="ml-lifecycle"] .squares .st-success').waitFor();
    await screenshot(page, 'pipelines');
    assert.deepEqual(problems, []);
  });
});

test('a running task\'s log follows as it writes, and says when it is whole', { timeout: 120000 }, async () => {
  const dir = tempDir();
  const go = path.join(dir, 'go');
  await signedIn(pipelinesFolder({ 'talk.toml': `[pipeline]
name = "talk"
[tasks.talk]
command = "echo 'first line'; while [ ! -e ${go} ]; do sleep 0.05; done; echo 'second line'"
` }), 'viewer', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/talk/runs', { method: 'POST', body: {} })).body;
    await page.goto(`${daemon.url}/#/runs/${id}/talk`);
    await page.locator('pre.log').getByText('first line').waitFor();
    await page.locator('.log-status').getByText('Following the log').waitFor();
    assert.equal(await page.locator('pre.log').textContent(), 'first line\n');
    await screenshot(page, 'task-log');
    fs.writeFileSync(go, '');
    await page.locator('pre.log').getByText('second line').waitFor();
    assert.equal(await page.locator('pre.log').textContent(), 'first line\nsecond line\n');
    await page.locator('.log-status').getByText('The attempt has ended; this is its whole log.').waitFor();
    assert.deepEqual(problems, []);
  });
});

test('a read of the run made before the stream\'s newest events does not undo them on the page', { timeout: 120000 }, async () => {
  // Two tasks that end when the test says so. A read of the run is held back while it is stale:
  // it starts while `a` runs and reaches the page only after the stream has shown `a` ended.
  const dir = tempDir();
  const waitFor = (name) => `while [ ! -e ${dir}/${name} ]; do sleep 0.02; done`;
  await signedIn(pipelinesFolder({ 'held.toml': `[pipeline]
name = "held"
[tasks.a]
command = "${waitFor('go-a')}"
[tasks.c]
command = "${waitFor('go-c')}"
` }), 'operator', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/held/runs', { method: 'POST', body: {} })).body;
    // Every read of the run passes through here. Until `armed`, each is answered at once; once
    // armed, the first is read then (while `a` runs) and held, and the rest pass.
    let armed = false;
    let held = null;
    let heldSeen;
    const heldReady = new Promise((r) => { heldSeen = r; });
    let passing = 0;
    let passed = () => {};
    await page.route(`${daemon.url}/api/v1/runs/${id}`, async (route) => {
      if (armed && !held) {
        held = { route };  // before the read: a read that comes meanwhile passes
        held.response = await route.fetch();
        heldSeen();
        return;
      }
      if (armed) return route.continue();
      passing += 1;
      try {
        await route.fulfill({ response: await route.fetch() });
      } finally {
        passing -= 1;
        if (passing === 0) passed();
      }
    });
    await page.goto(`${daemon.url}/#/runs/${id}`);
    const stateOf = (task) => page.evaluate((t) => document.querySelector(`svg.dag .node[data-task="${t}"]`)?.dataset.state, task);
    for (const task of ['a', 'c']) {
      await page.waitForFunction((t) => document.querySelector(`svg.dag .node[data-task="${t}"]`)?.dataset.state === 'running', task);
    }
    // Every state `a` shows from here on, in order.
    await page.evaluate(() => {
      const node = document.querySelector('svg.dag .node[data-task="a"]');
      window.aStates = [node.dataset.state];
      new MutationObserver(() => window.aStates.push(node.dataset.state))
        .observe(node, { attributes: true, attributeFilter: ['data-state'] });
    });
    // A read let through before arming but still being answered could read `c` ended: its answer
    // would then hold the event the stream brings next, and no read would follow that event.
    armed = true;
    if (passing > 0) await new Promise((r) => { passed = r; });
    fs.writeFileSync(path.join(dir, 'go-c'), '');  // c ends: the page reads the run again
    await heldReady;
    assert.equal((await held.response.json()).tasks.find((t) => t.id === 'a').state, 'running');
    fs.writeFileSync(path.join(dir, 'go-a'), '');
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="a"]')?.dataset.state === 'success');
    await page.locator('#run-state .st-success').waitFor();
    // The stale read arrives now. Seen as stale, it is followed by another read (none without
    // that check: the wait ends after 10 s, and `a` has shown running again by then).
    const heldRequest = held.route.request();
    const later = page.waitForEvent('requestfinished', {
      predicate: (r) => r !== heldRequest && r.url() === `${daemon.url}/api/v1/runs/${id}`,
      timeout: 10000,
    }).catch(() => null);
    await held.route.fulfill({ response: held.response });
    await later;
    assert.deepEqual(await page.evaluate(() => window.aStates), ['running', 'success']);
    assert.equal(await stateOf('a'), 'success');
    assert.equal(await stateOf('c'), 'success');
    assert.equal(await page.locator('#run-state .st-success').count(), 1);
    assert.deepEqual(problems, []);
  });
});

test('cancel a long-running run from its page and see it end cancelled', { timeout: 120000 }, async () => {
  await signedIn(pipelinesFolder({ 'slow.toml': `[pipeline]
name = "slow"
[tasks.wait]
command = "sleep 300"
[tasks.after]
needs = ["wait"]
command = "true"
` }), 'operator', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/slow/runs', { method: 'POST', body: {} })).body;
    await page.goto(`${daemon.url}/#/runs/${id}`);
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="wait"]')?.dataset.state === 'running');
    await page.click('#cancel-run');
    await page.locator('#run-state .st-cancelled').waitFor();
    // The running task ends once its process is stopped, which may come after the run's state
    // and the pending task's (its end is committed when the kill is seen).
    for (const task of ['after', 'wait']) {
      await page.waitForFunction((t) => document.querySelector(`svg.dag .node[data-task="${t}"]`)?.dataset.state === 'cancelled', task);
    }
    assert.deepEqual(await graphStates(page), { wait: 'cancelled', after: 'cancelled' });
    await page.locator('#events').getByText('cancel requested by operator').waitFor();
    assert.equal(await page.locator('#cancel-run').count(), 0);
    assert.equal((await daemon.api(`/api/v1/runs/${id}`)).body.state, 'cancelled');
    assert.deepEqual(problems, []);
  });
});

test('open a failed run and retry it from the failed task', { timeout: 120000 }, async () => {
  const dir = tempDir();
  const fixed = path.join(dir, 'fixed');
  await signedIn(pipelinesFolder({ 'flaky.toml': `[pipeline]
name = "flaky"
[tasks.first]
command = "true"
[tasks.flaky]
needs = ["first"]
command = "test -e ${fixed}"
[tasks.after]
needs = ["flaky"]
command = "true"
` }), 'operator', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/flaky/runs', { method: 'POST', body: {} })).body;
    assert.equal((await daemon.waitForRun(id)).state, 'failed');
    await page.goto(`${daemon.url}/#/runs/${id}/flaky`);
    await page.locator('#retry-from').waitFor();
    await page.locator('svg.dag .node[data-task="after"]').waitFor();
    assert.deepEqual(await graphStates(page), { first: 'success', flaky: 'failed', after: 'upstream_failed' });
    fs.writeFileSync(fixed, '');
    await page.click('#retry-from');
    await page.locator('#run-state .st-success').waitFor({ timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="after"]')?.dataset.state === 'success');
    const run = (await daemon.api(`/api/v1/runs/${id}`)).body;
    assert.deepEqual(run.tasks.map((t) => `${t.id}:${t.state}:${t.attempt}`), ['first:success:1', 'flaky:success:2', 'after:success:1']);
    await page.locator('#events').getByText('retried by operator').waitFor();
    // Marking is an admin's: an operator has no such button.
    assert.equal(await page.locator('.mark-success').count(), 0);
    assert.deepEqual(problems, []);
  });
});

test('a mapped task\'s instances are rows of the run; one that failed is retried from its page', { timeout: 120000 }, async () => {
  const dir = tempDir();
  const fixed = path.join(dir, 'fixed');
  await signedIn(pipelinesFolder({ 'sweep.toml': `[pipeline]
name = "sweep"
[tasks.fit]
for_each = [{ c = 0.1 }, { c = 2 }, { c = 3 }]
command = "test {{ item.c }} != 2 || test -e ${fixed}"
[tasks.pick]
needs = ["fit"]
command = "true"
` }), 'operator', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/sweep/runs', { method: 'POST', body: {} })).body;
    assert.equal((await daemon.waitForRun(id)).state, 'failed');
    await page.goto(`${daemon.url}/#/runs/${id}`);
    await page.locator('#tasks tr[data-task="fit[1]"]').waitFor();
    // The graph is drawn from its own read, after the table or before it.
    await page.locator('svg.dag .node[data-task="pick"]').waitFor();
    assert.deepEqual(await graphStates(page), { fit: 'failed', pick: 'upstream_failed' });
    const rows = await page.$$eval('#tasks tbody tr[data-task]', (trs) => trs.map((tr) => tr.querySelector('th').textContent.trim()));
    assert.deepEqual(rows, ['fit', 'pick', 'fit[0] {"c":0.1}', 'fit[1] {"c":2}', 'fit[2] {"c":3}']);
    await page.click('#tasks tr[data-task="fit[1]"] a');
    await page.locator('#retry-from').waitFor();
    fs.writeFileSync(fixed, '');
    await page.click('#retry-from');
    await page.locator('#run-state .st-success').waitFor({ timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="pick"]')?.dataset.state === 'success');
    const run = (await daemon.api(`/api/v1/runs/${id}`)).body;
    assert.deepEqual(run.tasks.map((t) => `${t.id}:${t.state}:${t.attempt}`),
      ['fit:success:0', 'pick:success:1', 'fit[0]:success:1', 'fit[1]:success:2', 'fit[2]:success:1']);
    assert.deepEqual(problems, []);
  });
});

test('an admin marks a failed task success, with the reason typed on the page', { timeout: 120000 }, async () => {
  await signedIn(pipelinesFolder({ 'broken.toml': `[pipeline]
name = "broken"
[tasks.load]
command = "exit 4"
[tasks.after]
needs = ["load"]
command = "true"
` }), 'admin', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/broken/runs', { method: 'POST', body: {} })).body;
    assert.equal((await daemon.waitForRun(id)).state, 'failed');
    await page.goto(`${daemon.url}/#/runs/${id}/load`);
    await page.click('.mark-success');
    await page.locator('#mark-reason').fill('loaded by hand <b>instead</b>');
    await page.click('#mark-submit');
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="load"]')?.dataset.state === 'success');
    await page.locator('#events').getByText('load marked success by admin: loaded by hand <b>instead</b>').waitFor();
    await page.locator('#tasks tr[data-task="load"] .st-success').waitFor();
    assert.equal(await page.locator('.mark-form').count(), 0);
    const run = (await daemon.api(`/api/v1/runs/${id}`)).body;
    assert.equal(run.tasks[0].state, 'success');
    // A task that ended without an attempt and is no approval (the graph says its kind): its
    // card asks for no decisions.
    const asked = [];
    page.on('request', (r) => { if (r.url().includes('/decisions')) asked.push(r.url()); });
    await page.click('#tasks tr[data-task="after"] a');
    await page.locator('#task-h').getByText('Task after').waitFor();
    await page.locator('section.card').getByText('No attempt.').waitFor();
    assert.deepEqual(asked, []);
    assert.deepEqual(problems, []);
  });
});

test('an operator approves a waiting approval task on its run page, with a note', { timeout: 120000 }, async () => {
  await signedIn(pipelinesFolder({ 'release.toml': `[pipeline]
name = "release"
[tasks.build]
command = "echo built"
[tasks.approve]
kind = "approval"
needs = ["build"]
timeout = "2d"
[tasks.ship]
needs = ["approve"]
command = "echo shipped"
` }), 'operator', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/release/runs', { method: 'POST', body: {} })).body;
    await page.goto(`${daemon.url}/#/runs/${id}`);
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="approve"]')?.dataset.state === 'waiting');
    await page.locator('#awaiting-approval').getByRole('link', { name: 'approve' }).click();
    await page.locator('form.approval').getByText(/Waiting for approval since .*Rejected at .* if nobody decides\./).waitFor();
    await page.locator('#tasks tr[data-task="approve"] .st-waiting').waitFor();
    await page.locator('#approval-note').fill('checked the <i>metrics</i>');
    await screenshot(page, 'approval');
    await page.click('#approve');
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="ship"]')?.dataset.state === 'success');
    await page.locator('#events').getByText('approve: waiting → success (approved by operator: checked the <i>metrics</i>)').waitFor();
    // The task's card says who decided, when and why (the note as text, not markup).
    await page.locator('#task-decisions li').waitFor();
    const decided = await page.locator('#task-decisions li').allTextContents();
    assert.equal(decided.length, 1);
    assert.match(decided[0], /^Approved by operator at \S.*: checked the <i>metrics<\/i>$/);
    assert.equal(await page.locator('#task-decisions i').count(), 0);
    await screenshot(page, 'approval-decided');
    assert.equal(await page.locator('#awaiting-approval').count(), 0);
    assert.equal(await page.locator('form.approval').count(), 0);
    assert.equal((await daemon.waitForRun(id)).state, 'success');
    assert.deepEqual(problems, []);
  });
});

test('a wait task shows what it waits for, then its end and the notification sent', { timeout: 120000 }, async () => {
  const dir = tempDir();
  const flag = path.join(dir, '_SUCCESS');
  const received = [];
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => { received.push(JSON.parse(body)); res.writeHead(200); res.end(); });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = receiver.address().port;
  try {
    await signedIn(pipelinesFolder({ 'nightly.toml': `[pipeline]
name = "nightly"
[tasks.wait_data]
kind = "wait"
for = "file"
path = "${flag}"
every = "200ms"
timeout = "1h"
[tasks.train]
needs = ["wait_data"]
command = "echo trained"
[[notify]]
on = ["success"]
webhook = "http://127.0.0.1:${port}/hook"
` }), 'operator', async ({ daemon, page, problems }) => {
      const { id } = (await daemon.api('/api/v1/pipelines/nightly/runs', { method: 'POST', body: {} })).body;
      await page.goto(`${daemon.url}/#/runs/${id}/wait_data`);
      await page.locator('#waiting-for').getByText(/Waiting for a file since .*; the daemon looks, no process or slot is held\. Fails at .* if it is not there\./).waitFor();
      await screenshot(page, 'wait');
      fs.writeFileSync(flag, '');
      await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="train"]')?.dataset.state === 'success');
      await page.locator('#events').getByText(`wait_data: waiting → success (file '${flag}' is there)`).waitFor();
      await page.locator('#events').getByText('notified success: delivered, HTTP 200 (try 1)').waitFor();
      // The task's panel is drawn from the run record, which the page reads after the event that
      // announced the change: it goes once that read is back.
      await page.locator('#waiting-for').waitFor({ state: 'detached' });
      assert.equal(await page.locator('#waiting-for').count(), 0);
      assert.equal(received.length, 1);
      assert.equal(received[0].event, 'success');
      assert.equal(received[0].run.id, id);
      assert.deepEqual(problems, []);
    });
  } finally {
    receiver.close();
  }
});

test('the daemon is killed with a run page open: the page asks to sign in again, and the run carries on', { timeout: 180000 }, async () => {
  const dir = tempDir();
  const go = path.join(dir, 'go');
  await signedIn(pipelinesFolder({ 'slow.toml': `[pipeline]
name = "slow"
[tasks.wait]
command = "while [ ! -e ${go} ]; do sleep 0.05; done"
[tasks.after]
needs = ["wait"]
command = "true"
` }), 'operator', async ({ daemon, page, problems }) => {
    const { id } = (await daemon.api('/api/v1/pipelines/slow/runs', { method: 'POST', body: {} })).body;
    await page.goto(`${daemon.url}/#/runs/${id}`);
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="wait"]')?.dataset.state === 'running',
      null, { timeout: 60000 });
    await daemon.kill();
    await daemon.restart();
    // Sessions live in the daemon's memory: the page finds its own ended and says so.
    await page.locator('#sign-in-problem').getByText('Your sign-in has ended').waitFor({ timeout: 60000 });
    await page.fill('#token', TOKENS.operator);
    await page.click('#sign-in');
    await page.locator('#who').getByText('Signed in as operator').waitFor();
    // The same page again, and the run went on without a repeat: the task still runs its first
    // attempt, now adopted by the new daemon.
    await page.waitForURL(new RegExp(`#/runs/${id}$`));
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="wait"]')?.dataset.state === 'running');
    fs.writeFileSync(go, '');
    await page.locator('#run-state .st-success').waitFor({ timeout: 60000 });
    await page.waitForFunction(() => document.querySelector('svg.dag .node[data-task="after"]')?.dataset.state === 'success');
    const run = (await daemon.api(`/api/v1/runs/${id}`)).body;
    assert.deepEqual(run.tasks.map((t) => `${t.id}:${t.state}:${t.attempt}`), ['wait:success:1', 'after:success:1']);
    // The browser logs the refused connections while the daemon was away; nothing else.
    assert.deepEqual(problems.filter((p) => !/Failed to load resource|ERR_CONNECTION_REFUSED|net::ERR_/.test(p)), []);
  });
});

test('a page opened while the daemon is down says so, and is shown once the daemon is back', { timeout: 180000 }, async () => {
  await signedIn(pipelinesFolder({ 'one.toml': '[pipeline]\nname = "one"\n[tasks.a]\ncommand = "true"\n' }), 'viewer',
    async ({ daemon, page, problems }) => {
      await page.locator('#main').getByRole('link', { name: 'one' }).waitFor();
      await daemon.kill();
      await page.evaluate(() => { location.hash = '#/runs'; });
      await page.locator('#main .error').getByText('the daemon does not answer (is it running?)').waitFor();
      await page.locator('#main').getByText('Trying again every few seconds…').waitFor();
      await daemon.restart();
      await page.locator('#sign-in-problem').getByText('Your sign-in has ended').waitFor({ timeout: 60000 });
      await page.fill('#token', TOKENS.viewer);
      await page.click('#sign-in');
      await page.locator('#main h1').getByText('Runs').waitFor();
      assert.equal(await page.locator('#main .error').count(), 0);
      assert.deepEqual(problems.filter((p) => !/Failed to load resource|ERR_CONNECTION_REFUSED|net::ERR_/.test(p)), []);
    });
});
