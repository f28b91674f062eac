// A task attempt's log: its last 256 KiB at once, then followed live while the attempt runs.
// Text goes in as a text node: a log line is never markup.
import { h } from './dom.js';
import { enc } from './api.js';

const TAIL = 256 * 1024;
const KEEP = 2 * 1024 * 1024;  // characters kept in the page; older ones are dropped

export class LogView {
  constructor(run, task, attempt) {
    this.attempt = attempt;
    this.base = `/api/v1/runs/${run}/tasks/${enc(task)}/attempts/${attempt}/log`;
    this.pre = h('pre', { class: 'log', tabindex: 0, 'aria-label': `log of ${task}, attempt ${attempt}`, 'aria-live': 'off' });
    this.status = h('p', { class: 'muted log-status', role: 'status' }, 'Reading the log…');
    this.el = h('div', { class: 'log-box' }, this.status, this.pre);
    this.abort = new AbortController();
    this.offset = 0;
    this.run().catch((e) => {
      if (!this.abort.signal.aborted) this.status.textContent = `The log cannot be read: ${e.message}`;
    });
  }

  close() {
    this.abort.abort();
  }

  add(text) {
    if (!text) return;
    const atEnd = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
    this.pre.append(document.createTextNode(text));
    if (this.pre.textContent.length > KEEP) {
      this.pre.textContent = this.pre.textContent.slice(-KEEP);
    }
    if (atEnd) this.pre.scrollTop = this.pre.scrollHeight;
  }

  async run() {
    const signal = this.abort.signal;
    const get = async (query) => {
      const res = await fetch(`${this.base}?${query}`, { credentials: 'same-origin', signal });
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      return res;
    };
    // How long the log is; a long one is shown from its last 256 KiB.
    const probe = await get('offset=0&limit=1');
    await probe.arrayBuffer();
    const size = Number(probe.headers.get('X-Log-Size') || 0);
    this.offset = Math.max(size - TAIL, 0);
    if (this.offset > 0) this.add(`… (the first ${this.offset} bytes are not shown)\n`);
    // Followed until the attempt has ended and everything is read (a follow that ends while the
    // attempt runs, after minutes of silence, is followed again from where it stopped).
    let finished = false;
    while (!finished && !signal.aborted) {
      const res = await get(`follow=true&offset=${this.offset}`);
      finished = res.headers.get('X-Log-Finished') === 'true';
      if (!finished) {
        this.status.textContent = 'Following the log as the task writes it…';
        this.el.classList.add('following');
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.offset += value.length;
        this.add(decoder.decode(value, { stream: true }));
      }
      this.add(decoder.decode());
    }
    this.el.classList.remove('following');
    this.status.textContent = this.pre.textContent ? 'The attempt has ended; this is its whole log.' : 'The log is empty.';
  }
}
