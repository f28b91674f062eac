// The page: who is signed in, the sign-in form, and which view the address (#/...) shows.
import { api, post, session, ApiError } from './api.js';
import { h, fill, $ } from './dom.js';
import { pipelinesView } from './pipelines.js';
import { pipelineView } from './pipeline.js';
import { runView, runsView } from './run.js';

const ROLES = { viewer: 0, operator: 1, admin: 2 };
const LOST = 'Your sign-in has ended (the daemon restarted, or you signed out elsewhere). Sign in again.';

const app = {
  me: null,  // {name, role}
  may(role) {
    return this.me !== null && ROLES[this.me.role] >= ROLES[role];
  },
  cleanup: null,  // closes the current view's streams and timers
  generation: 0,  // counts the views shown
};

// Routes: #/ pipelines, #/pipelines/NAME[/trigger|/backfill], #/runs, #/runs/ID[/TASK[/ATTEMPT]].
function parse(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter((p) => p !== '').map(decodeURIComponent);
  if (parts.length === 0) return { view: pipelinesView, args: [] };
  if (parts[0] === 'pipelines' && parts.length >= 2) return { view: pipelineView, args: parts.slice(1) };
  if (parts[0] === 'runs' && parts.length === 1) return { view: runsView, args: [] };
  if (parts[0] === 'runs' && parts.length >= 2) return { view: runView, args: parts.slice(1) };
  return null;
}

async function show() {
  const main = $('#main');
  if (app.cleanup) app.cleanup();
  app.cleanup = null;
  if (!app.me) return;
  const route = parse(location.hash);
  if (!route) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '#/' }, 'Pipelines')));
    return;
  }
  // Each view draws into a box of its own: one still loading when the address changes again
  // draws into a box no longer in the page, and its streams are closed as soon as it returns.
  const box = h('div');
  fill(main, box);
  const generation = ++app.generation;
  try {
    const cleanup = await route.view(box, app, ...route.args) || null;
    if (generation === app.generation) {
      app.cleanup = cleanup;
    } else if (cleanup) {
      cleanup();
    }
  } catch (e) {
    if (generation !== app.generation) return;
    if (e instanceof ApiError && e.status === 401) return app.me ? signedOut(LOST) : undefined;  // else: session.lost did
    fill(box, h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
    // The daemon did not answer (it is restarting, say): the view is tried again until it does.
    if (e instanceof ApiError && e.status === 0) {
      box.append(h('p', {}, 'Trying again every few seconds…'));
      const timer = setTimeout(() => { if (generation === app.generation) show(); }, 2000);
      app.cleanup = () => clearTimeout(timer);
    }
  }
}

function showWho() {
  const who = $('#who');
  if (!app.me) return fill(who);
  fill(who, h('span', {}, 'Signed in as ', h('b', {}, app.me.name), ` (${app.me.role})`), ' ',
    h('button', { type: 'button', class: 'link', id: 'sign-out', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  await post('/api/v1/session/end', {}).catch(() => {});
  app.me = null;
  signedOut('Signed out.');
}

// The sign-in form: a token, sent as JSON; the daemon answers with a session cookie.
function signedOut(message) {
  if (app.cleanup) app.cleanup();
  app.cleanup = null;
  app.generation++;
  app.me = null;
  showWho();
  const problem = h('p', { class: 'error', role: 'alert', id: 'sign-in-problem' }, message || '');
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password',
    required: true, spellcheck: 'false', size: 50 });
  const form = h('form', { class: 'card signin', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      app.me = await post('/api/v1/session', { token: input.value });
      input.value = '';
      showWho();
      show();
    } catch (e) {
      fill(problem, e.message);
      input.focus();
    }
  } },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'Open the sign-in address that ', h('code', {}, 'kiln serve'),
    ' printed when it first started, or paste a token (', h('code', {}, 'kiln token new'), ' makes one).'),
  h('label', { for: 'token' }, 'Token'), ' ', input, ' ',
  h('button', { type: 'submit', id: 'sign-in' }, 'Sign in'), problem);
  fill($('#main'), form);
  input.focus();
}

async function start() {
  // A sign-in address that did not work is answered 401 with this page: say so, and drop the
  // token from the address bar and history.
  const params = new URLSearchParams(location.search);
  const badAddress = params.has('token');
  if (badAddress) history.replaceState(null, '', `/${location.hash}`);
  try {
    app.me = await api('/api/v1/session');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      return signedOut(badAddress ? 'That sign-in address is not valid: its token is not known.' : '');
    }
    fill($('#main'), h('p', { class: 'error', role: 'alert' }, e.message));
    return;
  }
  showWho();
  show();
}

// A session found ended while a page is open: sign in again, then the same page is shown.
session.lost = () => {
  if (app.me) signedOut(LOST);
};

window.addEventListener('hashchange', show);
window.addEventListener('DOMContentLoaded', start);
