"""evaluate: measure the index against exact search and write metrics.json to the run folder.

recall_at_k: the share of each query's k true nearest documents (exact inner product search)
that the index returns in its k, averaged over the queries; topic_precision_at_k: the share of
the k returned documents on the query's topic; ms_per_query: search time (not a gate: it varies
by machine).
"""

import argparse
import json
import os
import time

import faiss
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    faiss.omp_set_num_threads(1)
    corpus = np.load(os.path.join(args.run_dir, "corpus.npy"))
    queries = np.load(os.path.join(args.run_dir, "queries.npy"))
    with open(os.path.join(args.run_dir, "ids.json")) as f:
        ids = json.load(f)
    index = faiss.read_index(os.path.join(args.run_dir, "index.faiss"))
    k = min(args.k, corpus.shape[0])

    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    _, truth = exact.search(queries, k)
    start = time.perf_counter()
    _, found = index.search(queries, k)
    elapsed = time.perf_counter() - start

    recall = np.mean([len(set(t) & set(f[f >= 0])) / k for t, f in zip(truth, found)])
    topics = [topic for _, topic in ids["corpus"]]
    precision = np.mean([sum(topics[j] == q[1] for j in f if j >= 0) / k
                         for q, f in zip(ids["queries"], found)])
    metrics = {f"recall_at_{k}": round(float(recall), 6),
               f"topic_precision_at_{k}": round(float(precision), 6),
               "ms_per_query": round(1000 * elapsed / len(queries), 4),
               "n_queries": len(queries)}
    with open(os.path.join(args.run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    print("evaluate: " + ", ".join(f"{name} {value}" for name, value in metrics.items()))


if __name__ == "__main__":
    main()
