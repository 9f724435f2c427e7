"""EASE's fit memory and time at a catalogue size (issue 37: <= 2 GB at 20,000 items).

    .venv/bin/python bench/ease_memory.py --items 20000

Seeded synthetic interactions (200,000 users, 4,000,000 Zipf-distributed picks), then
ml.rec_families.ease_weights alone: prints the seconds and the process's peak RSS before and after.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.rec_families import ease_weights


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--interactions", type=int, default=4_000_000)
    p.add_argument("--lam", type=float, default=500.0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, args.users, args.interactions)
    cols = rng.zipf(1.3, args.interactions) % args.items
    x = sp.csr_matrix((np.ones(args.interactions, np.float32), (rows, cols)), shape=(args.users, args.items))
    x.data[:] = 1.0
    before = peak_gb()
    started = time.perf_counter()
    weights = ease_weights(x, args.lam)
    seconds = time.perf_counter() - started
    print(
        f"EASE on {args.items:,} items: {seconds:.1f} s, peak RSS {peak_gb():.2f} GB "
        f"(before the fit {before:.2f} GB; the weights {weights.nbytes / 2**30:.2f} GiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
