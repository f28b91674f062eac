// A run: its DAG coloured live by each task's state, a Gantt of its attempts, its tasks, the
// selected task's attempts and log, who did what, and the buttons an operator or admin may use.
import { api, post, enc, follow, ApiError } from './api.js';
import { h, fill, when, duration, since, bytes, throttle } from './dom.js';
import { badge, ACTIVE } from './states.js';
import { DagView } from './graph.js';
import { Gantt } from './gantt.js';
import { LogView } from './log.js';
import { VirtualTable } from './table.js';

const ENDED_TASK = new Set(['success', 'failed', 'skipped', 'upstream_failed', 'cancelled']);
const KEEP_EVENTS = 500;  // the newest events listed

function exitText(t) {
  if (t.signal !== null && t.signal !== undefined) return `signal ${t.signal}`;
  if (t.exit_code !== null && t.exit_code !== undefined) return `exit ${t.exit_code}`;
  return '';
}

function describeEvent(e) {
  const who = e.actor ? ` by ${e.actor}` : '';
  switch (e.kind) {
    case 'task_state': return `${e.task}${e.attempt ? ` (attempt ${e.attempt})` : ''}: ${e.from || '—'} → ${e.to}${e.detail && e.detail.reason ? ` (${e.detail.reason})` : ''}`;
    case 'run_state': return `run: ${e.from || '—'} → ${e.to}`;
    case 'run_created': return `run created${who}`;
    case 'cancel_requested': return `cancel requested${who}`;
    case 'run_retried': return `retried${who}${e.detail && e.detail.tasks ? `: ${e.detail.tasks.join(', ')}` : ''}`;
    case 'task_marked': return `${e.task} marked ${e.to}${who}${e.detail && e.detail.reason ? `: ${e.detail.reason}` : ''}`;
    case 'sla_missed': return `missed its SLA${e.detail && e.detail.sla ? ` of ${e.detail.sla}` : ''}`;
    case 'notification': {
      const d = e.detail || {};
      const answer = d.status ? `HTTP ${d.status}` : (d.error || '');
      return `notified ${d.event}${d.subject ? ` (${d.subject})` : ''}: ${(d.outcome || '').replace('_', ' ')}${answer ? `, ${answer}` : ''} (try ${d.try})`;
    }
    default: return `${e.kind}${who}`;
  }
}

