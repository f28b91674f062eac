// Runs × tasks, coloured by state, as in Airflow's grid: a row per task, a column per run (the
// newest at the right). The cells are painted on a canvas the size of the view, so 2,000 tasks ×
// 100 runs scroll as smoothly as 20: a scroll step repaints what is in view, nothing more. Each
// state has its colour and its icon (states.js).
// Keyboard and assistive technology: one real link lies over the current cell; Tab reaches it,
// the arrows, Home/End and Page Up/Down move it, Enter opens that task in that run, and its
// label says task, run and state. Pointer: a click opens the cell, hovering names it.
import { h } from './dom.js';
import { CODES, LETTERS, icon, label, square } from './states.js';
import { enc } from './api.js';

const ROW = 20;   // px per task
const COL = 20;   // px per run
const NAME = 200; // px of the task names
const PAGE = 20;  // rows per Page Up/Down
const HEAD = 24;  // px of the runs' heads (app.css .grid-head)

// The colours of the states, from app.css.
function colours() {
  const css = getComputedStyle(document.documentElement);
  const pick = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    pending: pick('--pending', '#6b7280'), queued: pick('--queued', '#7a5b00'), running: pick('--running', '#1f5fbf'),
    up_for_retry: pick('--retry', '#a15c00'), success: pick('--success', '#1f7a3a'), failed: pick('--failed', '#b3261e'),
    skipped: pick('--skipped', '#6d5a9c'), upstream_failed: pick('--upstream', '#c2410c'),
    cancelled: pick('--cancelled', '#4b5563'), waiting: pick('--waiting', '#0e7490'), none: '#eef0f3',
  };
}

// One small canvas per state with its square and icon, copied into place for each cell.
function sprites(ratio) {
  const fill = colours();
  const out = {};
  for (const [code, state] of Object.entries(CODES)) {
    const c = document.createElement('canvas');
    c.width = COL * ratio;
    c.height = ROW * ratio;
    const g = c.getContext('2d');
    g.scale(ratio, ratio);
    g.fillStyle = fill[state];
    g.beginPath();
    if (g.roundRect) g.roundRect(2, 2, COL - 4, ROW - 4, 3);
    else g.rect(2, 2, COL - 4, ROW - 4);  // browsers from before 2023
    g.fill();
    g.fillStyle = state === 'none' ? '#9aa3ae' : '#fff';
    g.font = '11px system-ui, sans-serif';
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(icon(state), COL / 2, ROW / 2 + 0.5);
    out[code] = c;
  }
  return out;
}

export class Grid {
  // tasks: ids in pipeline order; runs: oldest first, each {id, state, tasks: "sf.."}; at: the
  // cell to start on ({run, task} as where() gave it; default: the first task of the newest run).
  constructor(tasks, runs, at) {
    this.tasks = tasks;
    this.runs = runs;
    this.rowOf = new Map(tasks.map((t, i) => [t, i]));
    this.colOf = new Map(runs.map((r, i) => [r.id, i]));
    this.active = { row: 0, col: Math.max(runs.length - 1, 0) };
    if (at && this.rowOf.has(at.task) && this.colOf.has(at.run)) {
      this.active = { row: this.rowOf.get(at.task), col: this.colOf.get(at.run) };
    }
    const width = NAME + runs.length * COL;
    this.head = h('div', { class: 'grid-head' },
      h('span', { class: 'grid-name' }, 'task \\ run'),
      runs.map((r) => h('span', { class: 'grid-col' },
        square(r.state, `run ${r.id}: ${label(r.state)}`, `#/runs/${r.id}`))));
    this.head.style.width = `${width}px`;
    this.canvas = h('canvas', { class: 'grid-canvas', 'aria-hidden': 'true',
      onclick: (ev) => this.click(ev), onmousemove: (ev) => this.hover(ev) });
    this.focus = h('a', { class: 'grid-focus', onkeydown: (ev) => this.key(ev),
      onfocus: () => this.paint(), onblur: () => this.paint() });
    this.spacer = h('div');
    this.body = h('div', { class: 'grid-body' }, this.canvas, this.spacer, this.focus);
    this.body.style.width = `${width}px`;
    this.scroll = h('div', { class: 'grid-scroll', role: 'group', 'aria-label': 'tasks by run',
      onscroll: () => this.schedule() }, this.head, this.body);
    this.scroll.style.maxHeight = `${Math.min(tasks.length * ROW + HEAD + 24, 560)}px`;
    this.el = h('div', { class: 'grid-box' },
      h('p', { class: 'muted grid-help', id: 'grid-help' },
        'Arrow keys move between cells, Enter opens one; the newest run is on the right.'),
      this.scroll);
    this.focus.setAttribute('aria-describedby', 'grid-help');
    this.frame = null;
    this.ratio = 0;
    this.place();
  }

  // Call once the grid is in the page.
  start() {
    new ResizeObserver(() => this.schedule()).observe(this.scroll);
    this.paint();
  }

  schedule() {
    if (this.frame === null) this.frame = requestAnimationFrame(() => { this.frame = null; this.paint(); });
  }

  // The current cell, and whether it has the focus.
  where() {
    const run = this.runs[this.active.col];
    return { run: run && run.id, task: this.tasks[this.active.row], focused: document.activeElement === this.focus };
  }

