"""build_index: build a FAISS inverted-file index (IndexIVFFlat, inner product) of the corpus.

nlist clusters are trained on the corpus vectors; a search looks into the nprobe nearest of
them, so fewer probes are faster and may miss neighbours. Writes index.faiss to the run folder.
"""

import argparse
import os

import faiss
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--nlist", type=int, default=16)
    parser.add_argument("--nprobe", type=int, default=4)
    args = parser.parse_args()

    faiss.omp_set_num_threads(1)
    vectors = np.load(os.path.join(args.run_dir, "corpus.npy"))
    n, dim = vectors.shape
    if not 1 <= args.nlist <= n or not 1 <= args.nprobe <= args.nlist:
        raise SystemExit(f"build_index: need 1 <= nprobe <= nlist <= {n} documents, "
                         f"got nlist {args.nlist}, nprobe {args.nprobe}")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, args.nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    index.train(vectors)
    index.add(vectors)
    index.nprobe = args.nprobe
    path = os.path.join(args.run_dir, "index.faiss")
    faiss.write_index(index, path + ".tmp")
    os.replace(path + ".tmp", path)
    print(f"build_index: {index.ntotal} vectors in {args.nlist} lists, nprobe {args.nprobe} "
          f"-> index.faiss")


if __name__ == "__main__":
    main()
