"""gate: decide whether the model is good enough to promote.

Reads metrics.json. Exit 0 when accuracy >= --min-accuracy; exit 99 when it is below. The pipeline
lists 99 in skip_exit_codes, so a model that misses the bar ends this task `skipped` (not failed),
and register, which needs this task, is skipped too. Missing or unreadable metrics exit 1 (failed).
"""

import argparse
import math
import os

from mlcommon import METRICS_JSON, fail, read_json

STEP = "gate"
EXIT_NOT_GOOD_ENOUGH = 99


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--min-accuracy", type=float, required=True)
    args = parser.parse_args()

    metrics = read_json(STEP, os.path.join(args.run_dir, METRICS_JSON))
    accuracy = metrics.get("accuracy")
    if not isinstance(accuracy, (int, float)) or math.isnan(accuracy):
        fail(STEP, f"{METRICS_JSON} has no numeric 'accuracy' (got {accuracy!r})")

    if accuracy < args.min_accuracy:
        print(f"{STEP}: accuracy {accuracy:.4f} < min_accuracy {args.min_accuracy}: "
              f"not promoting (exit {EXIT_NOT_GOOD_ENOUGH}, the task ends skipped)")
        raise SystemExit(EXIT_NOT_GOOD_ENOUGH)
    print(f"{STEP}: accuracy {accuracy:.4f} >= min_accuracy {args.min_accuracy}: promote")


if __name__ == "__main__":
    main()
