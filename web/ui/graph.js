// The DAG as an SVG drawing, laid out by the daemon (Graphviz dot, GET .../graph): each task a
// box coloured and marked by its state, edges as dot drew them. Pan by dragging, zoom with the
// wheel or the buttons; the task table beside it is the keyboard's way to every task.
import { h } from './dom.js';
import { icon, label } from './states.js';

const MIN_SCALE = 0.05;
const MAX_SCALE = 4;

export class DagView {
  // layout: {width, height, nodes: [{id, x, y, width, height}], edges: [{from, to, path}]}
  constructor(layout, { href, states } = {}) {
    this.nodes = new Map();
    this.layout = layout;
    const edges = h('svg:g', { class: 'edges' }, layout.edges.map((e) =>
      h('svg:path', { d: e.path, class: 'edge', 'marker-end': 'url(#arrow)', dataset: { from: e.from, to: e.to } })));
    const focusable = layout.nodes.length <= 300;
    // Three elements a task (link, box, text): a 2,000-task graph is drawn in well under a second.
    // The tooltip (a <title>) is made when the pointer first comes over a task.
    const nodes = h('svg:g', { class: 'nodes', onpointerover: (ev) => this.tip(ev) }, layout.nodes.map((n) => {
      const state = (states && states.get(n.id)) || 'none';
      const box = h('svg:rect', { x: n.x, y: n.y, width: n.width, height: n.height, rx: 4 });
      const text = h('svg:text', { x: n.x + 8, y: n.y + n.height / 2 }, states ? `${icon(state)} ${n.id}` : n.id);
      const g = h(href ? 'svg:a' : 'svg:g', {
        class: `node st-${state}`, dataset: { task: n.id, state },
        href: href ? href(n.id) : null, tabindex: focusable ? 0 : -1,
        'aria-label': `${n.id}: ${label(state)}`,
      }, box, text);
      this.nodes.set(n.id, { g, text, title: null });
      return g;
    }));
    const defs = h('svg:defs', {}, h('svg:marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, h('svg:path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' })));
    this.world = h('svg:g', {}, edges, nodes);
    this.svg = h('svg:svg', { class: 'dag', role: 'group', 'aria-label': 'the pipeline as a graph', width: '100%' },
      defs, this.world);
    this.view = { x: 0, y: 0, scale: 1 };
    this.el = h('div', { class: 'dag-box' },
      h('div', { class: 'dag-tools' },
        h('button', { type: 'button', onclick: () => this.zoom(1.25), 'aria-label': 'zoom in' }, '+'),
        h('button', { type: 'button', onclick: () => this.zoom(0.8), 'aria-label': 'zoom out' }, '−'),
        h('button', { type: 'button', onclick: () => this.fit() }, 'Fit')),
      this.svg);
    this.wire();
  }

  // Colours and marks a task by its state.
  set(task, state) {
    const n = this.nodes.get(task);
    if (!n || n.g.dataset.state === state) return;
    n.g.setAttribute('class', `node st-${state}`);
    n.g.dataset.state = state;
    n.text.textContent = `${icon(state)} ${task}`;
    if (n.title) n.title.textContent = `${task}: ${label(state)}`;
    n.g.setAttribute('aria-label', `${task}: ${label(state)}`);
  }

  tip(ev) {
    const g = ev.target.closest('.node');
    const n = g && this.nodes.get(g.dataset.task);
    if (!n || n.title) return;
    n.title = h('svg:title', {}, `${g.dataset.task}: ${label(g.dataset.state)}`);
    g.prepend(n.title);
  }

  // The drawing's height follows its content, within limits; call once it is in the page.
  fit() {
    const width = this.svg.clientWidth || 800;
    const { layout } = this;
    const scale = Math.max(Math.min(width / (layout.width + 20), 1.2), 0.35);
    const height = Math.min(Math.max(layout.height * scale + 20, 120), 600);
    this.svg.setAttribute('height', height);
    this.view = { x: -10, y: -10, scale };
    this.apply();
  }

  zoom(factor, cx, cy) {
    const v = this.view;
    const scale = Math.min(Math.max(v.scale * factor, MIN_SCALE), MAX_SCALE);
    const px = cx === undefined ? this.svg.clientWidth / 2 : cx;
    const py = cy === undefined ? this.svg.clientHeight / 2 : cy;
    // Keep the world point under (px, py) where it is.
    v.x += px / v.scale - px / scale;
    v.y += py / v.scale - py / scale;
    v.scale = scale;
    this.apply();
  }

  apply() {
    const v = this.view;
    this.world.setAttribute('transform', `scale(${v.scale}) translate(${-v.x} ${-v.y})`);
  }

  wire() {
    this.svg.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      const r = this.svg.getBoundingClientRect();
      this.zoom(ev.deltaY < 0 ? 1.15 : 1 / 1.15, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    let drag = null;
    this.svg.addEventListener('pointerdown', (ev) => {
      if (ev.target.closest('a')) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: this.view.x, vy: this.view.y };
      this.svg.setPointerCapture(ev.pointerId);
    });
    this.svg.addEventListener('pointermove', (ev) => {
      if (!drag) return;
      this.view.x = drag.vx - (ev.clientX - drag.x) / this.view.scale;
      this.view.y = drag.vy - (ev.clientY - drag.y) / this.view.scale;
      this.apply();
    });
    this.svg.addEventListener('pointerup', () => { drag = null; });
  }
}
