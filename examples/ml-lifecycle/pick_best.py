"""pick_best: choose the best trial of a sweep and copy its model and metrics to the run folder.

Reads trial-<n>/metrics.json and trial-<n>/model.json of every trial folder in --run-dir, picks
the highest --metric (the lowest trial number on a tie), copies its model.pkl and metrics.json
to the run folder (where the gate reads them) and writes sweep.json: every trial's
hyperparameters and metrics, and which was chosen.
"""

import argparse
import os
import re
import shutil

from mlcommon import METRICS_JSON, MODEL_JSON, MODEL_PKL, fail, read_json, write_json

STEP = "pick"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args()
    trials = []
    for name in os.listdir(args.run_dir):
        match = re.fullmatch(r"trial-(\d+)", name)
        if not match:
            continue
        folder = os.path.join(args.run_dir, name)
        metrics = read_json(STEP, os.path.join(folder, METRICS_JSON))
        model = read_json(STEP, os.path.join(folder, MODEL_JSON))
        if args.metric not in metrics:
            fail(STEP, f"{folder}/{METRICS_JSON} has no '{args.metric}'")
        trials.append({"trial": int(match.group(1)), "folder": folder, "model": model,
                       "metrics": metrics})
    if not trials:
        fail(STEP, f"no trial-<n> folder in {args.run_dir}")
    trials.sort(key=lambda t: t["trial"])
    best = max(trials, key=lambda t: (t["metrics"][args.metric], -t["trial"]))
    for name in (MODEL_PKL, METRICS_JSON):
        shutil.copyfile(os.path.join(best["folder"], name), os.path.join(args.run_dir, name))
    write_json(os.path.join(args.run_dir, "sweep.json"), {
        "metric": args.metric,
        "chosen": best["trial"],
        "trials": [{k: t[k] for k in ("trial", "model", "metrics")} for t in trials],
    })
    print(f"{STEP}: trial {best['trial']} of {len(trials)} has the best {args.metric} "
          f"({best['metrics'][args.metric]:.4f}): {best['model']}")


if __name__ == "__main__":
    main()
