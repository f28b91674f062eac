"""Trains a nearest-centroid classifier on a CSV of numeric features and a 0/1 `label` column.

Writes the model (the centroids) to --out and {"accuracy": ...} (on the training rows) beside it
as metrics.json. Exits 2 with a message naming the file and line when the data is missing or
malformed, so that the run fails and the webhook is told.
"""
import argparse
import csv
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        with open(args.data, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        sys.exit(f"train: cannot read {args.data}: {e.strerror}")
    if not rows or "label" not in rows[0]:
        sys.exit(f"train: {args.data}: expected a header with a 'label' column and data rows")
    features = [k for k in rows[0] if k != "label"]
    sums = {0: [0.0] * len(features), 1: [0.0] * len(features)}
    counts = {0: 0, 1: 0}
    data = []
    for line, row in enumerate(rows, start=2):
        try:
            label = int(row["label"])
            x = [float(row[k]) for k in features]
        except (TypeError, ValueError):
            sys.exit(f"train: {args.data}:{line}: expected numbers and a 0/1 label, got {row}")
        if label not in (0, 1):
            sys.exit(f"train: {args.data}:{line}: label must be 0 or 1, got {label}")
        data.append((x, label))
        counts[label] += 1
        sums[label] = [s + v for s, v in zip(sums[label], x)]
    if not counts[0] or not counts[1]:
        sys.exit(f"train: {args.data}: both labels must occur")
    centroids = {c: [s / counts[c] for s in sums[c]] for c in (0, 1)}

    def predict(x):
        dist = {c: sum((a - b) ** 2 for a, b in zip(x, centroids[c])) for c in (0, 1)}
        return min(dist, key=dist.get)

    accuracy = sum(predict(x) == y for x, y in data) / len(data)
    with open(args.out, "w") as f:
        json.dump({"features": features, "centroids": centroids}, f)
    with open(os.path.join(os.path.dirname(args.out), "metrics.json"), "w") as f:
        json.dump({"accuracy": accuracy, "rows": len(data)}, f)
    print(f"trained on {len(data)} rows: accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
