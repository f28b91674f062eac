// The v1 API (docs/api.md) as the page uses it: JSON requests with the session cookie. Changes
// are JSON POSTs, which no other site can make a browser send.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

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
  'backfill_created', 'backfill_cancelled'];

// Follows /api/v1/events?QUERY; `onEvent(event)` for each, `onOpen()` once the stream's
// starting point is fixed (after a reconnect too: the browser resends Last-Event-ID, so nothing
// is lost). Returns a function that closes the stream.
export function follow(query, onEvent, onOpen) {
  const source = new EventSource(`/api/v1/events${query ? `?${query}` : ''}`);
  const handle = (message) => {
    try {
      onEvent(JSON.parse(message.data));
    } catch (e) {
      console.error('event', e);
    }
  };
  for (const kind of KINDS) source.addEventListener(kind, handle);
  if (onOpen) source.addEventListener('open', onOpen);
  return () => source.close();
}
