"""evaluate: score model.pkl on the held-out test.csv and write metrics.json to the run folder.

Metrics: accuracy, precision, recall, f1 (positive class 1 = benign), roc_auc (left out when the
test split holds a single class) and n_test, the number of test rows.
"""

import argparse
import os
import pickle

from mlcommon import METRICS_JSON, MODEL_PKL, TEST_CSV, fail, read_xy, write_json

STEP = "evaluate"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()

    from sklearn.metrics import (accuracy_score, f1_score, precision_score, recall_score,
                                 roc_auc_score)

    model_path = os.path.join(args.run_dir, MODEL_PKL)
    try:
        with open(model_path, "rb") as f:
            model = pickle.load(f)
    except FileNotFoundError:
        fail(STEP, f"{model_path} does not exist (did train run in this run folder?)")
    x, y = read_xy(STEP, os.path.join(args.run_dir, TEST_CSV))

    predicted = model.predict(x)
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "n_test": int(len(y)),
    }
    # A flat object of numbers (what kiln records): roc_auc is left out when it is undefined.
    if len(set(y.tolist())) == 2:
        metrics["roc_auc"] = float(roc_auc_score(y, model.predict_proba(x)[:, 1]))
    else:
        print(f"{STEP}: warning: the test split holds one class only; no roc_auc")

    write_json(os.path.join(args.run_dir, METRICS_JSON), metrics)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                      if isinstance(v, float))
    print(f"{STEP}: {shown} on {metrics['n_test']} test rows -> {METRICS_JSON}")


if __name__ == "__main__":
    main()
