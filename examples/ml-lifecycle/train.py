"""train: fit a classifier on train.csv and save it to model.pkl in the run folder.

--model logistic_regression (default): standardised features, then logistic regression with
inverse regularisation strength --c and at most --max-iter solver iterations.
--model random_forest: --n-estimators trees. Both are seeded with --seed.
model.json records the model kind, its hyperparameters and the hash of the training data.
"""

import argparse
import os
import pickle
import warnings

from mlcommon import (MODEL_JSON, MODEL_PKL, TRAIN_CSV, fail, read_xy, sha256_file,
                      write_json)

STEP = "train"


def build(args):
    if args.model == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        hyper = {"c": args.c, "max_iter": args.max_iter, "seed": args.seed}
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=args.c, max_iter=args.max_iter, random_state=args.seed)), hyper
    from sklearn.ensemble import RandomForestClassifier

    hyper = {"n_estimators": args.n_estimators, "seed": args.seed}
    return RandomForestClassifier(n_estimators=args.n_estimators, random_state=args.seed,
                                  n_jobs=1), hyper


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--model", default="logistic_regression",
                        choices=["logistic_regression", "random_forest"])
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--n-estimators", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.c <= 0:
        fail(STEP, f"--c must be > 0, got {args.c}")
    if args.max_iter < 1 or args.n_estimators < 1:
        fail(STEP, "--max-iter and --n-estimators must be >= 1")

    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    train_path = os.path.join(args.run_dir, TRAIN_CSV)
    x, y = read_xy(STEP, train_path)
    model, hyper = build(args)
    print(f"{STEP}: fitting {args.model} {hyper} on {len(y)} rows")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            print(f"{STEP}: warning: the solver did not converge in {args.max_iter} iterations; "
                  f"raise max_iter")
    print(f"{STEP}: training accuracy {model.score(x, y):.4f}")

    model_path = os.path.join(args.run_dir, MODEL_PKL)
    tmp = model_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, model_path)
    write_json(os.path.join(args.run_dir, MODEL_JSON), {
        "model": args.model,
        "hyperparameters": hyper,
        "sklearn_version": sklearn.__version__,
        "train_rows": int(len(y)),
        "train_sha256": sha256_file(train_path),
    })
    print(f"{STEP}: saved {MODEL_PKL}")


if __name__ == "__main__":
    main()
