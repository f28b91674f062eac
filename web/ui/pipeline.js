// One pipeline: its grid of recent runs × tasks, its DAG, run durations, the metrics its tasks
// recorded, backfills, and the trigger and backfill forms.
import { api, post, enc, follow } from './api.js';
import { h, fill, when, throttle } from './dom.js';
import { badge } from './states.js';
import { Grid } from './grid.js';
import { DagView } from './graph.js';
import { durationChart, metricsCharts } from './chart.js';
import { triggerForm, backfillForm } from './forms.js';

function progress(b) {
  const pct = b.total ? Math.round((b.done / b.total) * 100) : 0;
  return h('span', { class: 'progress' },
    h('progress', { max: b.total, value: b.done, 'aria-label': `backfill ${b.id} progress` }),
    ` ${b.done} of ${b.total} runs ended (${pct}%)`);
}

function backfillRow(b, app, reload) {
  return h('tr', { dataset: { backfill: b.id } },
    h('td', {}, `#${b.id}`),
    h('td', {}, `${when(b.from)} → ${when(b.to)}`),
    h('td', {}, badge(b.state)),
    h('td', { class: 'backfill-progress' }, progress(b),
      h('div', { class: 'muted' }, Object.entries(b.runs).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`).join(', '))),
    h('td', {}, b.created_by, h('br'), h('small', { class: 'muted' }, when(b.created_at))),
    h('td', {}, app.may('operator') && b.state === 'running'
      ? h('button', { type: 'button', onclick: async () => {
        await post(`/api/v1/backfills/${b.id}/cancel`, {}).catch(() => {});
        reload();
      } }, 'Cancel') : null));
}

// A pipeline no file declares any more (deleted or renamed) is shown from its runs while it
// has any: its grid, backfills and metrics, and the graph of its newest run's version.
async function gonePipeline(name, error) {
  if (error.status !== 404) throw error;
  await api(`/api/v1/pipelines/${enc(name)}/grid?limit=1`);  // no runs either: not found
  return { name, gone: true, version: null, description: '', tags: [], schedule: null,
           next_fires: [], paused: false, load_error: null, file: null };
}

export async function pipelineView(main, app, name, open) {
  const p = await api(`/api/v1/pipelines/${enc(name)}`).catch((e) => gonePipeline(name, e));
  const formBox = h('div');
  const gridBox = h('div', { class: 'grid-area' }, h('p', { class: 'muted' }, 'Loading runs…'));
  const chartBox = h('div');
  const metricsBox = h('div');
  const dagBox = h('div', {}, h('p', { class: 'muted' }, 'Drawing the graph…'));
  const backfillBox = h('div');
  // Pages of the grid: `cursor` is this page's (null: the newest runs), `newer` the ones before it.
  let cursor = null;
  let next = null;
  const newer = [];
  const limit = h('select', { id: 'grid-limit', 'aria-label': 'runs shown', onchange: () => {
    cursor = null;
    newer.length = 0;
    loadGrid();
  } }, [25, 50, 100].map((n) => h('option', { value: n }, `${n} runs`)));
  const olderButton = h('button', { type: 'button', id: 'grid-older', hidden: true, onclick: () => {
    newer.push(cursor);
    cursor = next;
    loadGrid();
  } }, '‹ Older runs');
  const newerButton = h('button', { type: 'button', id: 'grid-newer', hidden: true, onclick: () => {
    cursor = newer.pop() ?? null;
    loadGrid();
  } }, 'Newer runs ›');
  const openForm = (which) => {
    if (which === 'trigger') {
      fill(formBox, triggerForm(p, (run) => { location.hash = `#/runs/${run.id}`; }));
    } else {
      fill(formBox, backfillForm(p, () => { fill(formBox); loadBackfills(); }));
    }
    const first = formBox.querySelector('input, button');
    if (first) first.focus();
  };
  const operable = app.may('operator') && p.version !== null;
  fill(main,
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Pipelines'), ' › '),
    h('h1', {}, p.name, p.paused ? h('span', { class: 'tag' }, 'paused') : null),
    p.description ? h('p', { class: 'desc' }, p.description) : null,
    p.gone ? h('p', { class: 'muted', id: 'pipeline-gone' },
      'No pipeline file declares it now (deleted or renamed): its past runs are shown, ' +
      'and cannot be retried.') :
    h('p', { class: 'muted' }, p.tags.map((t) => h('span', { class: 'tag' }, t)),
      p.schedule ? ` Schedule: ${p.schedule_text || p.schedule}` : ' Manual only', p.next_fires.length ? `; next ${p.next_fires.map(when).join(', then ')}` : '',
      `. File ${p.file}, version ${(p.version || '').slice(0, 12)}.`),
    p.load_error ? h('pre', { class: 'errors', role: 'alert' }, p.load_error) : null,
    operable ? h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'open-trigger', onclick: () => openForm('trigger') }, 'Trigger…'),
      p.schedule ? h('button', { type: 'button', id: 'open-backfill', onclick: () => openForm('backfill') }, 'Backfill…') : null) : null,
    formBox,
    h('section', { 'aria-labelledby': 'grid-h' }, h('h2', { id: 'grid-h' }, 'Runs × tasks'),
      h('div', { class: 'actions grid-pages' }, olderButton, limit, newerButton), gridBox),
    h('section', { 'aria-labelledby': 'dur-h' }, h('h2', { id: 'dur-h' }, 'Run durations'), chartBox),
    h('section', { 'aria-labelledby': 'met-h' }, h('h2', { id: 'met-h' }, 'Metrics'), metricsBox),
    h('section', { 'aria-labelledby': 'dag-h' }, h('h2', { id: 'dag-h' }, 'Graph'), dagBox),
    h('section', { 'aria-labelledby': 'bf-h' }, h('h2', { id: 'bf-h' }, 'Backfills'), backfillBox));

  let grid = null;
  let loading = 0;     // reads of the grid under way
  let stale = false;   // an event came during one: its answer may predate it
  let during = [];     // the task states that came during them, painted again on their answer
  async function loadGrid() {
    loading++;
    try {
      await readGrid();
    } finally {
      loading--;
      if (loading === 0) during = [];
      if (stale && loading === 0) {
        stale = false;
        reload();
      }
    }
  }
  let issued = 0;       // reads of the grid sent, and the newest whose answer is shown: an
  let shown = 0;        // answer older than the one shown (reads overlap) is dropped
  async function readGrid() {
    const seq = ++issued;
    const g = await api(`/api/v1/pipelines/${enc(name)}/grid?limit=${limit.value}${cursor ? `&cursor=${enc(cursor)}` : ''}`);
    if (seq < shown) return;
    shown = seq;
    next = g.next_cursor;
    olderButton.hidden = !next;
    newerButton.hidden = cursor === null;
    const runs = [...g.runs].reverse();
    if (runs.length === 0) {
      grid = null;
      fill(gridBox, h('p', { class: 'muted' }, 'No runs yet.'));
    } else {
      // A reload keeps where the grid was scrolled to, its current cell and the focus.
      const old = grid;
      const at = old ? old.where() : null;
      grid = new Grid(g.tasks, runs, at);
      fill(gridBox, grid.el);
      if (old) {
        grid.scroll.scrollTop = old.scroll.scrollTop;
        grid.scroll.scrollLeft = old.scroll.scrollLeft;
      }
      grid.start();
      if (at && at.focused) grid.focus.focus();
      // A state that came while this was read may be newer than what it read: in the order they
      // came, so the last one wins (one older than the read is followed by the newer ones).
      for (const e of during) grid.set(e.run, e.task, e.to);
    }
    fill(chartBox, durationChart(runs));
  }
  // Gone, a list it has none of is not found.
  const none = (empty) => (e) => {
    if (p.gone && e.status === 404) return empty;
    throw e;
  };
  async function loadBackfills() {
    const { backfills } = await api(`/api/v1/pipelines/${enc(name)}/backfills`)
      .catch(none({ backfills: [] }));
    fill(backfillBox, backfills.length === 0 ? h('p', { class: 'muted' }, 'No backfills.')
      : h('table', { class: 'list', id: 'backfills' },
        h('thead', {}, h('tr', {}, ['', 'Range', 'State', 'Progress', 'By', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, backfills.map((b) => backfillRow(b, app, loadBackfills)))));
  }
  async function loadMetrics() {
    const m = await api(`/api/v1/pipelines/${enc(name)}/metrics?limit=50`)
      .catch(none({ points: [] }));
    fill(metricsBox, metricsCharts(m.points));
  }
  async function loadDag() {
    let query = '';
    // Gone, its last run may be deleted (retention) between the page's reads.
    const left = h('p', { class: 'muted' }, 'No run of it is left to draw the graph from.');
    if (p.gone) {
      const { runs } = await api(`/api/v1/pipelines/${enc(name)}/grid?limit=1`)
        .catch(none({ runs: [] }));
      if (runs.length === 0) return fill(dagBox, left);
      query = `?version=${enc(runs[0].version)}`;
    } else if (p.version === null) {
      return fill(dagBox, h('p', { class: 'muted' }, 'The file never loaded.'));
    }
    const layout = await api(`/api/v1/pipelines/${enc(name)}/graph${query}`).catch(none(null));
    if (layout === null) return fill(dagBox, left);
    const dag = new DagView(layout);
    fill(dagBox, dag.el);
    dag.fit();
  }
  const reload = throttle(() => {
    loadGrid().catch(() => {});
    loadBackfills().catch(() => {});
    loadMetrics().catch(() => {});
  }, 1000);
  // A task's new state is painted into the grid at once; what the grid cannot show by itself (a
  // new run, a run's own state, backfills) reads it again, at most once a second. The stream is
  // followed before the first reads, which wait until it is open (the point it starts from is
  // fixed then): an event committed after a read is never missed, and one before it is at worst
  // painted twice. Following only after the reads lost what happened in between, and the grid
  // kept the states it read (a backfill of quick tasks, seen in the browser tests).
  let streamOpen;
  const opened = new Promise((resolve) => { streamOpen = resolve; });
  const stop = follow(`pipeline=${enc(name)}`, (e) => {
    if (loading) {
      stale = true;
      if (e.kind === 'task_state') during.push(e);
    }
    if (e.kind === 'task_state' && grid && grid.set(e.run, e.task, e.to)) return;
    reload();
  }, () => streamOpen());
  await Promise.race([opened, new Promise((resolve) => setTimeout(resolve, 2000))]);
  try {
    await Promise.all([loadGrid(), loadBackfills(),
      loadMetrics().catch((e) => fill(metricsBox, h('p', { class: 'error' }, e.message))),
      loadDag().catch((e) => fill(dagBox, h('p', { class: 'error' }, e.message)))]);
  } catch (e) {
    stop();
    reload.cancel();
    throw e;
  }
  if (operable && (open === 'trigger' || open === 'backfill')) openForm(open);
  return () => {
    stop();
    reload.cancel();
  };
}
