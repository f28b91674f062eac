#!/usr/bin/env python3
"""What waiting costs: --tasks wait tasks (kind = "wait", for = "file", every --every) waiting at
once in one `kiln run`, against a throwaway PostgreSQL.

Prints, for a --window of seconds once every task waits:
  the CPU used by kiln (all its threads) and by the PostgreSQL server, as a share of one core;
  how many processes kiln started meanwhile (none: a wait has no attempt);
then creates the file and prints how long the run takes to end from there (every task's next
look finds it), and the time from the start until all tasks waited.

Usage: bench/waits.py [--kiln build-ci/cli/kiln] [--tasks 1000] [--every 30s] [--window 60]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICK


def postgres_pids(data_dir):
    out = subprocess.run(["pgrep", "-f", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def sql(url, query):
    return subprocess.run(["psql", url, "-tAc", query], capture_output=True, text=True,
                          check=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build-ci", "cli", "kiln"))
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--every", default="30s")
    ap.add_argument("--window", type=float, default=60)
    args = ap.parse_args()
    kiln = os.path.abspath(args.kiln)
    work = tempfile.mkdtemp(prefix="kiln-bench-waits-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    subprocess.run([os.path.join(ROOT, "tests", "support", "pg_cluster.sh"), "start", pg],
                   check=True, stdout=subprocess.DEVNULL)
    url = f"postgresql:///kiln_test?host={pg}&user=kiln"
    flag = os.path.join(work, "landing", "_SUCCESS")
    with open(os.path.join(work, "waits.toml"), "w") as f:
        f.write('[pipeline]\nname = "waits"\n\n')
        for i in range(args.tasks):
            f.write(f'[tasks.w{i}]\nkind = "wait"\nfor = "file"\npath = "{flag}"\n'
                    f'every = "{args.every}"\n\n')
    env = dict(os.environ, KILN_DATABASE_URL=url)
    start = time.perf_counter()
    kiln_proc = subprocess.Popen(
        [kiln, "run", "waits.toml", "--data-dir", os.path.join(work, "data")], cwd=work, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            time.sleep(0.2)
            if kiln_proc.poll() is not None:
                sys.exit(f"kiln run ended early ({kiln_proc.returncode})")
            try:
                n = int(sql(url, "select count(*) from task_instances where state = 'waiting'"))
            except subprocess.CalledProcessError:
                continue
            if n == args.tasks:
                break
        all_waiting = time.perf_counter() - start
        pids = postgres_pids(pg)
        k0, p0, t0 = cpu_seconds([kiln_proc.pid]), cpu_seconds(pids), time.perf_counter()
        time.sleep(args.window)
        k1, p1, t1 = cpu_seconds([kiln_proc.pid]), cpu_seconds(pids), time.perf_counter()
        attempts = int(sql(url, "select count(*) from attempts"))
        os.makedirs(os.path.dirname(flag))
        open(flag, "w").close()
        found = time.perf_counter()
        kiln_proc.wait(timeout=600)
        ended = time.perf_counter()
    finally:
        if kiln_proc.poll() is None:
            kiln_proc.kill()
        subprocess.run([os.path.join(ROOT, "tests", "support", "pg_cluster.sh"), "stop", pg],
                       stdout=subprocess.DEVNULL)
    wall = t1 - t0
    print(f"machine: {os.cpu_count()} cores; {args.tasks} wait tasks, a look every {args.every}")
    print(f"all waiting after        {all_waiting:8.2f} s")
    print(f"kiln CPU while waiting   {100 * (k1 - k0) / wall:8.2f} % of one core "
          f"({k1 - k0:.2f} s in {wall:.0f} s)")
    print(f"PostgreSQL CPU           {100 * (p1 - p0) / wall:8.2f} % of one core")
    print(f"processes started        {attempts:8d} (attempts recorded)")
    print(f"file there -> run ended  {ended - found:8.2f} s (next look of every task; "
          f"at most {args.every} plus the commit)")
    print(f"kiln run exit code       {kiln_proc.returncode:8d}")


if __name__ == "__main__":
    main()
