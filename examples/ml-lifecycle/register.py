"""register: copy the model into the next version folder of a file-system model registry.

Layout: REGISTRY/v1, REGISTRY/v2, ... each holding model.pkl, model.json, metrics.json,
registration.json and MODEL_CARD.md (data hash, parameters, metrics, kiln run id, date).
--registry "" means RUN_DIR/registry, a registry private to the run.

A version is assembled in a temporary folder and renamed into place, so a reader never sees a
half-written version and two runs registering at once get different numbers. kiln runs a task at
least once, so a retried register may start again after it had already registered: the version
that records this task's KILN_IDEMPOTENCY_KEY is reported instead of registering a second copy.
"""

import argparse
import datetime
import errno
import json
import os
import re
import shutil
import tempfile

from mlcommon import (METRICS_JSON, MODEL_JSON, MODEL_PKL, TRAIN_CSV, fail, read_json,
                      sha256_file, umask, write_json)

STEP = "register"
VERSION = re.compile(r"^v([1-9][0-9]*)$")


def versions(registry):
    """Existing version numbers, ascending."""
    return sorted(int(m.group(1)) for m in map(VERSION.match, os.listdir(registry)) if m)


def already_registered(registry, key):
    """The version folder whose registration.json records idempotency key `key`, or None."""
    if not key:
        return None
    for number in versions(registry):
        path = os.path.join(registry, f"v{number}", "registration.json")
        try:
            with open(path, encoding="utf-8") as f:
                if json.load(f).get("idempotency_key") == key:
                    return f"v{number}"
        except (OSError, ValueError):
            continue
    return None


def pipeline_params():
    """Pipeline params as kiln passes them: KILN_PARAM_<NAME> environment variables."""
    prefix = "KILN_PARAM_"
    return {k[len(prefix):].lower(): v for k, v in sorted(os.environ.items())
            if k.startswith(prefix)}


def model_card(version, registration, model, metrics, params):
    def fmt(value):
        return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)

    lines = [
        f"# Model card: {registration['pipeline']} {version}",
        "",
        "| | |",
        "|---|---|",
        f"| Version | {version} |",
        f"| Registered | {registration['registered_at']} |",
        f"| kiln run id | {registration['run_id']} |",
        f"| Pipeline | {registration['pipeline']} |",
        f"| Logical date | {registration['logical_date']} |",
        f"| Model | {model['model']} (scikit-learn {model['sklearn_version']}) |",
        f"| Training data | {TRAIN_CSV}, {model['train_rows']} rows |",
        f"| Training data sha256 | `{model['train_sha256']}` |",
        "",
        "## Hyperparameters",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in sorted(model["hyperparameters"].items())]
    lines += ["", "## Metrics (held-out test split)", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(metrics.get(k))} |"
              for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "n_test")]
    lines += ["", "## Pipeline parameters", ""]
    if params:
        lines += [f"- {k}: `{v}`" for k, v in params.items()]
    else:
        lines.append("(none: not run by kiln)")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--registry", default="", help="registry folder; empty = RUN_DIR/registry")
    args = parser.parse_args()

    registry = args.registry or os.path.join(args.run_dir, "registry")
    model = read_json(STEP, os.path.join(args.run_dir, MODEL_JSON))
    metrics = read_json(STEP, os.path.join(args.run_dir, METRICS_JSON))
    model_path = os.path.join(args.run_dir, MODEL_PKL)
    if not os.path.isfile(model_path):
        fail(STEP, f"{model_path} does not exist (did train run in this run folder?)")
    train_hash = sha256_file(os.path.join(args.run_dir, TRAIN_CSV))
    if train_hash != model.get("train_sha256"):
        fail(STEP, f"{TRAIN_CSV} changed after training (sha256 {train_hash} differs from "
                   f"{MODEL_JSON}); run the pipeline again")
    try:
        os.makedirs(registry, exist_ok=True)
    except OSError as e:
        fail(STEP, f"cannot create registry folder {registry}: {e}")

    key = os.environ.get("KILN_IDEMPOTENCY_KEY", "")
    existing = already_registered(registry, key)
    if existing:
        print(f"{STEP}: already registered by this task as {os.path.join(registry, existing)}")
        return

    registration = {
        "run_id": os.environ.get("KILN_RUN_ID", "(not run by kiln)"),
        "pipeline": os.environ.get("KILN_PIPELINE", "ml-lifecycle"),
        "logical_date": os.environ.get("KILN_LOGICAL_DATE", "n/a"),
        "idempotency_key": key,
        "registered_at": datetime.datetime.now(datetime.timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "train_sha256": train_hash,
    }
    staging = tempfile.mkdtemp(dir=registry, prefix=".staging-")
    try:
        shutil.copy2(model_path, os.path.join(staging, MODEL_PKL))
        for name in (MODEL_JSON, METRICS_JSON):
            shutil.copy2(os.path.join(args.run_dir, name), os.path.join(staging, name))
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp creates 0700
        while True:
            number = (versions(registry) or [0])[-1] + 1
            version = f"v{number}"
            registration["version"] = version
            write_json(os.path.join(staging, "registration.json"), registration)
            with open(os.path.join(staging, "MODEL_CARD.md"), "w", encoding="utf-8") as f:
                f.write(model_card(version, registration, model, metrics, pipeline_params()))
            try:
                os.rename(staging, os.path.join(registry, version))
                break
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # Another run took this number between listing and renaming: take the next one.
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        fail(STEP, f"cannot write to registry {registry}: {e}")
    print(f"{STEP}: registered {os.path.join(registry, version)} "
          f"(accuracy {metrics.get('accuracy', float('nan')):.4f}, data sha256 {train_hash[:12]})")


if __name__ == "__main__":
    main()
