// A table of many rows in a scroll box: only the rows in view (and a few around them) are in the
// page, between two spacer rows that keep the scroll bar true. Rows keep one height (app.css
// .vtable), so a row's place is its index times that height. It stays a <table>: headers, row
// headers and aria-rowcount/aria-rowindex tell assistive technology where a row is.
import { h } from './dom.js';

const SPARE = 6;  // rows drawn beyond the view on each side

export class VirtualTable {
  // columns: header texts; count: rows; make(i): the <tr> of row i (its cells only: the table sets
  // the rest); height: of the scroll box at most, in px.
  constructor({ id, className, label, columns, count, make, height = 480 }) {
    this.make = make;
    this.count = count;
    this.rowHeight = 32;  // until a drawn row says otherwise
    this.body = h('tbody');
    this.table = h('table', { class: `list vtable ${className || ''}`, id, 'aria-label': label,
      'aria-rowcount': count + 1 },
    h('thead', {}, h('tr', { 'aria-rowindex': 1 }, columns.map((c) => h('th', { scope: 'col' }, c)))), this.body);
    this.el = h('div', { class: 'vtable-scroll', onscroll: () => this.schedule() }, this.table);
    this.el.style.maxHeight = `${height}px`;
    this.top = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: columns.length }));
    this.bottom = h('tr', { class: 'spacer', 'aria-hidden': 'true' }, h('td', { colspan: columns.length }));
    this.drawn = new Map();  // row index -> its <tr>
    this.range = [0, 0];
    this.frame = null;
    this.draw(true);
  }

  // Call once the table is in the page: from then on it follows the size of its box.
  start() {
    new ResizeObserver(() => this.schedule()).observe(this.el);
  }

  schedule() {
    if (this.frame === null) this.frame = requestAnimationFrame(() => { this.frame = null; this.draw(); });
  }

  // The rows in view; rows that stay keep their elements.
  draw(force) {
    const top = this.el.scrollTop;
    const view = this.el.clientHeight || Number.parseInt(this.el.style.maxHeight, 10);
    const first = Math.max(Math.floor(top / this.rowHeight) - SPARE, 0);
    const last = Math.min(Math.ceil((top + view) / this.rowHeight) + SPARE, this.count);
    if (!force && first === this.range[0] && last === this.range[1]) return;
    this.range = [first, last];
    const rows = [];
    const kept = new Map();
    for (let i = first; i < last; i++) {
      const row = this.drawn.get(i) || this.row(i);
      kept.set(i, row);
      rows.push(row);
    }
    this.drawn = kept;
    this.top.style.height = `${first * this.rowHeight}px`;
    this.bottom.style.height = `${(this.count - last) * this.rowHeight}px`;
    this.body.replaceChildren(this.top, ...rows, this.bottom);
  }

  row(i) {
    const tr = this.make(i);
    tr.setAttribute('aria-rowindex', i + 2);
    return tr;
  }

  // Row i again, if it is drawn.
  redraw(i) {
    const old = this.drawn.get(i);
    if (!old) return;
    const fresh = this.row(i);
    old.replaceWith(fresh);
    this.drawn.set(i, fresh);
  }

  // Every drawn row again (their data changed), and the count.
  redrawAll(count = this.count) {
    this.count = count;
    this.table.setAttribute('aria-rowcount', count + 1);
    this.drawn.clear();
    this.draw(true);
  }

  // Scrolls row i into view.
  show(i) {
    const y = i * this.rowHeight;
    const view = this.el.clientHeight - this.rowHeight;  // the header row
    if (y < this.el.scrollTop) this.el.scrollTop = y;
    else if (y + this.rowHeight > this.el.scrollTop + view) this.el.scrollTop = y + this.rowHeight - view;
    this.draw();
  }
}
