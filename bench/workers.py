#!/usr/bin/env python3
"""Remote workers: claim-to-start latency and throughput through `kiln worker`.

On a throwaway PostgreSQL (tests/support/pg_cluster.sh), with `[executor] mode = "workers"`:

  latency     a chain of N `true` tasks through one worker. From the rows: per attempt, the
              hand-out to the claim (dispatched_at -> claimed_at), the claim to the process's
              start (claimed_at -> the supervisor's started_at), and per hop the upstream's end
              to the downstream's start; p50 / p99 / max. The same chain under the daemon's own
              supervisor (mode "local") gives the hop without workers.
  throughput  N `true` tasks in parallel: one daemon and no worker (its own supervisor runs
              `slots` at a time), one daemon with one worker, then D daemons with W workers
              (each daemon drives one run of N / D tasks): task transitions per second (a start
              and an end per task) over the wall time from the first trigger to the last run's
              end, and the CPU time per task by who spent it (PostgreSQL's processes, kiln's,
              the task processes kiln reaped, the rest of the machine), read from /proc.

Every task is a process (`true`): the figures include one process start per task, which
`bench/scheduling.py` prints for this machine.

  --pgboss    also pg-boss 10 (a job queue on PostgreSQL, bench/pgboss/, installed from npm on
              first use) on the same database: N jobs with W workers fetching batches of `slots`
              and of 100, each job doing nothing or starting one `true` process.

Usage: bench/workers.py [--kiln build/cli/kiln] [--chain 200] [--tasks 2000] [--daemons 3]
                        [--workers 4] [--slots 16] [--pgboss] [--statements]

  --statements  with pg_stat_statements loaded, the statements PostgreSQL spent most time in
                during each throughput run, per task
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "kiln_bench_admin_0123456789"


def http(port, path, method="GET", body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"},
                                 data=body.encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.read().decode()


def sql(url, query):
    return subprocess.run(["psql", url, "-Atc", query], check=True, capture_output=True,
                          text=True).stdout.strip()


def wait_for(what, condition, timeout=600.0, every=0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(every)


class Cluster:
    def __init__(self, kiln, work, url):
        self.kiln, self.work, self.url = kiln, work, url
        self.env = dict(os.environ, KILN_DATABASE_URL=url)
        self.procs = []

    def daemon(self, name, mode, pipelines, slots):
        folder = os.path.join(self.work, name)
        os.makedirs(folder, exist_ok=True)
        digest = hashlib.sha256(TOKEN.encode()).hexdigest()
        with open(os.path.join(folder, "kiln.toml"), "w") as f:
            f.write(f'[executor]\nmax_parallel_tasks = {slots}\nmode = "{mode}"\n'
                    f'run_as = "root"\nrun_uids = ""\n[daemon]\non_stop = "cancel"\n'
                    f'[[auth.tokens]]\nname = "bench"\nrole = "admin"\nsha256 = "{digest}"\n')
        log = open(os.path.join(folder, "serve.log"), "ab")
        proc = subprocess.Popen([self.kiln, "serve", "--config", os.path.join(folder, "kiln.toml"),
                                 "--pipelines", pipelines, "--listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(folder, "data")],
                                env=self.env, stdout=subprocess.PIPE, stderr=log)
        line = proc.stdout.readline().decode()
        if "serving on" not in line:
            sys.exit(f"kiln serve did not start: {line}")
        self.procs.append(proc)
        return int(line.rsplit(":", 1)[1].strip().rstrip("/"))

    def worker(self, name, slots):
        proc = subprocess.Popen([self.kiln, "worker", "--pools", "default", "--slots", str(slots),
                                 "--name", name, "--data-dir", os.path.join(self.work, name)],
                                env=self.env, stdout=subprocess.PIPE,
                                stderr=open(os.path.join(self.work, name + ".log"), "ab"))
        if "runs pools" not in proc.stdout.readline().decode():
            sys.exit("kiln worker did not start")
        self.procs.append(proc)

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait()
        self.procs = []


class CpuMeter:
    """CPU time spent between two snapshots, by who spent it: PostgreSQL's processes, kiln's
    (daemons, workers, supervisors), the task processes they reaped (their children's times),
    and the rest of the machine (this script, processes that ended unreaped)."""
    TICK = 1000.0 / os.sysconf("SC_CLK_TCK")  # ms per clock tick

    @staticmethod
    def snapshot():
        procs = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            fields = text[text.rindex(")") + 2:].split()
            # utime, stime, cutime, cstime are fields 14-17 of stat (1-based), here 11-14.
            procs[pid] = (comm, int(fields[11]) + int(fields[12]),
                          int(fields[13]) + int(fields[14]))
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
        return procs, busy

    @classmethod
    def spent(cls, before, after):
        (p0, busy0), (p1, busy1) = before, after
        out = {"postgres": 0, "kiln": 0, "tasks": 0}
        for pid, (comm, own, children) in p1.items():
            was = p0.get(pid)
            if was is not None and was[0] == comm:
                own, children = own - was[1], children - was[2]
            if comm == "postgres":
                out["postgres"] += own + children
            elif comm.startswith("kiln"):
                out["kiln"] += own
                out["tasks"] += children
        out = {k: v * cls.TICK for k, v in out.items()}
        out["machine"] = (busy1 - busy0) * cls.TICK
        out["other"] = out["machine"] - out["postgres"] - out["kiln"] - out["tasks"]
        return out

    @staticmethod
    def describe(spent, tasks):
        per = {k: v / tasks for k, v in spent.items()}
        return (f"CPU per task: {per['machine']:.2f} ms in all = PostgreSQL {per['postgres']:.2f}"
                f" + kiln {per['kiln']:.2f} + its tasks {per['tasks']:.2f} + other "
                f"{per['other']:.2f}")


def pipeline(folder, name, n, chain):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".toml"), "w") as f:
        f.write(f'[pipeline]\nname = "{name}"\n')
        for i in range(n):
            needs = f'needs = ["t{i - 1}"]\n' if chain and i > 0 else ""
            f.write(f'[tasks.t{i}]\n{needs}command = "true"\n')


def percentiles(values):
    values = sorted(values)
    if not values:
        return "none"
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return f"p50 {pick(0.50):.2f} ms, p99 {pick(0.99):.2f} ms, max {values[-1]:.2f} ms"


def run_state(port, run):
    # From the list (runs without their tasks): reading a run of 20,000 tasks every 50 ms would
    # put the bench's own JSON on the cores it measures.
    for r in json.loads(http(port, "/api/v1/runs?limit=100"))["runs"]:
        if r["id"] == run:
            return r["state"]
    return json.loads(http(port, f"/api/v1/runs/{run}"))["state"]


def run_and_wait(url, port, name):
    # Waiting asks the daemon over HTTP (no process per look: psql would cost a process start
    # every look, on the same cores as what is measured).
    run = json.loads(http(port, f"/api/v1/pipelines/{name}/runs", "POST", "{}"))["id"]
    wait_for(f"run {run}", lambda: run_state(port, run) in ("success", "failed", "cancelled"))
    state = run_state(port, run)
    if state != "success":
        sys.exit(f"run {run} ended {state}")
    return run


def latency(kiln, work, url, n):
    cluster = Cluster(kiln, work, url)
    folder = os.path.join(work, "chain")
    pipeline(folder, "chain", n, True)
    hops = {}
    try:
        for mode in ("local", "workers"):
            port = cluster.daemon("d-" + mode, mode, folder, 16)
            if mode == "workers":
                cluster.worker("w-latency", 4)
            started = time.monotonic()
            run = run_and_wait(url, port, "chain")
            wall = time.monotonic() - started
            # The processes' own times, as their supervisor saw them.
            hop = sql(url, "select string_agg(((b.outcome->>'started_at_ms')::int8 - "
                      "(a.outcome->>'ended_at_ms')::int8) || '', ' ') from attempts a join "
                      "attempts b on b.run_id = a.run_id and b.task_id = 't' || "
                      f"(substr(a.task_id, 2)::int + 1) where a.run_id = {run}").split()
            hops[mode] = [float(v) for v in hop]
            print(f"chain-{n}, {mode:7}: {wall:.2f} s, {wall * 1000 / n:.2f} ms per hop "
                  f"(a process's end -> the next one's start: {percentiles(hops[mode])})")
            if mode == "workers":
                rows = sql(url, "select extract(epoch from (claimed_at - dispatched_at)) * 1000, "
                           "(outcome->>'started_at_ms')::float8 - extract(epoch from claimed_at)"
                           f" * 1000 from attempts where run_id = {run}").splitlines()
                pairs = [tuple(float(x) for x in r.split("|")) for r in rows]
                print(f"  hand-out -> claim:   {percentiles([p[0] for p in pairs])}")
                print(f"  claim -> process:    {percentiles([p[1] for p in pairs])}")
                # Where a hop goes: the worker records the end; the daemon decides the next
                # start (its scheduler's clock, before the commit); a worker claims it; its
                # supervisor starts the process.
                rows = sql(url, "select extract(epoch from h.at) * 1000 - (a.outcome->>"
                           "'ended_at_ms')::float8, extract(epoch from (b.started_at - h.at)) * "
                           "1000, extract(epoch from (b.claimed_at - b.started_at)) * 1000, "
                           "(b.outcome->>'started_at_ms')::float8 - extract(epoch from "
                           "b.claimed_at) * 1000 from attempts a join attempts b on b.run_id = "
                           "a.run_id and b.task_id = 't' || (substr(a.task_id, 2)::int + 1) join "
                           "worker_history h on h.run_id = a.run_id and h.task_id = a.task_id and "
                           f"h.attempt = a.attempt and h.kind = 'end' where a.run_id = {run}"
                           ).splitlines()
                phases = [tuple(float(x) for x in r.split("|")) for r in rows]
                for k, what in enumerate(("end -> recorded by the worker",
                                          "recorded -> next start decided",
                                          "decided -> claimed", "claimed -> process")):
                    print(f"  hop: {what:31} {percentiles([p[k] for p in phases])}")
            cluster.stop()
    finally:
        cluster.stop()


def top_statements(url, tasks, n=10):
    """The statements PostgreSQL spent most time in (pg_stat_statements), per task."""
    rows = sql(url, "select calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') "
               "from pg_stat_statements order by total_exec_time desc limit " + str(n))
    for row in rows.splitlines():
        calls, total, query = row.split("|", 2)
        print(f"    {float(total) / tasks:6.3f} ms/task {int(calls) / tasks:6.2f} calls/task  "
              f"{query[:90]}")


def throughput(kiln, work, url, n, daemons, workers, slots, statements=False):
    # No worker: the daemon's own supervisor runs the tasks, as many at once as one worker.
    for d, w in ((1, 0), (1, 1), (daemons, workers)):
        cluster = Cluster(kiln, work, url)
        try:
            folder = os.path.join(work, f"wide-{d}")
            pipeline(folder, f"wide{d}", n // d, False)
            mode = "workers" if w > 0 else "local"
            ports = [cluster.daemon(f"d{d}-{w}-{i}", mode, folder, slots * max(w, 1))
                     for i in range(d)]
            for i in range(w):
                cluster.worker(f"w{d}-{i}", slots)
            if statements:
                sql(url, "select pg_stat_statements_reset()")
            cpu = CpuMeter.snapshot()
            started = time.monotonic()
            runs = [json.loads(http(p, f"/api/v1/pipelines/wide{d}/runs", "POST", "{}"))["id"]
                    for p in ports]
            ids = ",".join(str(r) for r in runs)
            wait_for("the runs", lambda: all(
                run_state(p, r) in ("success", "failed", "cancelled") for p, r in zip(ports, runs)))
            wall = time.monotonic() - started
            spent = CpuMeter.spent(cpu, CpuMeter.snapshot())
            tasks = (n // d) * d
            failed = sql(url, f"select count(*) from runs where id in ({ids}) and state <> "
                         "'success'")
            who = f"{w} worker(s) x {slots} slots" if w > 0 else f"no worker ({slots} at once)"
            print(f"{d} daemon(s), {who}, {tasks} tasks: {wall:.2f} s, "
                  f"{2 * tasks / wall:.0f} transitions/s ({tasks / wall:.0f} tasks/s)"
                  + (f", {failed} runs not successful" if failed != "0" else ""))
            print("  " + CpuMeter.describe(spent, tasks))
            if statements:
                top_statements(url, tasks)
            if w == 0:
                continue
            # The invariants of the tests, at this size.
            twice = sql(url, "select count(*) from (select 1 from worker_history where kind = "
                        "'claim' and run_id in (" + ids + ") group by run_id, task_id, attempt "
                        "having count(*) > 1) x")
            # A sweep over claims (+1) and ends (-1) in time order, ends first at a tie: the
            # most attempts held at once, in O(n log n) (20,000 tasks in well under a second).
            held = sql(url, "select coalesce(max(held), 0) from (select sum(d) over (order by at, "
                       "d rows unbounded preceding) held from (select claimed_at at, 1 d from "
                       f"attempts where run_id in ({ids}) and pool = 'default' and claimed_at "
                       "is not null union all select ended_at, -1 from attempts where run_id in "
                       f"({ids}) and pool = 'default' and claimed_at is not null and ended_at is "
                       "not null) e) x")
            ended_twice = sql(url, "select count(*) from (select 1 from worker_history where kind "
                              "in ('end', 'refused') and run_id in (" + ids + ") group by run_id, "
                              "task_id, attempt having count(*) > 1) x")
            open_runs = sql(url, f"select count(*) from runs where id in ({ids}) and state in "
                            "('queued', 'running')")
            print(f"  attempts claimed twice: {twice}; ended twice: {ended_twice}; runs not "
                  f"ended: {open_runs}; most held at once: {held} of the pool's {slots * w} slots")
        finally:
            cluster.stop()


def pgboss(pg, n, workers, slots):
    folder = os.path.join(ROOT, "bench", "pgboss")
    if not os.path.isdir(os.path.join(folder, "node_modules", "pg-boss")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=folder,
                       check=True)
    for w, b in ((workers, slots), (16, 100)):
        for mode in ("noop", "process"):
            out = subprocess.run(["node", "bench.mjs", pg, "kiln_test", str(n), str(w), str(b),
                                  mode], cwd=folder, check=True, capture_output=True, text=True)
            print(out.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--chain", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--daemons", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--pgboss", action="store_true")
    ap.add_argument("--statements", action="store_true",
                    help="print the statements PostgreSQL spent most time in (throughput)")
    args = ap.parse_args()
    kiln = os.path.abspath(args.kiln)
    work = tempfile.mkdtemp(prefix="kiln-workers-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    subprocess.run([cluster, "start", pg], check=True)
    url = f"postgresql:///kiln_test?host={pg}&user=kiln"
    if args.statements:
        with open(os.path.join(pg, "data", "postgresql.conf"), "a") as f:
            f.write("shared_preload_libraries = 'pg_stat_statements'\n"
                    "pg_stat_statements.track = all\n")
        subprocess.run([cluster, "halt", pg], check=True)
        subprocess.run([cluster, "resume", pg], check=True)
        sql(url, "create extension pg_stat_statements")
    try:
        latency(kiln, work, url, args.chain)
        throughput(kiln, work, url, args.tasks, args.daemons, args.workers, args.slots,
                   args.statements)
        if args.pgboss:
            pgboss(pg, args.tasks, args.workers, args.slots)
    finally:
        subprocess.run([cluster, "stop", pg], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
