#!/usr/bin/env python3
"""Per-task cost as a pipeline grows: 1,000, 10,000 and 100,000 no-op tasks.

Each pipeline is layered: layers of 100 tasks, each task needing 2 tasks of the layer before
(seed 42), every task `true`. For each size it measures, with a throwaway PostgreSQL
(synchronous_commit on):
  - `kiln validate` (parse and check),
  - `kiln run -j 2` from start to end (load, create the run's rows, run every task),
  - peak RSS of `kiln run`,
and prints each as time per task, so that a cost that grows faster than the pipeline shows as
a per-task figure that grows.

Usage: bench/scale.py [--kiln build/cli/kiln] [--sizes 1000,10000,100000]
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_layered(path, n, width=100):
    rnd = random.Random(42)
    with open(path, "w") as f:
        f.write(f'[pipeline]\nname = "scale-{n}"\n\n')
        for i in range(n):
            layer, _ = divmod(i, width)
            f.write(f'[tasks.t{i}]\ncommand = "true"\n')
            if layer:
                first = (layer - 1) * width
                needs = sorted(rnd.sample(range(first, first + width), 2))
                f.write("needs = [" + ", ".join(f'"t{j}"' for j in needs) + "]\n")
            f.write("\n")


def timed(cmd, cwd, env=None):
    with tempfile.TemporaryFile() as errf:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, rusage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return elapsed, rusage.ru_maxrss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--sizes", default="1000,10000,100000")
    args = ap.parse_args()
    kiln = os.path.abspath(args.kiln)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="kiln-scale-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    subprocess.run([cluster, "start", pg], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, KILN_DATABASE_URL=f"postgresql:///kiln_test?host={pg}&user=kiln")
    try:
        print(f"machine: {os.cpu_count()} cores; kiln run -j 2; tasks `true`, layers of 100")
        print(f"{'tasks':>8} {'validate':>10} {'per task':>10} {'run':>10} {'per task':>10}"
              f" {'peak RSS':>10}")
        for n in sizes:
            folder = os.path.join(work, str(n))
            os.mkdir(folder)
            file = os.path.join(folder, "pipeline.toml")
            write_layered(file, n)
            validate = min(timed([kiln, "validate", file], folder)[0] for _ in range(3))
            run, rss = timed([kiln, "run", file, "-j", "2", "--data-dir",
                              os.path.join(work, "data")], folder, env)
            print(f"{n:>8} {validate * 1000:>8.0f}ms {validate * 1e6 / n:>8.1f}us"
                  f" {run:>9.2f}s {run * 1000 / n:>8.2f}ms {rss / 1024:>8.1f}MiB", flush=True)
    finally:
        subprocess.run([cluster, "stop", pg], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
