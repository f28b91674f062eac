#!/usr/bin/env python3
"""Scheduling overhead of kiln against ninja on the same task graphs.

Generates three shapes in a temporary folder, each task `touch`ing one file:
  chain-500      500 tasks in sequence
  fanout-1000    root -> 1000 parallel tasks -> join
  layered-2000   20 layers of 100; each task needs 2 random tasks of the layer before (seed 42)
Runs each with `kiln run -j 2` against a throwaway PostgreSQL with synchronous_commit on (every
transition durable), and with `ninja -j2` on the same graph, and prints times and ratios. Also:
`kiln validate` of a 10,000-task pipeline, and peak RSS of `kiln run` on layered-2000.

With --serve, the same shapes also run through `kiln serve` (tasks under its supervisor, the
daemon's path), triggered and awaited with `kiln trigger NAME --wait`, 2 tasks at a time.

With --against OTHER_KILN, another binary (an older build) runs each shape too, interleaved with
this one run by run and against a PostgreSQL of its own (its schema may be older), so that a
machine whose speed drifts affects both alike, and ninja -j2 with them for the cost of the
processes; prints both medians, their ratio, and each binary's own cost per task:
(kiln - ninja) / tasks. As root, with --serve, the daemons run the tasks as root; --own-user
runs them a second time as their run's own user (the default as root).

Usage: bench/scheduling.py [--kiln build/cli/kiln] [--repeat 3] [--serve] [--against OLD_KILN]
                           [--own-user] [--shapes chain-500,...]
"""
import argparse
import ctypes
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shapes():
    rnd = random.Random(42)
    chain = [(f"t{i}", [f"t{i-1}"] if i else []) for i in range(500)]
    fan = [("root", [])] + [(f"f{i}", ["root"]) for i in range(1000)]
    fan.append(("join", [f"f{i}" for i in range(1000)]))
    layered = []
    for layer in range(20):
        for i in range(100):
            needs = []
            if layer:
                needs = [f"l{layer-1}_{j}" for j in sorted(rnd.sample(range(100), 2))]
            layered.append((f"l{layer}_{i}", needs))
    every = {"chain-500": chain, "fanout-1000": fan, "layered-2000": layered}
    return {name: tasks for name, tasks in every.items() if not SELECTED or name in SELECTED}


SELECTED = set()  # --shapes: the shapes to run (empty: all)


def write_pipeline(path, name, tasks, workdir=None):
    with open(path, "w") as f:
        f.write(f'[pipeline]\nname = "{name}"\n\n')
        if workdir:
            f.write(f'[defaults]\nworkdir = "{workdir}"\n\n')
        for tid, needs in tasks:
            f.write(f"[tasks.{tid}]\ncommand = \"touch out/{tid}\"\n")
            if needs:
                f.write("needs = [" + ", ".join(f'"{n}"' for n in needs) + "]\n")
            f.write("\n")


def write_ninja(path, tasks):
    with open(path, "w") as f:
        f.write("rule touch\n  command = touch $out\n\n")
        for tid, needs in tasks:
            deps = " ".join(f"out/{n}" for n in needs)
            f.write(f"build out/{tid}: touch" + (f" | {deps}" if deps else "") + "\n")