  // A task's new state in a run, from the event stream: false when the grid has no such cell
  // (a new run: the caller reads the grid again).
  set(runId, task, state) {
    const col = this.colOf.get(runId);
    const row = this.rowOf.get(task);
    if (col === undefined || row === undefined) return false;
    const run = this.runs[col];
    const letter = LETTERS[state] || '.';
    if (run.tasks[row] === letter) return true;
    run.tasks = run.tasks.slice(0, row) + letter + run.tasks.slice(row + 1);
    if (row === this.active.row && col === this.active.col) this.place();
    this.schedule();
    return true;
  }

  code(row, col) {
    return this.runs[col].tasks[row] || '.';
  }

  describe(row, col) {
    const run = this.runs[col];
    return `${this.tasks[row]}, run ${run.id}: ${label(CODES[this.code(row, col)] || 'none')}`;
  }

  href(row, col) {
    if (this.code(row, col) === '.') return null;
    return `#/runs/${this.runs[col].id}/${enc(this.tasks[row])}`;
  }

  // The link over the current cell: its place, address and label.
  place() {
    const { row, col } = this.active;
    if (this.tasks.length === 0 || this.runs.length === 0) return;
    this.focus.style.left = `${NAME + col * COL}px`;
    this.focus.style.top = `${row * ROW}px`;
    const href = this.href(row, col);
    if (href) this.focus.setAttribute('href', href);
    else this.focus.removeAttribute('href');
    this.focus.tabIndex = 0;
    this.focus.setAttribute('aria-label', this.describe(row, col));
  }

  // Paints the cells in view: names on the left, then the runs' cells.
  paint() {
    const ratio = window.devicePixelRatio || 1;
    if (ratio !== this.ratio) {
      this.ratio = ratio;
      this.sprites = sprites(ratio);
    }
    const s = this.scroll;
    const width = s.clientWidth;
    const height = Math.max(Math.min(s.clientHeight - HEAD, this.tasks.length * ROW), 0);
    const c = this.canvas;
    if (c.width !== width * ratio || c.height !== height * ratio) {
      c.width = width * ratio;
      c.height = height * ratio;
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
      this.spacer.style.height = `${Math.max(this.tasks.length * ROW - height, 0)}px`;
    }
    const g = c.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const top = s.scrollTop;
    const left = s.scrollLeft;
    const first = Math.floor(top / ROW);
    const last = Math.min(Math.ceil((top + height) / ROW), this.tasks.length);
    const firstCol = Math.floor(left / COL);
    const lastCol = Math.min(Math.ceil((left + width - NAME) / COL), this.runs.length);
    g.save();
    g.beginPath();
    g.rect(NAME, 0, width - NAME, height);
    g.clip();
    for (let r = first; r < last; r++) {
      const y = r * ROW - top;
      for (let col = firstCol; col < lastCol; col++) {
        g.drawImage(this.sprites[this.code(r, col)] || this.sprites['.'], NAME + col * COL - left, y, COL, ROW);
      }
    }
    g.restore();
    g.fillStyle = '#1d2430';
    g.font = '12px monospace';
    g.textBaseline = 'middle';
    for (let r = first; r < last; r++) {
      const y = r * ROW - top;
      if (r === this.active.row) {
        g.fillStyle = '#fff3e6';
        g.fillRect(0, y, NAME, ROW);
        g.fillStyle = '#1d2430';
      }
      g.fillText(this.clip(g, this.tasks[r]), 6, y + ROW / 2);
    }
  }

  // A name cut to the width of the names, with an ellipsis.
  clip(g, text) {
    const room = NAME - 12;
    if (g.measureText(text).width <= room) return text;
    let n = text.length;
    while (n > 1 && g.measureText(`${text.slice(0, n)}…`).width > room) n--;
    return `${text.slice(0, n)}…`;
  }

  // The cell under a pointer event, or null.
  at(ev) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const y = ev.clientY - rect.top;
    if (x < NAME) return null;
    const row = Math.floor((y + this.scroll.scrollTop) / ROW);
    const col = Math.floor((x - NAME + this.scroll.scrollLeft) / COL);
    if (row < 0 || row >= this.tasks.length || col < 0 || col >= this.runs.length) return null;
    return { row, col };
  }

  hover(ev) {
    const cell = this.at(ev);
    const text = cell ? this.describe(cell.row, cell.col) : '';
    if (this.canvas.title !== text) this.canvas.title = text;
    this.canvas.style.cursor = cell && this.href(cell.row, cell.col) ? 'pointer' : 'default';
  }

  click(ev) {
    const cell = this.at(ev);
    if (!cell) return;
    this.active = cell;
    this.place();
    const href = this.href(cell.row, cell.col);
    if (href) location.hash = href;
  }

  key(ev) {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      Home: [0, -1e9], End: [0, 1e9], PageUp: [-PAGE, 0], PageDown: [PAGE, 0] };
    const move = moves[ev.key];
    if (!move) return;
    ev.preventDefault();
    const a = this.active;
    a.row = Math.min(Math.max(a.row + move[0], 0), this.tasks.length - 1);
    a.col = Math.min(Math.max(a.col + move[1], 0), this.runs.length - 1);
    this.place();
    // Keep the cell in view, clear of the task names and the runs' heads.
    const s = this.scroll;
    const y = a.row * ROW;
    const view = s.clientHeight - HEAD;
    if (y < s.scrollTop) s.scrollTop = y;
    else if (y + ROW > s.scrollTop + view) s.scrollTop = y + ROW - view;
    const x = a.col * COL;
    const across = s.clientWidth - NAME;
    if (x < s.scrollLeft) s.scrollLeft = x;
    else if (x + COL > s.scrollLeft + across) s.scrollLeft = x + COL - across;
    this.schedule();
  }
}
