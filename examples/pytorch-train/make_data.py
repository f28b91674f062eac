"""make_data: generate the two-moons data set (scikit-learn, seeded) and split it.

Writes data.npz to the run folder: x_train, y_train, x_val, y_val (float32 features, int64
labels). Nothing is downloaded; the same seed gives the same file.
"""

import argparse
import os

import numpy as np
from sklearn.datasets import make_moons


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.samples < 10:
        raise SystemExit(f"make_data: --samples must be at least 10, got {args.samples}")

    x, y = make_moons(n_samples=args.samples, noise=args.noise, random_state=args.seed)
    order = np.random.RandomState(args.seed).permutation(len(x))
    n_val = len(x) // 5
    val, train = order[:n_val], order[n_val:]
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, x_train=x[train].astype(np.float32), y_train=y[train].astype(np.int64),
             x_val=x[val].astype(np.float32), y_val=y[val].astype(np.int64))
    os.replace(tmp, args.out)
    print(f"make_data: {len(train)} training and {n_val} validation points "
          f"(noise {args.noise}, seed {args.seed}) -> {args.out}")


if __name__ == "__main__":
    main()
