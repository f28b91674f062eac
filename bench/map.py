#!/usr/bin/env python3
"""The cost of for_each: a mapped task's instances against plain tasks of the same shape.

  fanout-1000   root -> 1000 plain tasks -> join            (bench/scheduling.py's shape)
  map-1000      root -> one task mapped over 1000 inline items -> join
  map-10000     list -> one task mapped over the 10,000 items of a JSON file `list` writes

Each task `touch`es one file (map-10000's instances run `true`). Runs with `kiln run -j 2`
against a throwaway PostgreSQL with synchronous_commit on, and fanout-1000 with `ninja -j2` for
the cost of the processes themselves. Prints best-of times, kiln's own cost per task or instance
((kiln - ninja) / 1000), the map/fanout ratio, and for map-10000 the time from `list`'s end to the
first instance's start: the file read and one transaction that writes 10,000 rows.

Usage: bench/map.py [--kiln build/cli/kiln] [--repeat 3]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scheduling import ROOT, fresh_out, timed, write_ninja  # noqa: E402


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def fanout_toml():
    out = '[pipeline]\nname = "fanout"\n\n[tasks.root]\ncommand = "touch out/root"\n\n'
    for i in range(1000):
        out += f'[tasks.f{i}]\nneeds = ["root"]\ncommand = "touch out/f{i}"\n\n'
    out += "[tasks.join]\nneeds = [" + ", ".join(f'"f{i}"' for i in range(1000)) + "]\n"
    return out + 'command = "touch out/join"\n'


def map_toml():
    items = ", ".join(str(i) for i in range(1000))
    return ('[pipeline]\nname = "map"\n\n[tasks.root]\ncommand = "touch out/root"\n\n'
            f'[tasks.f]\nneeds = ["root"]\nfor_each = [{items}]\n'
            'command = "touch out/f{{ item }}"\n\n'
            '[tasks.join]\nneeds = ["f"]\ncommand = "touch out/join"\n')


def big_toml():
    return ('[pipeline]\nname = "big"\n\n[tasks.list]\n'
            'command = "seq 0 9999 | paste -sd, | sed \'s/.*/[&]/\' > {{ run.dir }}/items.json"\n\n'
            '[tasks.each]\nneeds = ["list"]\nfor_each = "{{ run.dir }}/items.json"\n'
            'command = "true"\n')


def sql(psql, url, query):
    return subprocess.run([psql, url, "-Atc", query], check=True, capture_output=True,
                          text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "cli", "kiln"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    kiln = os.path.abspath(args.kiln)
    ninja = shutil.which("ninja")
    psql = shutil.which("psql")
    if not ninja or not psql:
        sys.exit("ninja and psql are needed")
    work = tempfile.mkdtemp(prefix="kiln-bench-map-")
    os.chmod(work, 0o755)
    pg = os.path.join(work, "pg")
    cluster = os.path.join(ROOT, "tests", "support", "pg_cluster.sh")
    subprocess.run([cluster, "start", pg], check=True)
    url = f"postgresql:///kiln_test?host={pg}&user=kiln"
    env = dict(os.environ, KILN_DATABASE_URL=url)
    data = os.path.join(work, "data")
    try:
        # Interleaved, so that a machine whose speed drifts affects both alike.
        shapes = [("fanout-1000", fanout_toml()), ("map-1000", map_toml())]
        times = {name: [] for name, _ in shapes}
        for name, text in shapes:
            os.mkdir(os.path.join(work, name))
            write(os.path.join(work, name, "pipeline.toml"), text)
        for _ in range(args.repeat):
            for name, _ in shapes:
                folder = os.path.join(work, name)
                fresh_out(folder)
                times[name].append(timed([kiln, "run", "pipeline.toml", "-j", "2", "--data-dir",
                                          data], folder, env)[0])
        best = {name: min(t) for name, t in times.items()}
        folder = os.path.join(work, "ninja")
        os.mkdir(folder)
        fan = [("root", [])] + [(f"f{i}", ["root"]) for i in range(1000)]
        fan.append(("join", [f"f{i}" for i in range(1000)]))
        write_ninja(os.path.join(folder, "build.ninja"), fan)
        ninja_times = []
        for _ in range(args.repeat):
            fresh_out(folder)
            if os.path.exists(os.path.join(folder, ".ninja_log")):
                os.remove(os.path.join(folder, ".ninja_log"))
            ninja_times.append(timed([ninja, "-j2", "-f", "build.ninja"], folder)[0])
        n = min(ninja_times)
        print(f"machine: {os.cpu_count()} cores; kiln -j 2, ninja -j2; best of {args.repeat}")
        print(f"ninja -j2, fanout-1000: {n:.3f}s ({n:.3f} ms per process start and end)")
        for name in ("fanout-1000", "map-1000"):
            k = best[name]
            print(f"{name:<12} {k:>7.3f}s  kiln's own cost {(k - n):.3f} ms per task")
        per_task = best["fanout-1000"] - n
        per_instance = best["map-1000"] - n
        print(f"map-1000 / fanout-1000: {best['map-1000'] / best['fanout-1000']:.3f}x "
              f"(kiln's own: {per_instance / per_task:.3f}x)")

        folder = os.path.join(work, "big")
        os.mkdir(folder)
        write(os.path.join(folder, "pipeline.toml"), big_toml())
        t, rss = timed([kiln, "run", "pipeline.toml", "-j", "2", "--data-dir", data], folder, env)
        run = sql(psql, url, "select max(id) from runs where pipeline = 'big'")
        rows = sql(psql, url, f"select count(*) from task_instances where run_id = {run} "
                              "and parent = 'each'")
        # From `list`'s end (its event, stamped when the scheduler took its exit) to the first
        # instance's process (its log file is made as it starts; `true` writes nothing to it):
        # reading the file, the transaction that writes 10,000 rows, the first launch.
        ended = float(sql(psql, url, "select extract(epoch from at) from events where run_id = "
                                     f"{run} and task_id = 'list' and to_state = 'success'"))
        log = os.path.join(data, "logs", "big", run, "each[0]", "1.log")
        expand = (os.stat(log).st_mtime - ended) * 1000
        print(f"map-10000: {t:.2f}s for 10,000 instances ({t / 10:.3f} ms each), {rows} rows, "
              f"peak RSS {rss / 1024:.1f} MiB")
        print(f"map-10000: list ended -> first instance started: {expand:.1f} ms (the file read, "
              "one transaction writing 10,000 rows, the first start)")
    finally:
        subprocess.run([cluster, "stop", pg], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
