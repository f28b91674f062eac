"""embed: turn the corpus and the queries into unit vectors (TF-IDF, then truncated SVD).

Reads corpus.jsonl and queries.jsonl (one {"id", "topic", "text"} object per line) and writes to
the run folder: corpus.npy and queries.npy (float32, one L2-normalised row each) and ids.json
(the ids and topics, in row order). Nothing is downloaded; the same files and seed give the same
vectors.
"""

import argparse
import json
import os

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer


def read(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rows.append((str(row["id"]), str(row["topic"]), str(row["text"])))
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"embed: {path} line {n}: not an object with id, topic, text: {e}")
    if not rows:
        raise SystemExit(f"embed: {path} holds no document")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--run-dir", required=True)
    args = parser.parse_args()

    corpus, queries = read(args.corpus), read(args.queries)
    tfidf = TfidfVectorizer().fit([text for _, _, text in corpus])
    dim = max(2, min(args.dim, len(tfidf.vocabulary_) - 1))
    svd = TruncatedSVD(n_components=dim, random_state=args.seed).fit(
        tfidf.transform([text for _, _, text in corpus]))

    def vectors(rows):
        v = svd.transform(tfidf.transform([text for _, _, text in rows])).astype(np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v

    np.save(os.path.join(args.run_dir, "corpus.npy"), vectors(corpus))
    np.save(os.path.join(args.run_dir, "queries.npy"), vectors(queries))
    with open(os.path.join(args.run_dir, "ids.json"), "w") as f:
        json.dump({"corpus": [[i, t] for i, t, _ in corpus],
                   "queries": [[i, t] for i, t, _ in queries]}, f)
    print(f"embed: {len(corpus)} documents and {len(queries)} queries as {dim}-dimensional "
          f"unit vectors ({len(tfidf.vocabulary_)} words)")


if __name__ == "__main__":
    main()
