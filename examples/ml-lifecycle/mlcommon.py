"""Shared pieces of the ml-lifecycle example: the data contract and small file helpers.

The data contract is the list of columns below: 30 numeric features of scikit-learn's bundled
breast cancer data set (Wisconsin diagnostic), in snake_case, followed by the integer target
(0 = malignant, 1 = benign). prepare.py writes files with these columns, check_data.py enforces
them, train.py and evaluate.py rely on them.
"""

import csv
import hashlib
import json
import os
import sys
import tempfile

FEATURES = [
    "mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness",
    "mean_compactness", "mean_concavity", "mean_concave_points", "mean_symmetry",
    "mean_fractal_dimension",
    "radius_error", "texture_error", "perimeter_error", "area_error", "smoothness_error",
    "compactness_error", "concavity_error", "concave_points_error", "symmetry_error",
    "fractal_dimension_error",
    "worst_radius", "worst_texture", "worst_perimeter", "worst_area", "worst_smoothness",
    "worst_compactness", "worst_concavity", "worst_concave_points", "worst_symmetry",
    "worst_fractal_dimension",
]
TARGET = "target"
COLUMNS = FEATURES + [TARGET]

# Files inside the run folder ({{ run.dir }}).
DATA_CSV = "data.csv"      # every input row, as it came
TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
SPLIT_JSON = "split.json"    # where each row of train.csv / test.csv came from
MODEL_PKL = "model.pkl"
MODEL_JSON = "model.json"    # model kind, hyperparameters, training data hash
METRICS_JSON = "metrics.json"


def fail(step, message, code=1):
    """Prints `step: error: message` to stderr and exits with `code`."""
    print(f"{step}: error: {message}", file=sys.stderr)
    sys.exit(code)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path, text):
    """Writes `text` to `path` through a temporary file and a rename: a reader never sees half."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, value):
    write_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(step, path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        fail(step, f"{path} does not exist (did the upstream task run in this run folder?)")
    except (OSError, ValueError) as e:
        fail(step, f"cannot read {path}: {e}")


def read_xy(step, path):
    """Reads a CSV that passed check_data into (features, target) numpy arrays."""
    import numpy as np

    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != COLUMNS:
                fail(step, f"{path}: columns differ from the data contract (run check_data.py)")
            rows = [row for row in reader if row]
    except FileNotFoundError:
        fail(step, f"{path} does not exist (did the upstream task run in this run folder?)")
    if not rows:
        fail(step, f"{path} has no data rows")
    try:
        x = np.array([[float(v) for v in row[:-1]] for row in rows], dtype=float)
        y = np.array([int(row[-1]) for row in rows], dtype=int)
    except ValueError as e:
        fail(step, f"{path}: {e} (run check_data.py for the row and column)")
    return x, y
