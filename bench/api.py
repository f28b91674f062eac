#!/usr/bin/env python3
"""HTTP API throughput and latency of `kiln serve` on its embedded PostgreSQL, measured with wrk.

Starts `kiln serve` (embedded PostgreSQL, synchronous_commit on) with one pipeline `noop` (one
task running `true`) and measures on loopback:
  read     GET /api/v1/runs/{id}                   (target: >= 5,000 requests/s, p99 < 50 ms)
  trigger  POST /api/v1/pipelines/noop/runs        (target: >= 500 durable runs/s, p99 < 50 ms)
While the triggers pour in, the daemon keeps running every created run; afterwards the script
waits until all of them have ended and reports how long that took and the scheduling lag the
daemon measured (/metrics).

Usage: bench/api.py [--kiln build/cli/kiln] [--duration 10] [--connections 32]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "kiln_bench_token_0123456789"


def request(base, path, method="GET", body=None):
    req = urllib.request.Request(base + path, method=method, data=body)
    req.add_header("Authorization", "Bearer " + TOKEN)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as res:
        return res.read().decode()


def wrk(url, duration, connections, script=None):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-H",
           f"Authorization: Bearer {TOKEN}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0


def metric(text, name):
    m = re.search("^" + re.escape(name) + r" ([\d.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found (Debian package wrk; scripts/setup.sh installs it)")

    work = tempfile.mkdtemp(prefix="kiln-bench-api-")
    os.chmod(work, 0o755)
    os.mkdir(os.path.join(work, "pipelines"))
    with open(os.path.join(work, "pipelines", "noop.toml"), "w") as f:
        f.write('[pipeline]\nname = "noop"\n[tasks.t]\ncommand = "true"\n')
    with open(os.path.join(work, "kiln.toml"), "w") as f:
        f.write('[[auth.tokens]]\nname = "bench"\nrole = "operator"\n'
                f'sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n')
    with open(os.path.join(work, "post.lua"), "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = "{}"\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    env = {k: v for k, v in os.environ.items() if k != "KILN_DATABASE_URL"}
    daemon = subprocess.Popen(
        [os.path.abspath(args.kiln), "serve", "--config", os.path.join(work, "kiln.toml"),
         "--pipelines", os.path.join(work, "pipelines"), "--data-dir", os.path.join(work, "data"),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = daemon.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not port:
            sys.exit("kiln serve did not start: " + line)
        base = f"http://127.0.0.1:{port.group(1)}"
        run = json.loads(request(base, "/api/v1/pipelines/noop/runs", "POST", b"{}"))
        print(f"machine: {os.cpu_count()} cores; wrk -t2 -c{args.connections} "
              f"-d{args.duration}s on loopback; embedded PostgreSQL, synchronous_commit on")
        rps, p99, bad = wrk(f"{base}/api/v1/runs/{run['id']}", args.duration, args.connections)
        print(f"read     GET /api/v1/runs/{{id}}      {rps:>9.0f} req/s   p99 {p99:6.1f} ms"
              f"   non-2xx {bad}")
        before = time.time()
        rps, p99, bad = wrk(f"{base}/api/v1/pipelines/noop/runs", args.duration,
                            args.connections, os.path.join(work, "post.lua"))
        print(f"trigger  POST .../noop/runs         {rps:>9.0f} runs/s  p99 {p99:6.1f} ms"
              f"   non-2xx {bad}")
        # Every created run must still be carried out: wait until none is active.
        while True:
            page = json.loads(request(base, "/api/v1/runs?state=running&limit=1"))
            queued = json.loads(request(base, "/api/v1/runs?state=queued&limit=1"))
            if not page["runs"] and not queued["runs"]:
                break
            time.sleep(0.5)
        drained = time.time() - before
        text = request(base, "/metrics")
        runs = metric(text, 'kiln_runs_finished_total{state="success"}')
        lag_sum = metric(text, "kiln_scheduling_lag_seconds_sum")
        lag_count = metric(text, "kiln_scheduling_lag_seconds_count")
        print(f"runs carried out: {runs:.0f} (all ended {drained:.1f} s after the trigger load "
              f"began); mean scheduling lag {lag_sum / max(lag_count, 1) * 1000:.1f} ms")
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
