// Forms that change things: a trigger built from the pipeline's declared params, and a backfill.
// Both are sent as JSON; errors from the daemon are shown beside the form.
import { post, enc } from './api.js';
import { h, fill } from './dom.js';

function paramInput(p) {
  const id = `param-${p.name}`;
  const common = { id, name: p.name, dataset: { type: p.type } };
  let input;
  if (p.type === 'boolean') {
    input = h('input', { ...common, type: 'checkbox', checked: p.default === true });
  } else if (p.type === 'integer') {
    input = h('input', { ...common, type: 'number', step: 1, value: String(p.default) });
  } else if (p.type === 'float') {
    input = h('input', { ...common, type: 'number', step: 'any', value: String(p.default) });
  } else {
    input = h('input', { ...common, type: 'text', value: String(p.default), size: 40 });
  }
  return h('div', { class: 'field' },
    h('label', { for: id }, p.name, ' ', h('small', { class: 'muted' }, `(${p.type}, default ${JSON.stringify(p.default)})`)),
    input);
}

function paramValue(input) {
  const type = input.dataset.type;
  if (type === 'boolean') return input.checked;
  if (type === 'integer' || type === 'float') {
    // Sent as the text typed, as a JSON number when it is one: the daemon checks the type and
    // names the param when it does not fit.
    const n = Number(input.value);
    return input.value.trim() !== '' && Number.isFinite(n) ? n : input.value;
  }
  return input.value;
}

// onDone(run) after the run is created.
export function triggerForm(pipeline, onDone) {
  const problem = h('p', { class: 'error', role: 'alert' });
  const fields = pipeline.params.map(paramInput);
  const note = h('input', { id: 'trigger-note', type: 'text', size: 50, maxlength: 1000 });
  const key = h('input', { id: 'trigger-key', type: 'text', size: 40, maxlength: 255 });
  const form = h('form', { class: 'card', id: 'trigger-form', 'aria-labelledby': 'trigger-h',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const params = {};
      for (const input of form.querySelectorAll('[data-type]')) {
        const declared = pipeline.params.find((p) => p.name === input.name);
        const value = paramValue(input);
        if (declared && value !== declared.default) params[input.name] = value;
      }
      const body = { params };
      if (note.value) body.note = note.value;
      if (key.value) body.idempotency_key = key.value;
      try {
        const run = await post(`/api/v1/pipelines/${enc(pipeline.name)}/runs`, body);
        onDone(run);
      } catch (e) {
        fill(problem, e.message);
      }
    } },
  h('h2', { id: 'trigger-h' }, `Trigger ${pipeline.name}`),
  fields.length ? fields : h('p', { class: 'muted' }, 'This pipeline declares no params.'),
  h('div', { class: 'field' }, h('label', { for: 'trigger-note' }, 'Note ', h('small', { class: 'muted' }, '(optional)')), note),
  h('div', { class: 'field' }, h('label', { for: 'trigger-key' }, 'Idempotency key ',
    h('small', { class: 'muted' }, '(optional: the same key never makes a second run)')), key),
  h('button', { type: 'submit', id: 'trigger-submit' }, 'Trigger run'), problem);
  return form;
}

// A datetime-local value, read as UTC, as RFC 3339.
function utc(value) {
  return value.length === 16 ? `${value}:00Z` : `${value}Z`;
}

export function backfillForm(pipeline, onDone) {
  const problem = h('p', { class: 'error', role: 'alert' });
  const from = h('input', { id: 'backfill-from', type: 'datetime-local', required: true });
  const to = h('input', { id: 'backfill-to', type: 'datetime-local', required: true });
  const max = h('input', { id: 'backfill-max', type: 'number', min: 1, max: 1000, step: 1,
    value: String(pipeline.max_active_runs || 1) });
  return h('form', { class: 'card', id: 'backfill-form', 'aria-labelledby': 'backfill-h',
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const b = await post(`/api/v1/pipelines/${enc(pipeline.name)}/backfills`,
          { from: utc(from.value), to: utc(to.value), max_active_runs: Number(max.value) });
        onDone(b);
      } catch (e) {
        fill(problem, e.message);
      }
    } },
  h('h2', { id: 'backfill-h' }, 'Backfill'),
  h('p', { class: 'muted' }, `A run for every fire of "${pipeline.schedule}" from … to … (both included, in UTC).`),
  h('div', { class: 'field' }, h('label', { for: 'backfill-from' }, 'From (UTC)'), from),
  h('div', { class: 'field' }, h('label', { for: 'backfill-to' }, 'To (UTC)'), to),
  h('div', { class: 'field' }, h('label', { for: 'backfill-max' }, 'Runs at once'), max),
  h('button', { type: 'submit', id: 'backfill-submit' }, 'Start backfill'), problem);
}
