#!/usr/bin/env python3
"""The built-in task kinds on big data: `kiln task check` and `kiln task drift` on a generated CSV.

Measures, each the median of --repeat runs of the process a task attempt starts:
  start      a check of a 2-row file: the cost of one `kiln task` process (the floor of any kind)
  check      a contract on 4 of 5 columns (types, min/max, allowed, nulls) over --rows rows
  unique     `unique` on a column of --rows distinct values (the one rule whose memory grows)
  psi, ks    drift of every numeric column (3) of the file against itself
  collect    `kiln task collect` of the file as a declared output (SHA-256), and of the 2-row
             file (the floor: what declaring outputs adds to an attempt)
  cachemiss  `kiln task cache` finding nothing to reuse and executing /bin/true (what cache = true
             adds to an attempt that runs), beside /bin/true started alone
  cachehit   `kiln task cache` restoring the file from the cache store (hash-checked copy)
and prints each as seconds, ns per row and the peak RSS, so machines of different speed compare.

Usage: bench/kinds.py [--kiln build-ci/cli/kiln] [--rows 1000000] [--repeat 3]
"""
import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import tempfile
import time


def table(pairs):
    return {"table": [[k, v] for k, v in pairs]}


def run(kiln, kind, options):
    """Wall seconds and peak RSS (KiB) of one `kiln task` process."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = subprocess.Popen([kiln, "task", kind, "--options", json.dumps(options)],
                                 stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            out.seek(0)
            raise SystemExit(f"kiln task {kind} failed ({child.returncode}): {out.read().decode()}")
    return elapsed, usage.ru_maxrss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kiln", default="build-ci/cli/kiln")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    kiln = os.path.abspath(args.kiln)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.csv")
        rnd = random.Random(1)
        with open(data, "w") as f:
            f.write("id,age,income,country,label\n")
            for i in range(args.rows):
                f.write(f"u{i},{rnd.randint(0, 120)},{rnd.random() * 1e5:.2f},"
                        f"{rnd.choice(['DE', 'FR', 'US'])},{rnd.randint(0, 1)}\n")
        small = os.path.join(tmp, "small.csv")
        with open(small, "w") as f:
            f.write("id,age\na,1\n")
        size = os.path.getsize(data)
        contract = table([("data", data), ("columns", table([
            ("age", table([("type", "int"), ("min", 0), ("max", 120), ("nulls", False)])),
            ("income", table([("type", "float"), ("min", 0)])),
            ("country", table([("type", "string"), ("allowed", ["DE", "FR", "US"])])),
            ("label", table([("type", "int"), ("allowed", [0, 1])]))]))])
        cases = [
            ("start", "check", table([("data", small), ("rows", table([("min", 1)]))]), 1),
            ("check", "check", contract, args.rows),
            ("unique", "check", table([("data", data), ("columns", table([("id", table([("unique", True)]))]))]), args.rows),
            ("psi", "drift", table([("reference", data), ("current", data), ("method", "psi")]), args.rows),
            ("ks", "drift", table([("reference", data), ("current", data), ("method", "ks")]), args.rows),
            ("collect0", "collect", {"outputs": [small], "pipeline_dir": tmp, "run_dir": tmp}, 1),
            ("collect", "collect", {"outputs": [data], "pipeline_dir": tmp, "run_dir": tmp}, args.rows),
        ]
        # The cache: the file kept in a store by a collector, then restored by a hit.
        store = os.path.join(tmp, "store")
        os.mkdir(store)
        run(kiln, "collect", {"outputs": [data], "pipeline_dir": tmp, "run_dir": tmp,
                              "cache_store": store})
        def digest(path):  # in blocks: a forked child's peak RSS starts at this process's
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    sha.update(block)
            return sha.hexdigest()

        files = {"inputs": [small], "outputs": [os.path.join(tmp, "restored.csv")],
                 "pipeline_dir": tmp, "run_dir": tmp, "cache_store": store}
        hit = {"files": files, "report": os.path.join(tmp, "cache.json"), "argv": ["/bin/false"],
               "candidates": [{"run": 1, "task": "t", "attempt": 1, "inputs": [digest(small)],
                               "outputs": [{"sha256": digest(data), "bytes": size}]}]}
        miss = {"files": {**files, "inputs": []}, "report": "", "argv": ["/bin/true"],
                "candidates": []}
        cases += [("cachemiss", "cache", miss, 1), ("cachehit", "cache", hit, args.rows)]
        times = []
        for _ in range(max(args.repeat, 5)):
            start = time.perf_counter()
            subprocess.run(["/bin/true"], check=True)
            times.append(time.perf_counter() - start)
        print(f"/bin/true {statistics.median(times) * 1000:5.1f} ms per process (this machine's "
              f"cost of one process start)")
        print(f"data: {args.rows:,} rows, {size / 2**20:.1f} MiB")
        for name, kind, options, rows in cases:
            times, rss = [], 0
            for _ in range(args.repeat):
                t, peak = run(kiln, kind, options)
                times.append(t)
                rss = max(rss, peak)
            median = statistics.median(times)
            if rows == 1:
                what = {"collect": "collecting a success", "cache": "a cached task that runs"}.get(
                    kind, "every attempt of a kind")
                print(f"{name:9s} {median * 1000:7.1f} ms per process (the floor of {what})  "
                      f"peak RSS {rss / 1024:.0f} MiB")
                continue
            print(f"{name:9s} {median:7.3f} s  {median / rows * 1e9:6.0f} ns/row  "
                  f"{size / median / 2**20:5.1f} MiB/s  peak RSS {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
