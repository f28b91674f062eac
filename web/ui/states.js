// States are told apart by an icon and a word as well as by colour.
import { h } from './dom.js';

const STATES = {
  pending: ['○', 'pending'],
  queued: ['◔', 'queued'],
  running: ['▶', 'running'],
  up_for_retry: ['↻', 'up for retry'],
  success: ['✓', 'success'],
  failed: ['✗', 'failed'],
  skipped: ['»', 'skipped'],
  upstream_failed: ['⚠', 'upstream failed'],
  cancelled: ['■', 'cancelled'],
  waiting: ['◷', 'waiting'],
  none: ['·', 'not in this run'],
};

// The grid endpoint's one-letter codes (docs/api.md, "Grid").
export const CODES = { p: 'pending', q: 'queued', r: 'running', u: 'up_for_retry', s: 'success',
  f: 'failed', k: 'skipped', x: 'upstream_failed', c: 'cancelled', w: 'waiting', '.': 'none' };

// A state's letter in the grid.
export const LETTERS = Object.fromEntries(Object.entries(CODES).map(([letter, state]) => [state, letter]));

export function icon(state) {
  return (STATES[state] || ['?'])[0];
}

export function label(state) {
  return (STATES[state] || [null, state])[1];
}

// A badge: icon and word, coloured.
export function badge(state) {
  return h('span', { class: `badge st-${state}` }, h('span', { 'aria-hidden': 'true' }, icon(state)),
    ' ', label(state));
}

// A small square with the icon; its name is the state (and `title` says more).
export function square(state, title, href) {
  const props = { class: `sq st-${state}`, title: title || label(state), 'aria-label': title || label(state) };
  if (href) return h('a', { ...props, href }, icon(state));
  return h('span', { ...props, role: 'img' }, icon(state));
}

export const ACTIVE = new Set(['queued', 'running']);
