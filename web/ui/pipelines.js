// The pipelines: what each is, when it fires, how its last runs went; pause and trigger.
import { api, post, enc, follow } from './api.js';
import { h, fill, when, throttle } from './dom.js';
import { square } from './states.js';

function recentRuns(p) {
  const runs = p.recent_runs || (p.last_run ? [p.last_run] : []);
  if (runs.length === 0) return h('span', { class: 'muted' }, 'no runs yet');
  // Oldest first, so the newest is at the right as in a timeline.
  return h('span', { class: 'squares' },
    [...runs].reverse().map((r) => square(r.state, `run ${r.id}: ${r.state}`, `#/runs/${r.id}`)));
}

function schedule(p) {
  if (!p.schedule) return h('span', { class: 'muted' }, 'manual only');
  return h('span', {}, h('span', { title: p.schedule }, p.schedule_text || p.schedule),
    p.timezone && p.timezone !== 'UTC' ? ` (${p.timezone})` : '',
    h('br'), h('small', { class: 'muted' }, p.paused ? 'paused: does not fire'
      : p.next_fire ? `next: ${when(p.next_fire)}` : ''));
}

function pauseSwitch(p, app, reload) {
  if (!app.may('operator') || p.version === null) return p.paused ? 'paused' : 'active';
  return h('button', { type: 'button', role: 'switch', class: 'switch', 'aria-checked': String(!p.paused),
    'aria-label': `${p.name} active`, title: p.paused ? 'Paused: click to unpause' : 'Active: click to pause',
    onclick: async (ev) => {
      ev.currentTarget.disabled = true;
      await post(`/api/v1/pipelines/${enc(p.name)}/${p.paused ? 'unpause' : 'pause'}`, {})
        .catch((e) => alert(e.message));
      reload();
    } }, h('span', { 'aria-hidden': 'true' }, p.paused ? 'paused' : 'active'));
}

function row(p, app, reload) {
  const link = h('a', { href: `#/pipelines/${enc(p.name)}`, class: 'name' }, p.name);
  return h('tr', { dataset: { pipeline: p.name } },
    h('td', {}, link, p.description ? h('div', { class: 'muted desc' }, p.description) : null),
    h('td', {}, p.tags.map((t) => h('span', { class: 'tag' }, t))),
    h('td', {}, schedule(p)),
    h('td', {}, recentRuns(p)),
    h('td', {}, pauseSwitch(p, app, reload)),
    h('td', {}, app.may('operator') && p.version !== null
      ? h('a', { class: 'button', href: `#/pipelines/${enc(p.name)}/trigger` }, 'Trigger…') : null));
}

export async function pipelinesView(main, app) {
  const body = h('div');
  fill(main, h('h1', {}, 'Pipelines'), body);
  const load = async () => {
    const { pipelines } = await api('/api/v1/pipelines');
    const broken = pipelines.filter((p) => p.load_error);
    const table = h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, ['Pipeline', 'Tags', 'Schedule', 'Last runs', 'Paused', ''].map(
        (c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, pipelines.filter((p) => p.version !== null).map((p) => row(p, app, load))));
    fill(body,
      pipelines.length === 0 ? h('p', {}, 'No pipelines yet: put a pipeline file in the pipelines folder.') : table,
      broken.length === 0 ? null : h('section', { class: 'broken', 'aria-labelledby': 'broken-h' },
        h('h2', { id: 'broken-h' }, 'Files with errors'),
        broken.map((p) => h('div', { class: 'card error-card' },
          h('h3', {}, h('span', { 'aria-hidden': 'true' }, '✗ '), p.file),
          p.version ? h('p', {}, `The last good version of ${p.name} keeps running.`) : null,
          h('pre', { class: 'errors' }, p.load_error)))));
  };
  // Followed before the first read, which waits until the stream is open (pipeline.js).
  const reload = throttle(() => load().catch(() => {}), 400);
  let streamOpen;
  const opened = new Promise((resolve) => { streamOpen = resolve; });
  const stop = follow('', (e) => {
    if (e.kind === 'run_state' || e.kind === 'run_created' || e.kind.startsWith('pipeline_')) reload();
  }, () => streamOpen());
  await Promise.race([opened, new Promise((resolve) => setTimeout(resolve, 2000))]);
  try {
    await load();
  } catch (e) {
    stop();
    throw e;
  }
  return () => {
    stop();
    reload.cancel();  // a reload due after the page was left is not made
  };
}
