"""check_data: enforce the data contract on train.csv and test.csv before anything trains on them.

Checks: the header is exactly the contract's columns; every row has one value per column; no
value is null (empty, NA, NaN, null, None); every feature is a finite number >= 0; the target is
the integer 0 or 1; the training file holds both classes. Every problem is reported with its
file, line, column and, from split.json, the input line it came from. Exit 1 on any problem.
"""

import argparse
import csv
import json
import math
import os
import sys

from mlcommon import COLUMNS, FEATURES, SPLIT_JSON, TARGET, TEST_CSV, TRAIN_CSV

STEP = "check_data"
NULLS = {"", "na", "nan", "null", "none"}
MAX_REPORTED = 20


def check_value(column, text):
    """Returns a problem description for one cell, or None when the value is valid."""
    if text.strip().lower() in NULLS:
        return f"null value {text!r}"
    if column == TARGET:
        if text.strip() not in ("0", "1"):
            return f"target must be the integer 0 or 1, got {text!r}"
        return None
    try:
        value = float(text)
    except ValueError:
        return f"not a number: {text!r}"
    if not math.isfinite(value):
        return f"not finite: {text!r}"
    if value < 0:
        return f"negative value {text} (features must be >= 0)"
    return None


def check_file(path, origins):
    """Returns (problems, number of data rows, set of target values seen)."""
    problems, n_rows, classes = [], 0, set()

    def where(line, row_number):
        origin = origins[row_number - 1] if row_number - 1 < len(origins) else None
        return f"{os.path.basename(path)} line {line}" + (f" (from {origin})" if origin else "")

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                return [f"{path}: empty file, expected a header row"], 0, classes
            if header != COLUMNS:
                missing = [c for c in COLUMNS if c not in header]
                unexpected = [c for c in header if c not in COLUMNS]
                detail = []
                if missing:
                    detail.append(f"missing {missing}")
                if unexpected:
                    detail.append(f"unexpected {unexpected}")
                if not detail:
                    detail.append("columns are out of order")
                return [f"{os.path.basename(path)} line 1: header does not match the data contract: "
                        + "; ".join(detail)], 0, classes
            for row in reader:
                if not row:
                    continue
                n_rows += 1
                if len(row) != len(COLUMNS):
                    problems.append(f"{where(reader.line_num, n_rows)}: {len(row)} values, "
                                    f"expected {len(COLUMNS)}")
                    continue
                for column, text in zip(COLUMNS, row):
                    problem = check_value(column, text)
                    if problem:
                        problems.append(f"{where(reader.line_num, n_rows)}, column '{column}': "
                                        f"{problem}")
                    elif column == TARGET:
                        classes.add(int(text))
    except FileNotFoundError:
        return [f"{path} does not exist (did prepare run in this run folder?)"], 0, classes
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return [f"cannot read {path}: {e}"], 0, classes
    if n_rows == 0 and not problems:
        problems.append(f"{os.path.basename(path)}: no data rows")
    return problems, n_rows, classes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()

    origins = {}
    try:
        with open(os.path.join(args.run_dir, SPLIT_JSON), encoding="utf-8") as f:
            origins = json.load(f).get("origins", {})
    except (OSError, ValueError):
        pass  # only used to make messages more precise

    problems, counts = [], {}
    for name in (TRAIN_CSV, TEST_CSV):
        file_problems, n_rows, classes = check_file(os.path.join(args.run_dir, name),
                                                    origins.get(name, []))
        problems += file_problems
        counts[name] = n_rows
        if name == TRAIN_CSV and not file_problems and classes != {0, 1}:
            problems.append(f"{name}: column '{TARGET}' holds only class {sorted(classes)}; "
                            f"training needs both 0 and 1")

    if problems:
        print(f"{STEP}: FAILED: {len(problems)} problem(s) in the data:", file=sys.stderr)
        for problem in problems[:MAX_REPORTED]:
            print(f"  {problem}", file=sys.stderr)
        if len(problems) > MAX_REPORTED:
            print(f"  ... and {len(problems) - MAX_REPORTED} more", file=sys.stderr)
        sys.exit(1)
    print(f"{STEP}: ok: {TRAIN_CSV} {counts[TRAIN_CSV]} rows, {TEST_CSV} {counts[TEST_CSV]} rows; "
          f"{len(FEATURES)} features finite and >= 0, no nulls, {TARGET} in {{0, 1}}")


if __name__ == "__main__":
    main()
