// Runs × tasks, coloured by state, as in Airflow's grid: a row per task, a column per run (the
// newest at the right). Only the rows in view are in the page, so 2,000 tasks × 100 runs scroll
// as smoothly as 20. Keyboard: one cell takes the focus (Tab), arrows move it, Enter opens it.
import { h } from './dom.js';
import { CODES, icon, label, square } from './states.js';
import { enc } from './api.js';

const ROW = 20;  // px, as in app.css .grid-row
const SPARE = 8; // rows drawn beyond the view on each side

export class Grid {
  // tasks: ids in pipeline order; runs: oldest first, each {id, state, tasks: "sf.."}
  constructor(tasks, runs) {
    this.tasks = tasks;
    this.runs = runs;
    this.active = { row: 0, col: Math.max(runs.length - 1, 0) };
    this.rows = h('div', { class: 'grid-rows', style: null });
    this.rows.style.height = `${tasks.length * ROW}px`;
    const head = h('div', { class: 'grid-head', role: 'row' },
      h('span', { class: 'grid-name', role: 'columnheader' }, 'task \\ run'),
      runs.map((r) => h('span', { class: 'grid-cell', role: 'columnheader' },
        square(r.state, `run ${r.id}: ${label(r.state)}`, `#/runs/${r.id}`))));
    this.scroll = h('div', { class: 'grid-scroll', role: 'grid', 'aria-label': 'tasks by run',
      'aria-rowcount': tasks.length + 1, 'aria-colcount': runs.length + 1,
      onscroll: () => this.schedule(), onkeydown: (ev) => this.key(ev) }, head, this.rows);
    this.scroll.style.maxHeight = `${Math.min(tasks.length * ROW + 40, 560)}px`;
    this.el = h('div', { class: 'grid-box' }, this.scroll);
    this.frame = null;
    this.drawn = new Map();  // row index -> its element
  }

  // Call once the grid is in the page.
  start() {
    this.draw();
    new ResizeObserver(() => this.schedule()).observe(this.scroll);
  }

  schedule() {
    if (this.frame === null) this.frame = requestAnimationFrame(() => { this.frame = null; this.draw(); });
  }

  code(row, col) {
    return this.runs[col].tasks[row] || '.';
  }

  // The rows in view and a few around: rows that scroll out are dropped, rows that scroll in are
  // made; the rest stay as they are.
  draw() {
    const top = this.scroll.scrollTop;
    const first = Math.max(Math.floor(top / ROW) - SPARE, 0);
    const last = Math.min(Math.ceil((top + this.scroll.clientHeight) / ROW) + SPARE, this.tasks.length);
    for (const [r, row] of this.drawn) {
      if (r < first || r >= last) {
        row.remove();
        this.drawn.delete(r);
      }
    }
    const added = document.createDocumentFragment();
    for (let r = first; r < last; r++) {
      if (this.drawn.has(r)) continue;
      const row = this.row(r);
      this.drawn.set(r, row);
      added.append(row);
    }
    this.rows.append(added);
  }

  row(r) {
    const task = this.tasks[r];
    const cells = this.runs.map((run, c) => {
      const state = CODES[this.code(r, c)] || 'none';
      const text = `${task}, run ${run.id}: ${label(state)}`;
      const tabbable = r === this.active.row && c === this.active.col;
      return h('a', { class: `grid-cell sq st-${state}`, role: 'gridcell', title: text, 'aria-label': text,
        href: state === 'none' ? null : `#/runs/${run.id}/${enc(task)}`, tabindex: tabbable ? 0 : -1,
        dataset: { row: r, col: c } }, icon(state));
    });
    const row = h('div', { class: 'grid-row', role: 'row', 'aria-rowindex': r + 2 },
      h('span', { class: 'grid-name', role: 'rowheader', title: task }, task), cells);
    row.style.top = `${r * ROW}px`;
    return row;
  }

  cell(r, c) {
    const row = this.drawn.get(r);
    return row ? row.children[c + 1] : null;
  }

  key(ev) {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      Home: [0, -1e9], End: [0, 1e9], PageUp: [-20, 0], PageDown: [20, 0] };
    const move = moves[ev.key];
    if (!move || !ev.target.classList.contains('grid-cell')) return;
    ev.preventDefault();
    const a = this.active;
    const before = this.cell(a.row, a.col);
    if (before) before.tabIndex = -1;
    a.row = Math.min(Math.max(a.row + move[0], 0), this.tasks.length - 1);
    a.col = Math.min(Math.max(a.col + move[1], 0), this.runs.length - 1);
    const y = a.row * ROW;
    const view = this.scroll.clientHeight - 40;
    if (y < this.scroll.scrollTop) this.scroll.scrollTop = y;
    else if (y + ROW > this.scroll.scrollTop + view) this.scroll.scrollTop = y + ROW - view;
    this.draw();
    const cell = this.cell(a.row, a.col);
    if (cell) {
      cell.tabIndex = 0;
      cell.focus();
    }
  }
}
