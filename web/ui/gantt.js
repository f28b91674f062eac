// The run's attempts on a time line: a row per task (pipeline order), a bar per attempt from
// its start to its end (or now, while it runs). Only the rows in view are drawn.
import { h, fill, duration, when } from './dom.js';
import { label } from './states.js';
import { enc } from './api.js';

const ROW = 18;
const NAME = 180;

export class Gantt {
  // tasks: ids in order; attempts: [{task, attempt, state, started_at, ended_at}]
  constructor(runId, tasks, attempts, critical) {
    this.runId = runId;
    this.tasks = tasks;
    this.scroll = h('div', { class: 'gantt-scroll', onscroll: () => this.schedule() });
    this.el = h('div', { class: 'gantt' }, this.axis = h('div', { class: 'muted gantt-axis' }), this.scroll);
    this.frame = null;
    this.update(attempts, critical);
  }

  // critical: the ids of the tasks on the run's critical path (marked ◆).
  update(attempts, critical = []) {
    this.critical = new Set(critical);
    this.byTask = new Map();
    let start = Infinity;
    let end = -Infinity;
    for (const a of attempts) {
      if (!a.started_at) continue;
      const s = Date.parse(a.started_at);
      const e = a.ended_at ? Date.parse(a.ended_at) : Date.now();
      start = Math.min(start, s);
      end = Math.max(end, e);
      if (!this.byTask.has(a.task)) this.byTask.set(a.task, []);
      this.byTask.get(a.task).push({ ...a, s, e });
    }
    this.start = start;
    this.span = Math.max(end - start, 1);
    fill(this.axis, Number.isFinite(start) ? `From ${when(new Date(start).toISOString())}, ${duration(this.span)} in all.` : 'No attempt has started yet.',
      this.critical.size ? ' ◆ marks the critical path: the tasks that decided how long the run took.' : '');
    this.scroll.style.height = `${Math.min(this.tasks.length * ROW + 4, 420)}px`;
    this.draw(true);
  }

  schedule() {
    if (this.frame === null) this.frame = requestAnimationFrame(() => { this.frame = null; this.draw(); });
  }

  draw(force) {
    const top = this.scroll.scrollTop;
    const first = Math.max(Math.floor(top / ROW) - 5, 0);
    const last = Math.min(Math.ceil((top + (this.scroll.clientHeight || 420)) / ROW) + 5, this.tasks.length);
    if (!force && this.drawn && this.drawn[0] === first && this.drawn[1] === last) return;
    this.drawn = [first, last];
    const width = Math.max((this.scroll.clientWidth || 800) - NAME - 20, 100);
    const rows = [];
    for (let i = first; i < last; i++) {
      const task = this.tasks[i];
      const bars = (this.byTask.get(task) || []).map((a) => {
        const text = `${task} attempt ${a.attempt}: ${label(a.state)}, ${duration(a.e - a.s)}`;
        const bar = h('a', { class: `gantt-bar st-${a.state}`, title: text, 'aria-label': text,
          href: `#/runs/${this.runId}/${enc(task)}/${a.attempt}` });
        bar.style.left = `${NAME + ((a.s - this.start) / this.span) * width}px`;
        bar.style.width = `${Math.max(((a.e - a.s) / this.span) * width, 2)}px`;
        return bar;
      });
      const critical = this.critical.has(task);
      const row = h('div', { class: critical ? 'gantt-row critical' : 'gantt-row', dataset: { task } },
        h('span', { class: 'gantt-name', title: critical ? `${task} (on the critical path)` : task },
          critical ? '◆ ' : '', task), bars);
      row.style.top = `${i * ROW}px`;
      rows.push(row);
    }
    const inner = h('div', { class: 'gantt-inner' }, rows);
    inner.style.height = `${this.tasks.length * ROW}px`;
    fill(this.scroll, inner);
  }
}