def process_start_ms():
    """This machine's cost of starting and reaping one process: /bin/true from Python."""
    times = []
    for _ in range(50):
        start = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def no_huge_pages():
    """In a child before exec: no transparent huge pages for it (prctl PR_SET_THP_DISABLE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(41, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE)")


def timed(cmd, cwd, env=None, preexec=None):
    """Runs cmd; returns (seconds, peak RSS in KiB of that process)."""
    with tempfile.TemporaryFile() as errf:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errf,
                                preexec_fn=preexec)
        _, status, rusage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed with {code}:\n{err[-2000:]}")
    return elapsed, rusage.ru_maxrss


def fresh_out(folder, mode=0o755):
    out = os.path.join(folder, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.mkdir(out)
    os.chmod(out, mode)


TOKEN = "kiln_bench_admin_0123456789"


def serve_times(kiln, work, env, repeat, config=""):
    """Each shape through `kiln serve`: best wall time of `kiln trigger NAME --wait`. As root,
    its tasks run as kiln-task with ids of their run's own unless `config` says otherwise, so
    the folder they write is open to all."""
    folder = os.path.join(work, "serve" + str(len(os.listdir(work))))
    os.mkdir(folder)
    pipelines = os.path.join(folder, "pipelines")
    os.mkdir(pipelines)
    # The tasks write outside the watched pipelines folder.
    for name, tasks in shapes().items():
        write_pipeline(os.path.join(pipelines, name + ".toml"), name, tasks, "../work")
    os.mkdir(os.path.join(folder, "work"))
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with open(os.path.join(folder, "kiln.toml"), "w") as f:
        f.write("[executor]\nmax_parallel_tasks = 2\n" + config +
                f'[[auth.tokens]]\nname = "bench"\nrole = "admin"\nsha256 = "{digest}"\n')
    daemon = subprocess.Popen(
        [kiln, "serve", "--config", os.path.join(folder, "kiln.toml"), "--pipelines", pipelines,
         "--listen", "127.0.0.1:18632", "--data-dir", os.path.join(folder, "data")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if "serving on" not in daemon.stdout.readline().decode():
        sys.exit("kiln serve did not start")
    client = dict(env, KILN_SERVER="http://127.0.0.1:18632", KILN_TOKEN=TOKEN)
    out = {}
    try:
        for name in shapes():
            times = []
            for _ in range(repeat):
                fresh_out(os.path.join(folder, "work"), 0o1777)
                times.append(timed([kiln, "trigger", name, "--wait"], folder, client)[0])
            out[name] = min(times)
    finally:
        daemon.terminate()
        daemon.wait()
    return out


def compare(kiln, other, repeat, serve=False, own_user=False):
    """Each shape with both binaries, alternating run by run; medians and their ratio. With
    `serve`, then each shape through `kiln serve` (tasks as root when run as root), one daemon
    of each binary per round, alternating which goes first."""
    work = tempfile.mkdtemp(prefix="kiln-bench-ab-")
    os.chmod(work, 0o755)
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    binaries = {"this": kiln, "other": other}
    envs = {}
    try:
        for key in binaries:
            pg = os.path.join(work, "pg-" + key)
            subprocess.run([cluster, "start", pg], check=True)
            envs[key] = dict(os.environ,
                             KILN_DATABASE_URL=f"postgresql:///kiln_test?host={pg}&user=kiln")
        print(f"machine: {os.cpu_count()} cores; kiln -j 2; {repeat} runs each, alternating")
        print(f"one process start here: /bin/true from Python {process_start_ms():.2f} ms (median of 50)")
        print(f"this: {kiln}\nother: {other}")
        print(f"{'shape':<14} {'this':>9} {'other':>9} {'ninja':>9} {'this/other':>11}"
              f" {'own ms/task this, other':>24}")
        ninja = shutil.which("ninja")
        ninja_median = {}
        for name, tasks in shapes().items():
            folder = os.path.join(work, name)
            os.mkdir(folder)
            write_pipeline(os.path.join(folder, "pipeline.toml"), name, tasks)
            write_ninja(os.path.join(folder, "build.ninja"), tasks)
            times = {key: [] for key in list(binaries) + ["ninja"]}
            for rep in range(repeat):
                # Each binary goes first every other time: a run pays for what the run before it
                # left (deleted files the file system still scans past, a cold cache).
                order = list(binaries.items())
                for key, binary in (order if rep % 2 == 0 else order[::-1]):
                    fresh_out(folder)
                    times[key].append(timed([binary, "run", "pipeline.toml", "-j", "2",
                                             "--data-dir", os.path.join(work, "data-" + key)],
                                            folder, envs[key])[0])
                fresh_out(folder)
                if os.path.exists(os.path.join(folder, ".ninja_log")):
                    os.remove(os.path.join(folder, ".ninja_log"))
                times["ninja"].append(timed([ninja, "-j2", "-f", "build.ninja"], folder)[0])
            this, that, n = (statistics.median(times[k]) for k in ("this", "other", "ninja"))
            ninja_median[name] = n
            own = f"{(this - n) * 1000 / len(tasks):.2f}, {(that - n) * 1000 / len(tasks):.2f}"
            print(f"{name:<14} {this:>8.3f}s {that:>8.3f}s {n:>8.3f}s {this / that:>10.3f}x"
                  f" {own:>24}")
        # As root, `own_user` also runs the tasks as their run's own user (kiln's default then).
        setups = [("kiln serve", "")]
        if os.geteuid() == 0:
            setups = [("kiln serve, tasks as root", 'run_as = "root"\n')]
            if own_user:
                setups.append(("kiln serve, tasks as their run's own user", ""))
        for title, config in (setups if serve else []):
            runs = {key: {name: [] for name in shapes()} for key in binaries}
            for rep in range(repeat):
                order = list(binaries.items())
                for key, binary in (order if rep % 2 == 0 else order[::-1]):
                    for name, t in serve_times(binary, work, envs[key], 1, config).items():
                        runs[key][name].append(t)
            print(f"{title}, medians of {repeat}")
            for name, tasks in shapes().items():
                this, that = (statistics.median(runs[k][name]) for k in ("this", "other"))
                n = ninja_median[name]
                own = (f"{(this - n) * 1000 / len(tasks):.2f}, "
                       f"{(that - n) * 1000 / len(tasks):.2f}")
                print(f"{name:<14} {this:>8.3f}s {that:>8.3f}s {n:>8.3f}s {this / that:>10.3f}x"
                      f" {own:>24}   {this / n:.2f}x, {that / n:.2f}x ninja")
    finally:
        for key in binaries:
            subprocess.run([cluster, "stop", os.path.join(work, "pg-" + key)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--serve", action="store_true", help="also run the shapes through kiln serve")
    ap.add_argument("--against", help="another kiln binary to compare with, run by run")
    ap.add_argument("--own-user", action="store_true",
                    help="with --against --serve as root: also with tasks as their run's own user")
    ap.add_argument("--shapes", default="",
                    help="comma-separated shapes to run (chain-500, fanout-1000, layered-2000)")
    args = ap.parse_args()
    SELECTED.update(s for s in args.shapes.split(",") if s)
    if args.against:
        return compare(os.path.abspath(args.kiln), os.path.abspath(args.against), args.repeat,
                       args.serve, args.own_user)
    kiln = os.path.abspath(args.kiln)
    ninja = shutil.which("ninja")
    if not ninja:
        sys.exit("ninja not found")

    work = tempfile.mkdtemp(prefix="kiln-bench-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    subprocess.run([cluster, "start", pg], check=True)
    url = f"postgresql:///kiln_test?host={pg}&user=kiln"
    env = dict(os.environ, KILN_DATABASE_URL=url)
    try:
        print(f"machine: {os.cpu_count()} cores; kiln -j 2, ninja -j2; best of {args.repeat}")
        print(f"one process start here: /bin/true from Python {process_start_ms():.2f} ms (median of 50)")
        print(f"{'shape':<14} {'kiln':>9} {'ninja':>9} {'ratio':>7} {'ninja ms/task':>14}"
              f" {'kiln own ms/task':>17}")
        rss = 0
        ninja_best = {}
        for name, tasks in shapes().items():
            folder = os.path.join(work, name)
            os.mkdir(folder)
            write_pipeline(os.path.join(folder, "pipeline.toml"), name, tasks)
            write_ninja(os.path.join(folder, "build.ninja"), tasks)
            kiln_times, ninja_times = [], []
            for _ in range(args.repeat):
                fresh_out(folder)
                t, r = timed([kiln, "run", "pipeline.toml", "-j", "2", "--data-dir",
                              os.path.join(work, "data")], folder, env)
                kiln_times.append(t)
                if name == "layered-2000":
                    rss = max(rss, r)
                fresh_out(folder)
                if os.path.exists(os.path.join(folder, ".ninja_log")):
                    os.remove(os.path.join(folder, ".ninja_log"))
                t, _ = timed([ninja, "-j2", "-f", "build.ninja"], folder)
                ninja_times.append(t)
            k, n = min(kiln_times), min(ninja_times)
            ninja_best[name] = n
            # kiln's own cost: what it adds to the same processes, per task.
            print(f"{name:<14} {k:>8.3f}s {n:>8.3f}s {k / n:>6.2f}x {n * 1000 / len(tasks):>14.2f}"
                  f" {(k - n) * 1000 / len(tasks):>17.2f}")
        if args.serve:
            setups = [("kiln serve", "")]
            if os.geteuid() == 0:
                setups = [("kiln serve, tasks as their run's own user", ""),
                          ("kiln serve, tasks as root", 'run_as = "root"\n')]
            for title, config in setups:
                print(f"{title}")
                for name, k in serve_times(kiln, work, env, args.repeat, config).items():
                    n = ninja_best[name]
                    print(f"{name:<14} {k:>8.3f}s {n:>8.3f}s {k / n:>6.2f}x")

        big = os.path.join(work, "big.toml")
        write_pipeline(big, "big", [(f"t{i}", [f"t{i-1}"] if i else []) for i in range(10000)])
        times = [timed([kiln, "validate", big], work)[0] for _ in range(5)]
        print(f"kiln validate, 10,000 tasks: {statistics.median(times) * 1000:.0f} ms (median of 5)")
        # The same with transparent huge pages refused to the process (PR_SET_THP_DISABLE,
        # inherited across exec): what a kernel without them gives.
        times = [timed([kiln, "validate", big], work, preexec=no_huge_pages)[0] for _ in range(5)]
        print(f"kiln validate, 10,000 tasks, no huge pages: "
              f"{statistics.median(times) * 1000:.0f} ms (median of 5)")
        if rss:  # measured only when layered-2000 is among the shapes run
            print(f"peak RSS of kiln run, layered-2000: {rss / 1024:.1f} MiB")
    finally:
        subprocess.run([cluster, "stop", pg], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
