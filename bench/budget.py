#!/usr/bin/env python3
"""Where the CPU of a run goes, against ninja, and PostgreSQL's floor for one durable commit.

The ratio to ninja that bench/scheduling.py prints is a wall time. On shapes where both cores
are busy (fanout-1000, layered-2000) the wall time follows the CPU, so a ratio of 1.2x leaves
kiln and PostgreSQL together a budget of CPU per task:

    budget = (cores x 1.2 x ninja's wall - ninja's CPU) / tasks

where ninja's CPU is the machine's busy time while ninja runs (its tasks and ninja itself).
This bench measures, on the same shapes as bench/scheduling.py:
  - the machine's busy CPU of `kiln run -j 2` and of `ninja -j2`, from /proc/stat, and of it
    PostgreSQL's (the postmaster, its live children and the children it reaped);
  - kiln's extra CPU per task over ninja's, and PostgreSQL's part of it, against the budget;
  - PostgreSQL's own CPU for one commit of one prepared single-row UPDATE (pgbench, one
    session, synchronous_commit on): the least that any design recording each transition in
    its own commit pays per commit here, and the same with five updates per commit.
On chain-500 one task runs at a time, so the budget there is wall time, not CPU: 0.2 x
ninja's time per hop.

Usage: bench/budget.py [--kiln build/cli/kiln] [--repeat 3] [--shapes fanout-1000,...]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scheduling  # noqa: E402  (the shapes and helpers of the scheduling bench)

ROOT = scheduling.ROOT
CLK = os.sysconf("SC_CLK_TCK")


def busy_ticks():
    """The machine's busy time so far, in clock ticks (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def proc_ticks(pid, reaped=False):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])  # utime, stime
    if reaped:
        ticks += int(rest[13]) + int(rest[14])  # cutime, cstime: the children it waited for
    return ticks


class Postgres:
    """The CPU of one PostgreSQL server: its postmaster, the children it reaped (backends of
    closed connections, autovacuum workers) and those alive now."""

    def __init__(self, data_dir):
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            self.pid = int(f.readline())

    def children(self):
        """{pid: (state, ticks)} of the postmaster's children now."""
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                if int(rest[1]) == self.pid:  # ppid
                    out[int(entry)] = (rest[0], int(rest[11]) + int(rest[12]))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile: its ticks are in the postmaster's reaped ones
        return out

    def ticks(self, settle_from=None):
        """The server's ticks so far. With settle_from (the children before a client ran), first
        waits until the client's backends have ended and been reaped: a child that exited but
        was not yet reaped shows no ticks of its own and is not yet in the postmaster's."""
        deadline = time.monotonic() + 10
        while settle_from is not None and time.monotonic() < deadline:
            now = self.children()
            if all(state != "Z" for state, _ in now.values()) and set(now) <= set(settle_from):
                break
            time.sleep(0.01)
        return proc_ticks(self.pid, reaped=True) + sum(t for _, t in self.children().values())


def accounted(cmd, cwd, env, pg):
    """Runs cmd; returns (wall seconds, the machine's busy ms, PostgreSQL's ms)."""
    before = pg.children()
    p0, b0 = pg.ticks(), busy_ticks()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    p1 = pg.ticks(settle_from=before)  # waits for its backends (and any vacuum it set off)
    b1 = busy_ticks()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with {proc.returncode}:\n"
                 f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return wall, (b1 - b0) * 1000 / CLK, (p1 - p0) * 1000 / CLK


