// Building the page. Every value goes in as a text node or an attribute value through the DOM:
// nothing a pipeline file, a trigger or a task wrote is ever parsed as HTML.

const SVG = 'http://www.w3.org/2000/svg';

// h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more])
export function h(tag, props, ...children) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value' && !svg) el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replaces the children of `el`.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// "2026-11-29T04:10:45.123Z" -> "2026-11-29 04:10:45" in UTC; '' for null.
export function when(instant) {
  if (!instant) return '';
  return instant.replace('T', ' ').replace(/\.\d+Z$/, '').replace(/Z$/, '') + ' UTC';
}

// Milliseconds in words: "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min".
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function bytes(kb) {
  if (kb === null || kb === undefined) return '';
  if (kb < 1024) return `${kb} KiB`;
  if (kb < 1024 * 1024) return `${(kb / 1024).toFixed(1)} MiB`;
  return `${(kb / 1024 / 1024).toFixed(2)} GiB`;
}

export function since(start, end) {
  if (!start) return null;
  return (end ? Date.parse(end) : Date.now()) - Date.parse(start);
}

// Calls `fn` at most once per `ms` while calls keep coming, and once more after the last: a
// steady stream of events never holds it off.
export function throttle(fn, ms) {
  let timer = null;
  let last = 0;
  const wrapped = () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, Math.max(last + ms - Date.now(), 0));
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  return wrapped;
}
