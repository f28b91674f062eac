// Signing in from the printed address and with the form; what a viewer may not do; signing out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, pipelinesFolder, launch, watchedPage, screenshot, TOKENS } from './harness.mjs';

const PIPELINE = `[pipeline]
name = "hello"
description = "says hello"
[tasks.hello]
command = "echo hello"
`;

test('the printed sign-in address signs the browser in and leaves no token in the address', { timeout: 120000 }, async () => {
  const daemon = await startDaemon({ pipelines: pipelinesFolder({ 'hello.toml': PIPELINE }), tokens: false });
  const browser = await launch();
  try {
    const line = await daemon.readLine();
    const match = /^kiln: sign in: (http:\/\/\S+\/\?token=\S+)$/.exec(line);
    assert.ok(match, `the daemon printed: ${line}`);
    const { page, problems } = await watchedPage(browser, daemon);
    await page.goto(match[1]);
    await page.locator('#who').getByText('Signed in as admin (admin)').waitFor();
    assert.equal(new URL(page.url()).search, '');
    await page.locator('tr[data-pipeline="hello"]').waitFor();
    assert.equal(await page.locator('#open-trigger, a.button', { hasText: 'Trigger' }).count(), 1);
    // The paused switch pauses and unpauses.
    const toggle = page.locator('tr[data-pipeline="hello"] button[role=switch]');
    assert.equal(await toggle.getAttribute('aria-checked'), 'true');
    await toggle.click();
    await page.locator('tr[data-pipeline="hello"] button[role=switch][aria-checked=false]').waitFor();
    const token = new URL(match[1]).searchParams.get('token');
    const paused = await fetch(`${daemon.url}/api/v1/pipelines/hello`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal((await paused.json()).paused, true);
    await page.locator('tr[data-pipeline="hello"] button[role=switch]').click();
    await page.locator('tr[data-pipeline="hello"] button[role=switch][aria-checked=true]').waitFor();
    // A wrong address says so, and drops the token from the address bar.
    const other = await watchedPage(browser, daemon);
    await other.page.goto(`${daemon.url}/?token=kiln_not_a_token`);
    await other.page.getByText('That sign-in address is not valid: its token is not known.').waitFor();
    assert.equal(new URL(other.page.url()).search, '');
    assert.deepEqual(problems, []);
    assert.deepEqual(other.problems.filter((p) => !p.includes('401')), []);
  } finally {
    await browser.close();
    await daemon.stop();
  }
});

test('the sign-in form takes a token; a viewer sees no buttons that change anything; sign out ends the session', { timeout: 120000 }, async () => {
  const daemon = await startDaemon({ pipelines: pipelinesFolder({ 'hello.toml': PIPELINE }) });
  const browser = await launch();
  try {
    const { id } = (await daemon.api('/api/v1/pipelines/hello/runs', { method: 'POST', body: {} })).body;
    await daemon.waitForRun(id);
    const { page, problems } = await watchedPage(browser, daemon);
    await page.goto(daemon.url);
    await page.locator('form.signin').waitFor();
    await screenshot(page, 'sign-in');
    await page.fill('#token', 'kiln_wrong');
    await page.click('#sign-in');
    await page.locator('#sign-in-problem').getByText('the token is not known').waitFor();
    await page.fill('#token', TOKENS.viewer);
    await page.keyboard.press('Enter');
    await page.locator('#who').getByText('Signed in as viewer (viewer)').waitFor();

    await page.locator('tr[data-pipeline="hello"]').waitFor();
    assert.equal(await page.locator('a.button', { hasText: 'Trigger' }).count(), 0);
    assert.equal(await page.locator('button[role=switch]').count(), 0);
    await page.goto(`${daemon.url}/#/pipelines/hello`);
    await page.locator('.grid-scroll').waitFor();
    assert.equal(await page.locator('#open-trigger, #open-backfill').count(), 0);
    await page.goto(`${daemon.url}/#/runs/${id}/hello`);
    await page.locator('#task-h').waitFor();
    assert.equal(await page.locator('main button:not(.dag-tools button)').count(), 0);

    await page.goto(`${daemon.url}/#/runs`);
    await page.locator('table.list').getByText(`Run ${id}`).waitFor();
    await screenshot(page, 'runs');
    await page.click('#sign-out');
    await page.locator('form.signin').waitFor();
    const after = await page.evaluate(async () => (await fetch('/api/v1/session')).status);
    assert.equal(after, 401);
    assert.deepEqual(problems.filter((p) => !p.includes('401')), []);
  } finally {
    await browser.close();
    await daemon.stop();
  }
});