def pgbench_floor(pg_dir, pg, per_commit, commits=3000):
    """PostgreSQL's CPU in ms per UPDATE, `per_commit` prepared single-row updates a commit."""
    bins = os.environ.get("PG_BIN_DIR") or max(
        (d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                     for v in os.listdir("/usr/lib/postgresql")) if os.path.isdir(d)),
        key=lambda d: int(d.split("/")[-2]))  # as tests/support/pg_cluster.sh picks it
    pgbench = os.path.join(bins, "pgbench")
    script = os.path.join(pg_dir, f"floor{per_commit}.sql")
    with open(script, "w") as f:
        f.write("\\set id random(1, 90000)\nBEGIN;\n")
        for i in range(per_commit):
            f.write(f"UPDATE floor SET state = 'running', at = now() WHERE id = :id + {i};\n")
        f.write("COMMIT;\n")
    cmd = [pgbench, "-n", "-M", "prepared", "-f", script, "-t", str(commits // per_commit),
           "-h", pg_dir, "-U", "kiln", "kiln_test"]
    before = pg.children()
    p0 = pg.ticks()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (pg.ticks(settle_from=before) - p0) * 1000 / CLK / commits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shapes", default="",
                    help="comma-separated shapes to run (chain-500, fanout-1000, layered-2000)")
    args = ap.parse_args()
    scheduling.SELECTED.update(s for s in args.shapes.split(",") if s)
    kiln = os.path.abspath(args.kiln)
    ninja = shutil.which("ninja")
    if not ninja:
        sys.exit("ninja not found")
    cores = os.cpu_count()

    work = tempfile.mkdtemp(prefix="kiln-budget-")
    os.chmod(work, 0o755)
    pg_dir = os.path.join(work, "pg")
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    subprocess.run([cluster, "start", pg_dir], check=True)
    url = f"postgresql:///kiln_test?host={pg_dir}&user=kiln"
    env = dict(os.environ, KILN_DATABASE_URL=url)
    pg = Postgres(os.path.join(pg_dir, "data"))
    try:
        print(f"machine: {cores} cores; kiln -j 2, ninja -j2; medians of {args.repeat}; "
              f"one process start: /bin/true from Python {scheduling.process_start_ms():.2f} ms")
        subprocess.run(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", url, "-c",
                        "CREATE TABLE floor (id int PRIMARY KEY, state text, at timestamptz); "
                        "INSERT INTO floor SELECT g, 'pending', now() "
                        "FROM generate_series(1, 100000) g"], check=True)
        one = statistics.median(pgbench_floor(pg_dir, pg, 1) for _ in range(3))
        five = statistics.median(pgbench_floor(pg_dir, pg, 5) for _ in range(3))
        print(f"PostgreSQL's CPU for one prepared single-row UPDATE: {one:.3f} ms in a commit of "
              f"its own, {five:.3f} ms five to a commit (pgbench, synchronous_commit on)")
        print(f"{'shape':<14} {'kiln':>8} {'ninja':>8} {'ratio':>6} {'ninja CPU':>10}"
              f" {'kiln CPU':>9} {'extra':>7} {'of it PG':>9} {'budget':>7}   ms per task")
        for name, tasks in scheduling.shapes().items():
            folder = os.path.join(work, name)
            os.mkdir(folder)
            scheduling.write_pipeline(os.path.join(folder, "pipeline.toml"), name, tasks)
            scheduling.write_ninja(os.path.join(folder, "build.ninja"), tasks)
            k_runs, n_runs = [], []
            for _ in range(args.repeat):
                scheduling.fresh_out(folder)
                k_runs.append(accounted([kiln, "run", "pipeline.toml", "-j", "2", "--data-dir",
                                         os.path.join(work, "data")], folder, env, pg))
                scheduling.fresh_out(folder)
                if os.path.exists(os.path.join(folder, ".ninja_log")):
                    os.remove(os.path.join(folder, ".ninja_log"))
                n_runs.append(accounted([ninja, "-j2", "-f", "build.ninja"], folder, env, pg))
            n = len(tasks)
            k_wall, k_busy, k_pg = (statistics.median(r[i] for r in k_runs) for i in range(3))
            n_wall, n_busy, _ = (statistics.median(r[i] for r in n_runs) for i in range(3))
            if name.startswith("chain"):
                budget = 0.2 * n_wall * 1000 / n  # one task at a time: wall per hop
                mark = " (wall)"
            else:
                budget = (cores * 1.2 * n_wall * 1000 - n_busy) / n
                mark = ""
            print(f"{name:<14} {k_wall:>7.3f}s {n_wall:>7.3f}s {k_wall / n_wall:>5.2f}x"
                  f" {n_busy / n:>10.2f} {k_busy / n:>9.2f} {(k_busy - n_busy) / n:>7.2f}"
                  f" {k_pg / n:>9.2f} {budget:>7.2f}{mark}")
    finally:
        subprocess.run([cluster, "stop", pg_dir], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
