"""prepare: load the data and split it into train.csv and test.csv in the run folder.

It also writes data.csv, every row as it came, which the pipeline's check task holds to the data
contract before anything trains on the split.

With --input "" (the default) the data is scikit-learn's bundled breast cancer data set: nothing is
downloaded. With --input PATH the data is that CSV file, copied row by row without interpretation:
judging its contents is check_data's job, so a corrupted file passes this step and fails the next.

The split is a seeded random permutation, so the same data and seed always give the same files.
split.json records where every row of train.csv and test.csv came from, for check_data's messages.
"""

import argparse
import csv
import io
import os

from mlcommon import (COLUMNS, DATA_CSV, FEATURES, SPLIT_JSON, TEST_CSV, TRAIN_CSV, fail, sha256_file,
                      write_atomically, write_json)

STEP = "prepare"


def load_bundled():
    """Returns (header, rows, origins) for the bundled data set; values as shortest exact text."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    if names != FEATURES:
        fail(STEP, "this scikit-learn's breast cancer columns differ from the data contract")
    rows = [[repr(float(v)) for v in features] + [str(int(target))]
            for features, target in zip(data.data, data.target)]
    origins = [f"bundled data set row {i + 1}" for i in range(len(rows))]
    return COLUMNS, rows, origins


def load_csv(path):
    """Returns (header, rows, origins) for a CSV file; blank lines are dropped."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, origins = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    origins.append(f"{os.path.basename(path)} line {reader.line_num}")
    except FileNotFoundError:
        fail(STEP, f"input file {path} does not exist (relative paths are read from "
                   f"{os.getcwd()}, the pipeline file's folder)")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        fail(STEP, f"cannot read input file {path}: {e}")
    if header is None:
        fail(STEP, f"input file {path} is empty")
    return header, rows, origins


def to_csv(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="", help="CSV file; empty = bundled data set")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-size", type=float, default=0.25, help="fraction held out")
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()

    import numpy as np

    if not 0.0 < args.test_size < 1.0:
        fail(STEP, f"--test-size must be between 0 and 1, got {args.test_size}")

    if args.input:
        header, rows, origins = load_csv(args.input)
        source = {"kind": "file", "path": args.input, "sha256": sha256_file(args.input)}
    else:
        header, rows, origins = load_bundled()
        source = {"kind": "bundled", "name": "sklearn.datasets.load_breast_cancer"}
    if len(rows) < 2:
        fail(STEP, f"need at least 2 data rows to split, got {len(rows)}")
    print(f"{STEP}: loaded {len(rows)} rows x {len(header)} columns from "
          f"{source.get('path') or source['name']}")

    n_test = min(max(1, round(len(rows) * args.test_size)), len(rows) - 1)
    order = np.random.RandomState(args.seed).permutation(len(rows))
    test_idx = sorted(order[:n_test].tolist())  # sorted: each file keeps the source's row order
    train_idx = sorted(order[n_test:].tolist())

    os.makedirs(args.run_dir, exist_ok=True)
    # data.csv: every row as it came, for the data contract (its rows are the input's rows).
    write_atomically(os.path.join(args.run_dir, DATA_CSV), to_csv(header, rows))
    for name, idx in ((TRAIN_CSV, train_idx), (TEST_CSV, test_idx)):
        write_atomically(os.path.join(args.run_dir, name), to_csv(header, [rows[i] for i in idx]))
    write_json(os.path.join(args.run_dir, SPLIT_JSON), {
        "source": source,
        "seed": args.seed,
        "test_size": args.test_size,
        "origins": {TRAIN_CSV: [origins[i] for i in train_idx],
                    TEST_CSV: [origins[i] for i in test_idx]},
    })
    print(f"{STEP}: wrote {TRAIN_CSV} ({len(train_idx)} rows) and {TEST_CSV} ({len(test_idx)} rows), "
          f"seed {args.seed}")


if __name__ == "__main__":
    main()
