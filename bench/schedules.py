#!/usr/bin/env python3
"""Schedules at scale: 1,000 scheduled pipelines in one `kiln serve` (embedded PostgreSQL).

Measures:
  start     time from launch to "kiln: schedules: ..." (every pipeline's first check done)
  idle      the daemon's CPU (utime + stime of the kiln process, PostgreSQL not included) and RSS
            over --idle seconds with nothing due          (target: < 1% of a core, < 100 MiB)
  fire      for a pipeline firing "every 2s": its run's started_at minus its logical date (the
            fire instant), over --fires fires             (target: < 1 s)
  reload    one of the 1,000 files rewritten: from the write to the 'pipeline_loaded' event
            arriving on the event stream, --reloads times (target: < 100 ms)

Usage: bench/schedules.py [--kiln build/cli/kiln] [--pipelines 1000] [--idle 30]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "kiln_bench_token_0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def request(base, path):
    req = urllib.request.Request(base + path)
    req.add_header("Authorization", "Bearer " + TOKEN)
    with urllib.request.urlopen(req, timeout=60) as res:
        return json.loads(res.read().decode())


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pipeline(name, schedule, description=""):
    return (f'[pipeline]\nname = "{name}"\ndescription = "{description}"\n'
            f'schedule = "{schedule}"\ntimezone = "Europe/Berlin"\n'
            f'[tasks.prepare]\ncommand = "true"\n[tasks.train]\nneeds = ["prepare"]\n'
            f'command = "true"\n')


def iso(text):
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Events:
    """Reads the daemon's event stream on a thread; wait() returns when a matching event came."""

    def __init__(self, base):
        self.cond = threading.Condition()
        self.seen = []
        req = urllib.request.Request(base + "/api/v1/events")
        req.add_header("Authorization", "Bearer " + TOKEN)
        self.res = urllib.request.urlopen(req, timeout=600)
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for raw in self.res:
            line = raw.decode().strip()
            if line.startswith("data: "):
                event = json.loads(line[6:])
                with self.cond:
                    self.seen.append((time.time(), event))
                    self.cond.notify_all()

    def wait(self, match, after_index):
        with self.cond:
            while True:
                for i in range(after_index, len(self.seen)):
                    if match(self.seen[i][1]):
                        return self.seen[i][0], i + 1
                self.cond.wait(30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--pipelines", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=30)
    ap.add_argument("--fires", type=int, default=10)
    ap.add_argument("--reloads", type=int, default=20)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kiln-bench-schedules-")
    os.chmod(work, 0o755)
    folder = os.path.join(work, "pipelines")
    os.mkdir(folder)
    # Daily at 03:00 Berlin time: nothing is due while the benchmark runs (unless it straddles
    # 03:00 in Berlin).
    for i in range(args.pipelines):
        with open(os.path.join(folder, f"p{i:04d}.toml"), "w") as f:
            f.write(pipeline(f"p{i:04d}", "0 3 * * *"))
    with open(os.path.join(work, "kiln.toml"), "w") as f:
        f.write('[[auth.tokens]]\nname = "bench"\nrole = "operator"\n'
                f'sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n')
    env = {k: v for k, v in os.environ.items() if k != "KILN_DATABASE_URL"}
    started = time.time()
    daemon = subprocess.Popen(
        [os.path.abspath(args.kiln), "serve", "--config", os.path.join(work, "kiln.toml"),
         "--pipelines", folder, "--data-dir", os.path.join(work, "data"),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = daemon.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not port:
            raise SystemExit("kiln serve did not start: " + line)
        base = f"http://127.0.0.1:{port.group(1)}"
        while not line.startswith("kiln: schedules:"):
            line = daemon.stdout.readline()
        print(f"machine: {os.cpu_count()} cores; {args.pipelines} pipelines with a schedule, "
              f"embedded PostgreSQL")
        print(f"start    {time.time() - started:6.2f} s to the first check of every pipeline "
              f"({line.strip()})")

        time.sleep(2)  # let the start settle (warm pool, first reads)
        cpu0, t0 = cpu_seconds(daemon.pid), time.time()
        time.sleep(args.idle)
        cpu1, t1 = cpu_seconds(daemon.pid), time.time()
        print(f"idle     {100 * (cpu1 - cpu0) / (t1 - t0):6.3f} % of a core over {t1 - t0:.0f} s; "
              f"RSS {rss_mib(daemon.pid):.1f} MiB")

        events = Events(base)
        index = 0
        # Reload: rewrite one file among the 1,000 and wait for its event.
        delays = []
        for i in range(args.reloads):
            path = os.path.join(folder, "p0500.toml")
            before = time.time()
            with open(path, "w") as f:
                f.write(pipeline("p0500", "0 3 * * *", f"edit {i}"))
            at, index = events.wait(
                lambda e: e["kind"] == "pipeline_loaded" and e["pipeline"] == "p0500", index)
            delays.append((at - before) * 1000)
        print(f"reload   one file of {args.pipelines}: median {statistics.median(delays):.1f} ms,"
              f" max {max(delays):.1f} ms over {len(delays)} edits (write to event received)")

        # Fire: a pipeline added that fires every 2 s.
        with open(os.path.join(folder, "tick.toml"), "w") as f:
            f.write(pipeline("tick", "every 2s"))
        lags = []
        while len(lags) < args.fires:
            _, index = events.wait(
                lambda e: e["kind"] == "run_state" and e["pipeline"] == "tick"
                and e["to"] == "running", index)
            runs = request(base, "/api/v1/runs?pipeline=tick&limit=100")["runs"]
            lags = [(iso(r["started_at"]) - iso(r["logical_date"])) * 1000
                    for r in runs if r["started_at"] and r["trigger"] == "schedule"]
        print(f"fire     run started after its fire instant: median {statistics.median(lags):.1f}"
              f" ms, max {max(lags):.1f} ms over {len(lags)} fires")
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