export async function runView(main, app, idText, selectedTask, selectedAttempt) {
  const id = Number(idText);
  if (!Number.isSafeInteger(id) || id < 1) throw new ApiError(404, 'not_found', `no run ${idText}`);
  let run = await api(`/api/v1/runs/${id}`);
  let index = new Map(run.tasks.map((t, i) => [t.id, i]));  // task id -> its row
  // Events up to this one are in `run` already: the stream's history only fills the event list.
  let seen = run.event_id || 0;
  // What the stream said last of each task and of the run, with the event's id: a read of the
  // run older than that does not undo it.
  const latest = new Map();
  let latestRun = null;
  const head = h('div');
  const dagBox = h('div', {}, h('p', { class: 'muted' }, 'Drawing the graph…'));
  const ganttBox = h('div');
  const taskBox = h('div', { id: 'task-panel' });
  const eventList = h('ol', { class: 'events', id: 'events', reversed: true });
  const problem = h('p', { class: 'error', role: 'alert' });
  let dag = null;
  const kinds = new Map();  // task id -> kind, from the graph
  let gantt = null;
  let log = null;

  const act = async (path, body) => {
    try {
      fill(problem);
      await post(path, body);
    } catch (e) {
      fill(problem, e.message);
    }
    refresh();
  };

  function actions() {
    const ended = !ACTIVE.has(run.state);
    const buttons = [];
    if (app.may('operator') && !ended) {
      buttons.push(h('button', { type: 'button', id: 'cancel-run', class: 'danger',
        onclick: () => act(`/api/v1/runs/${id}/cancel`) }, 'Cancel run'));
    }
    if (app.may('operator') && ended && run.tasks.some((t) => ['failed', 'upstream_failed', 'cancelled'].includes(t.state))) {
      buttons.push(h('button', { type: 'button', id: 'retry-failed', onclick: () => act(`/api/v1/runs/${id}/retry`, { mode: 'failed' }) },
        'Retry failed tasks'));
    }
    return buttons.length ? h('div', { class: 'actions' }, buttons) : null;
  }

  // Approval tasks waiting for a decision, named at the top of the run with a link to each.
  function waitingNotice() {
    const waiting = run.tasks.filter((t) => t.state === 'waiting' && t.waiting_for === 'approval');
    if (!waiting.length) return null;
    return h('p', { class: 'notice', id: 'awaiting-approval', role: 'status' }, 'Waiting for approval: ',
      waiting.map((t, i) => [i ? ', ' : '', h('a', { href: `#/runs/${id}/${enc(t.id)}` }, t.id)]));
  }

  // An approval task that waits: who may decide sees a note field and Approve / Reject.
  // A wait task (kind = "wait"): the daemon looks; nothing to do here but know until when.
  function waitCard(t) {
    const what = { file: 'a file', http: 'a URL to answer 2xx', time: 'its time to come' }[t.waiting_for] || t.waiting_for;
    return h('p', { class: 'approval', id: 'waiting-for' },
      `Waiting for ${what} since ${when(t.started_at)}; the daemon looks, no process or slot is held.`,
      t.deadline ? ` Fails at ${when(t.deadline)} if it is not there.` : '');
  }

  function approvalCard(t) {
    const facts = [`Waiting for approval since ${when(t.started_at)}.`,
      t.deadline ? ` Rejected at ${when(t.deadline)} if nobody decides.` : ''];
    if (!app.may('operator')) return h('div', { class: 'approval' }, h('p', {}, facts));
    const note = h('input', { type: 'text', id: 'approval-note', maxlength: 2000, placeholder: 'why (recorded with the decision)' });
    const decide = (verb) => act(`/api/v1/runs/${id}/tasks/${enc(t.id)}/${verb}`, note.value ? { note: note.value } : {});
    return h('form', { class: 'approval', 'aria-label': `decide ${t.id}`, onsubmit: (ev) => ev.preventDefault() },
      h('p', {}, facts),
      h('label', { class: 'field' }, 'Note', note),
      h('div', { class: 'actions' },
        h('button', { type: 'button', id: 'approve', onclick: () => decide('approve') }, 'Approve'),
        h('button', { type: 'button', id: 'reject', class: 'danger', onclick: () => decide('reject') }, 'Reject')));
  }

  function drawHead() {
    const params = Object.entries(run.params);
    fill(head,
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Pipelines'), ' › ',
        h('a', { href: `#/pipelines/${enc(run.pipeline)}` }, run.pipeline), ' › '),
      h('h1', {}, `Run ${run.id} `, h('span', { id: 'run-state' }, badge(run.state))),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Trigger'), h('dd', {}, run.trigger, run.created_by ? ` by ${run.created_by}` : '',
          run.triggered_by ? [' after ', h('a', { href: `#/runs/${run.triggered_by}` }, `run ${run.triggered_by}`)] : '',
          run.backfill ? ` (backfill #${run.backfill})` : ''),
        h('dt', {}, 'Created'), h('dd', {}, when(run.created_at)),
        h('dt', {}, 'Started'), h('dd', {}, when(run.started_at) || '—'),
        h('dt', {}, 'Ended'), h('dd', {}, run.ended_at ? `${when(run.ended_at)} (${duration(since(run.started_at, run.ended_at))})` : '—'),
        h('dt', {}, 'Logical date'), h('dd', {}, when(run.logical_date)),
        run.note ? [h('dt', {}, 'Note'), h('dd', { class: 'note' }, run.note)] : null,
        h('dt', {}, 'Version'), h('dd', {}, h('code', {}, run.version.slice(0, 12)))),
      params.length ? h('table', { class: 'params' }, h('caption', {}, 'Params'),
        h('tbody', {}, params.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, h('code', {}, JSON.stringify(v))))))) : null,
      waitingNotice(), actions(), problem);
  }

  // An instance's item, short: a string as it is, anything else as JSON.
  function itemText(item) {
    const text = typeof item === 'string' ? item : JSON.stringify(item);
    return text.length > 40 ? `${text.slice(0, 39)}…` : text;
  }

  function taskRow(i) {
    const t = run.tasks[i];
    const selected = t.id === selectedTask;
    return h('tr', { class: selected ? 'selected' : null, dataset: { task: t.id } },
      h('th', { scope: 'row' }, h('a', { href: `#/runs/${id}/${enc(t.id)}`, 'aria-current': selected ? 'true' : null }, t.id),
        t.parent ? h('span', { class: 'muted item', title: 'its item' }, ' ', itemText(t.item)) : null),
      h('td', {}, badge(t.state)),
      h('td', {}, t.attempt || ''),
      h('td', {}, exitText(t)),
      h('td', {}, t.duration_ms !== null ? duration(t.duration_ms) : (t.started_at && !t.ended_at ? `${duration(since(t.started_at))} so far` : '')),
      h('td', {}, when(t.started_at)));
  }

  const table = new VirtualTable({ id: 'tasks', className: 'tasks', label: 'tasks of the run',
    columns: ['Task', 'State', 'Attempt', 'Exit', 'Duration', 'Started'], count: run.tasks.length, make: taskRow });

  // Marking a task asks why: the reason goes with the mark into the run's events.
  const markBox = h('div');
  function markForm(task, state) {
    const reason = h('input', { type: 'text', id: 'mark-reason', required: true, maxlength: 500, value: 'checked by hand' });
    const form = h('form', { class: 'card mark-form', 'aria-label': `mark ${task} ${state}`,
      onsubmit: async (ev) => {
        ev.preventDefault();
        fill(markBox);
        await act(`/api/v1/runs/${id}/tasks/${enc(task)}/mark`, { state, reason: reason.value });
      } },
    h('label', { class: 'field' }, `Why mark ${task} ${state}?`, reason),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', id: 'mark-submit' }, `Mark ${state}`),
      h('button', { type: 'button', onclick: () => fill(markBox) }, 'Cancel')));
    setTimeout(() => { reason.focus(); reason.select(); });
    return form;
  }

  async function drawTask() {
    const t = run.tasks.find((x) => x.id === selectedTask);
    if (!t) return fill(taskBox);
    const { attempts } = await api(`/api/v1/runs/${id}/tasks/${enc(t.id)}/attempts`);
    // An ended task without attempts may be a decided approval: who decided, when and why (asked
    // of approval tasks only, once the graph has told the kinds).
    const kind = kinds.get(t.id);
    const decisions = attempts.length === 0 && ENDED_TASK.has(t.state) && (kind == null || kind === 'approval')
      ? (await api(`/api/v1/runs/${id}/decisions`).catch(() => ({ decisions: [] }))).decisions.filter((d) => d.task === t.id)
      : [];
    const chosen = Number(selectedAttempt) || (attempts.length ? attempts[attempts.length - 1].attempt : 0);
    // The log shown stays while it is the chosen attempt's: it follows on by itself.
    if (log && log.attempt !== chosen) {
      log.close();
      log = null;
    }
    const buttons = [];
    if (app.may('operator') && !ACTIVE.has(run.state)) {
      buttons.push(h('button', { type: 'button', id: 'retry-from', onclick: () => act(`/api/v1/runs/${id}/retry`, { from: t.id }) },
        `Retry from ${t.id}`));
    }
    if (app.may('admin')) {
      const markable = ACTIVE.has(run.state) ? !ENDED_TASK.has(t.state) : true;
      if (markable) {
        for (const state of ['success', 'failed']) {
          buttons.push(h('button', { type: 'button', class: `mark-${state}`,
            onclick: () => fill(markBox, markForm(t.id, state)) }, `Mark ${state}`));
        }
      }
    }
    if (chosen && !log) log = new LogView(id, t.id, chosen);
    fill(taskBox, h('section', { class: 'card', 'aria-labelledby': 'task-h' },
      h('h2', { id: 'task-h' }, `Task ${t.id} `, badge(t.state)),
      t.state === 'waiting' && t.waiting_for === 'approval' ? approvalCard(t) : null,
      t.state === 'waiting' && t.waiting_for && t.waiting_for !== 'approval' ? waitCard(t) : null,
      buttons.length ? h('div', { class: 'actions' }, buttons) : null, markBox,
      decisions.length ? h('ul', { id: 'task-decisions', class: 'decisions', 'aria-label': `decisions on ${t.id}` },
        decisions.map((d) => h('li', {}, `${d.decision === 'approved' ? 'Approved' : 'Rejected'} by ${d.by} at ${when(d.at)}${d.note ? `: ${d.note}` : ''}`)))
        : attempts.length === 0 ? h('p', { class: 'muted' }, t.waiting_for || ENDED_TASK.has(t.state) ? 'No attempt.' : 'No attempt yet.')
        : h('table', { class: 'list attempts' },
          h('thead', {}, h('tr', {}, ['Attempt', 'State', 'Exit', 'Duration', 'CPU', 'Peak memory', 'Reason', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, attempts.map((a) => h('tr', { class: a.attempt === chosen ? 'selected' : null },
            h('td', {}, h('a', { href: `#/runs/${id}/${enc(t.id)}/${a.attempt}` }, `#${a.attempt}`)),
            h('td', {}, badge(a.state)),
            h('td', {}, exitText(a) + (a.timed_out ? ' (timed out)' : '')),
            h('td', {}, duration(since(a.started_at, a.ended_at))),
            h('td', {}, a.cpu_ms !== null ? duration(a.cpu_ms) : ''),
            h('td', {}, bytes(a.max_rss_kb)),
            h('td', {}, a.reason || ''),
            h('td', {}, when(a.started_at)))))),
      chosen ? [h('h3', {}, `Log of attempt ${chosen}`), log.el] : null));
  }

  async function drawGantt() {
    const { attempts, critical_path: critical } = await api(`/api/v1/runs/${id}/attempts`);
    if (!gantt) {
      gantt = new Gantt(id, run.tasks.map((t) => t.id), attempts, critical);
      fill(ganttBox, gantt.el);
    }
    gantt.tasks = run.tasks.map((t) => t.id);  // instances appear as their task expands
    gantt.update(attempts, critical);
  }

  // What the stream says changes the page at once; the rest (times, exit codes) follows from a
  // read of the run shortly after.
  const refresh = throttle(async () => {
    let fresh;
    try {
      fresh = await api(`/api/v1/runs/${id}`);
    } catch (e) {
      return;
    }
    // A read made before events the stream has applied since: the states those events set
    // stand (the read's times and exit codes are taken, not its older states), and another read
    // follows for the rest.
    const asOf = fresh.event_id || 0;
    for (const t of fresh.tasks) {
      const said = latest.get(t.id);
      if (said && said.id > asOf) {
        t.state = said.state;
        if (said.attempt) t.attempt = said.attempt;
      }
    }
    if (latestRun && latestRun.id > asOf) fresh.state = latestRun.state;
    run = fresh;
    index = new Map(run.tasks.map((t, i) => [t.id, i]));
    const stale = asOf < seen;
    seen = Math.max(seen, asOf);
    drawHead();
    table.redrawAll(run.tasks.length);
    if (dag) for (const t of run.tasks) dag.set(t.id, t.state);
    drawGantt().catch(() => {});
    if (selectedTask) {
      const t = run.tasks.find((x) => x.id === selectedTask);
      const shown = taskBox.querySelector('#task-h .badge');
      if (t && shown && !shown.classList.contains(`st-${t.state}`)) drawTask().catch(() => {});
    }
    if (stale) refresh();
  }, 400);

  // The events that came since the last frame, applied at once: a run's history of thousands of
  // events costs a few frames, and only what changed is drawn again.
  let queue = [];
  let frame = null;
  function applyEvents() {
    frame = null;
    const batch = queue;
    queue = [];
    const changed = new Set();
    let ranState = false;
    for (const e of batch) {
      if (e.id <= seen) continue;  // the run as read holds it already
      seen = e.id;
      if (e.kind === 'task_state' && e.task) {
        latest.set(e.task, { state: e.to, attempt: e.attempt, id: e.id });
        if (index.has(e.task)) {
          const t = run.tasks[index.get(e.task)];
          t.state = e.to;
          if (e.attempt) t.attempt = e.attempt;
          changed.add(e.task);
        }
      }
      if (e.kind === 'run_state') {
        latestRun = { state: e.to, id: e.id };
        run.state = e.to;
        ranState = true;
      }
    }
    for (const task of changed) {
      if (dag) dag.set(task, run.tasks[index.get(task)].state);
      table.redraw(index.get(task));
    }
    if (ranState) drawHead();
    eventList.prepend(...batch.slice(-KEEP_EVENTS).reverse().map((e) =>
      h('li', {}, h('time', { datetime: e.at }, when(e.at)), ' ', describeEvent(e))));
    while (eventList.childElementCount > KEEP_EVENTS) eventList.lastChild.remove();
    if (changed.size || ranState) refresh();
  }

  fill(main, head,
    h('section', { 'aria-labelledby': 'rdag-h' }, h('h2', { id: 'rdag-h' }, 'Graph'), dagBox),
    taskBox,
    h('section', { 'aria-labelledby': 'tasks-h' }, h('h2', { id: 'tasks-h' }, 'Tasks'), table.el),
    h('section', { 'aria-labelledby': 'gantt-h' }, h('h2', { id: 'gantt-h' }, 'Timeline'), ganttBox),
    h('section', { 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Events'), eventList));
  drawHead();
  table.start();
  if (selectedTask && index.has(selectedTask)) table.show(index.get(selectedTask));
  const layout = await api(`/api/v1/pipelines/${enc(run.pipeline)}/graph?version=${enc(run.version)}`)
    .catch((e) => { fill(dagBox, h('p', { class: 'error' }, e.message)); return null; });
  if (layout) {
    for (const n of layout.nodes) kinds.set(n.id, n.kind);
    const states = new Map(run.tasks.map((t) => [t.id, t.state]));
    dag = new DagView(layout, { href: (task) => `#/runs/${id}/${enc(task)}`, states });
    fill(dagBox, dag.el);
    dag.fit();
  }
  await Promise.all([drawGantt(), drawTask()]);
  if (selectedTask) taskBox.scrollIntoView({ block: 'nearest' });

  // Every event of the run from its first: the history, then live.
  const stop = follow(`run=${id}&after=0`, (e) => {
    queue.push(e);
    if (frame === null) frame = requestAnimationFrame(applyEvents);
  });
  return () => {
    stop();
    cancelAnimationFrame(frame);
    refresh.cancel();
    if (log) log.close();
  };
}

// Every run, newest first, a page at a time.
export async function runsView(main) {
  const body = h('tbody');
  const more = h('button', { type: 'button', id: 'older' }, 'Older runs');
  let cursor = null;
  const load = async () => {
    const page = await api(`/api/v1/runs?limit=50${cursor ? `&cursor=${enc(cursor)}` : ''}`);
    for (const r of page.runs) {
      body.append(h('tr', {},
        h('td', {}, h('a', { href: `#/runs/${r.id}` }, `Run ${r.id}`)),
        h('td', {}, h('a', { href: `#/pipelines/${enc(r.pipeline)}` }, r.pipeline)),
        h('td', {}, badge(r.state)),
        h('td', {}, r.trigger, r.created_by ? ` by ${r.created_by}` : ''),
        h('td', {}, when(r.created_at)),
        h('td', {}, r.started_at ? duration(since(r.started_at, r.ended_at)) : '')));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', () => load());
  fill(main, h('h1', {}, 'Runs'), h('table', { class: 'list' },
    h('thead', {}, h('tr', {}, ['Run', 'Pipeline', 'State', 'Trigger', 'Created', 'Duration'].map((c) => h('th', { scope: 'col' }, c)))),
    body), more);
  await load();
  return null;
}
