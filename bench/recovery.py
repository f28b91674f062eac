#!/usr/bin/env python3
"""Recovery: how long a restarted daemon takes to adopt 1,000 running tasks.

Starts `kiln serve` on a throwaway PostgreSQL with one pipeline of N parallel tasks that each
sleep for an hour (pool and parallel limit N), triggers it, waits until all N attempts run under
the supervisor, SIGKILLs the daemon, starts it again and measures:
  - adoption: from the new daemon's start until its /metrics report N attempts adopted;
  - cancel: from the cancel request until the run is cancelled (N processes stopped, N ends
    committed);
and the daemon's and the supervisor's resident memory with N tasks running.

Usage: bench/recovery.py [--kiln build/cli/kiln] [--tasks 1000]
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


def supervised(records):
    """How many attempts the supervisor's journal (executor/attempt_journal.h) holds running."""
    journals = sorted((int(f.split(".")[1]), f) for f in os.listdir(records)
                      if f.startswith("journal.") and f.split(".")[1].isdigit()) \
        if os.path.isdir(records) else []
    for _, name in reversed(journals):
        with open(os.path.join(records, name)) as f:
            lines = f.read().split("\n")[:-1]
        if "C" not in lines:
            continue
        running = {}
        for line in lines:
            kind, _, rest = line.partition(" ")
            name = rest.rsplit(" ", 1)[-1]
            if kind == "R":
                running[name] = True
            elif kind == "E":
                running[name] = False
            elif kind == "F":
                running.pop(name, None)
        return sum(running.values())
    return 0


def wait_for(what, condition, timeout=300.0, every=0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(every)


def http(port, path, method="GET", body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"},
                                 data=body.encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.read().decode()


def metric(port, name):
    for line in http(port, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def sql(url, query):
    return subprocess.run(["psql", url, "-Atc", query], check=True, capture_output=True,
                          text=True).stdout.strip()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_daemon(kiln, work, env, port):
    log = open(os.path.join(work, "serve.log"), "ab")
    proc = subprocess.Popen([kiln, "serve", "--config", os.path.join(work, "kiln.toml"),
                             "--pipelines", os.path.join(work, "pipelines"), "--listen",
                             f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "data")],
                            env=env, stdout=subprocess.PIPE, stderr=log)
    line = proc.stdout.readline().decode()
    if "serving on" not in line:
        sys.exit(f"kiln serve did not start: {line}")
    return proc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    kiln = os.path.abspath(args.kiln)
    n = args.tasks
    work = tempfile.mkdtemp(prefix="kiln-rec-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    subprocess.run([cluster, "start", pg], check=True)
    url = f"postgresql:///kiln_test?host={pg}&user=kiln"
    env = dict(os.environ, KILN_DATABASE_URL=url)
    os.mkdir(os.path.join(work, "pipelines"))
    with open(os.path.join(work, "pipelines", "wide.toml"), "w") as f:
        f.write('[pipeline]\nname = "wide"\n')
        for i in range(n):
            f.write(f'[tasks.t{i}]\ncommand = "exec sleep 3600"\n')
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with open(os.path.join(work, "kiln.toml"), "w") as f:
        f.write(f'[executor]\nmax_parallel_tasks = {n}\n[daemon]\non_stop = "cancel"\n'
                f'[[auth.tokens]]\nname = "bench"\nrole = "admin"\nsha256 = "{digest}"\n')
    port = 18631
    daemon = None
    try:
        daemon = start_daemon(kiln, work, env, port)
        run = json.loads(http(port, "/api/v1/pipelines/wide/runs", "POST", "{}"))["id"]
        started = time.monotonic()
        records = os.path.join(work, "data", "supervisor", "attempts")
        wait_for(f"{n} attempts to run", lambda: sql(
            url, "select count(*) from attempts where state = 'running'") == str(n) and
            supervised(records) == n)
        print(f"{n} tasks started in {time.monotonic() - started:.2f} s")
        supervisor = int(subprocess.run(["pgrep", "-f", "kiln supervise --data-dir " + work],
                                        capture_output=True, text=True).stdout.split()[0])
        print(f"resident memory with {n} tasks running: daemon {rss_kib(daemon.pid) / 1024:.1f} "
              f"MiB, supervisor {rss_kib(supervisor) / 1024:.1f} MiB")
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        restart = time.monotonic()
        daemon = start_daemon(kiln, work, env, port)
        listening = time.monotonic()
        wait_for("adoption", lambda: metric(port, "kiln_attempts_adopted_total") >= n)
        adopted = time.monotonic()
        print(f"after a SIGKILL: listening after {listening - restart:.2f} s, {n} attempts "
              f"adopted after {adopted - restart:.2f} s")
        if metric(port, "kiln_attempts_lost_total") != 0:
            sys.exit("attempts were lost")
        cancel = time.monotonic()
        http(port, f"/api/v1/runs/{run}/cancel", "POST", "")
        wait_for("the cancel", lambda: sql(
            url, f"select state from runs where id = {run}") == "cancelled")
        print(f"cancel of the run with {n} running tasks: {time.monotonic() - cancel:.2f} s")
    finally:
        if daemon and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait()
        subprocess.run([cluster, "stop", pg], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
