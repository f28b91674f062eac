// pg-boss (a job queue on PostgreSQL) on the same database, for comparison with kiln's workers
// (bench/workers.py runs it). Inserts N jobs, then W workers (each fetching batches of B) work
// them off; a job's handler does nothing ("noop") or starts one `true` process ("process", as a
// kiln task does). Prints jobs per second and state transitions per second (active, completed:
// two per job, as a kiln task's start and end) from the first fetch to the last completion.
//
// Usage: node bench.mjs SOCKET_DIR DATABASE N W B noop|process
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import PgBoss from 'pg-boss';

const [host, database, n, workers, batch, mode] = process.argv.slice(2);
const N = Number(n), W = Number(workers), B = Number(batch);
const run = promisify(execFile);
const boss = new PgBoss({ host, database, user: 'kiln', max: W + 4, schema: 'pgboss' });
boss.on('error', (e) => console.error('pg-boss:', e.message));
await boss.start();
const queue = `bench_${mode}_${process.pid}`;
await boss.createQueue(queue);
const inserted = performance.now();
for (let i = 0; i < N; i += 1000) {
  const jobs = [];
  for (let j = i; j < Math.min(N, i + 1000); j++) jobs.push({ name: queue, data: { i: j } });
  await boss.insert(jobs);
}
const ready = performance.now();
let done = 0;
let finish;
const finished = new Promise((resolve) => { finish = resolve; });
const started = performance.now();
for (let w = 0; w < W; w++) {
  await boss.work(queue, { batchSize: B, pollingIntervalSeconds: 0.5 }, async (jobs) => {
    if (mode === 'process') await Promise.all(jobs.map(() => run('/bin/true')));
    done += jobs.length;
    // Completed once the handler returns; the last batch is counted after pg-boss commits it.
    if (done >= N) setTimeout(finish, 0);
  });
}
await finished;
// Wait for the completions to be committed (pg-boss completes a batch after its handler).
while ((await boss.getQueueSize(queue, { before: 'completed' })) > 0) {
  await new Promise((r) => setTimeout(r, 5));
}
const seconds = (performance.now() - started) / 1000;
console.log(`pg-boss 10.4.2, ${W} workers x batches of ${B}, ${N} jobs (${mode}): ` +
  `${seconds.toFixed(2)} s, ${Math.round((2 * N) / seconds)} transitions/s ` +
  `(${Math.round(N / seconds)} jobs/s); inserting them: ${((ready - inserted) / 1000).toFixed(2)} s`);
await boss.stop({ graceful: false, wait: false });
process.exit(0);
