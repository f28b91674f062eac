// The v1 API (docs/api.md) as the page uses it: JSON requests with the session cookie. Changes
// are JSON POSTs, which no other site can make a browser send.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// What the page does when its session is found ended (the daemon restarted, or the browser
// signed out in another tab): app.js sets it.
export const session = { lost: null };

export async function api(path, options = {}) {
  const init = { method: options.method || 'GET', headers: { Accept: 'application/json' },
                 credentials: 'same-origin', cache: 'no-store' };
  if (init.method !== 'GET') {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body || {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'the daemon does not answer (is it running?)');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  // (A refused sign-in is the sign-in form's to report.)
  const signingIn = path.startsWith('/api/v1/session') && init.method !== 'GET';
  if (res.status === 401 && !signingIn && session.lost) session.lost();
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText);
  }
  return data;
}

export const post = (path, body) => api(path, { method: 'POST', body });
export const enc = encodeURIComponent;

// Every kind of event the stream sends (docs/api.md, "Events").
const KINDS = ['run_created', 'run_state', 'task_state', 'fenced', 'run_taken_over',
  'cancel_requested', 'run_retried', 'task_marked', 'pipeline_paused', 'pipeline_unpaused',
  'fire_skipped', 'pipeline_loaded', 'pipeline_load_failed', 'pipeline_removed',
  'backfill_created', 'backfill_cancelled', 'drift_triggered', 'drift_trigger_skipped',
  'drift_trigger_failed', 'model_registered', 'model_registration_failed', 'cache_invalidated',
  'sla_missed', 'notification'];

// Follows /api/v1/events?QUERY; `onEvent(event)` for each, `onOpen()` once the stream's
// starting point is fixed (after a reconnect too: the browser resends Last-Event-ID, so nothing
// is lost). A stream the daemon refuses (its answer is not a stream: the session ended, or too
// many streams are open) is not retried by the browser: then the session is checked, and the
// stream opened again after the last event it delivered. Returns a function that closes it.
export function follow(query, onEvent, onOpen) {
  let last = null;
  let source = null;
  let timer = null;
  let closed = false;
  const handle = (message) => {
    if (message.lastEventId) last = message.lastEventId;
    try {
      onEvent(JSON.parse(message.data));
    } catch (e) {
      console.error('event', e);
    }
  };
  const open = () => {
    const q = last === null ? query : `${query.replace(/(^|&)after=[^&]*/, '')}&after=${last}`.replace(/^&/, '');
    source = new EventSource(`/api/v1/events${q ? `?${q}` : ''}`);
    for (const kind of KINDS) source.addEventListener(kind, handle);
    if (onOpen) source.addEventListener('open', onOpen);
    source.addEventListener('error', () => {
      if (closed) return;
      // Whether the stream is retried by the browser or not, the session is checked (a 401
      // calls session.lost); a refused stream is opened again after its last event.
      const refused = source.readyState === EventSource.CLOSED;
      clearTimeout(timer);
      timer = setTimeout(() => check(refused), refused ? 2000 : 1000);
    });
  };
  // While the daemon does not answer, asks again every 2 s until the stream is open.
  const check = (refused) => api('/api/v1/session').then(() => {
    if (refused && !closed) open();
  }, (e) => {
    if (!closed && e.status === 0 && source.readyState !== EventSource.OPEN) timer = setTimeout(() => check(refused), 2000);
  });
  open();
  return () => {
    closed = true;
    clearTimeout(timer);
    source.close();
  };
}
