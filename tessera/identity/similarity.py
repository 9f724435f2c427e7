"""Jaro-Winkler similarity as DuckDB computes it, for the matcher on Spark.

Splink's Spark jar counts half a transposition where DuckDB (the rapidfuzz algorithm it bundles)
rounds the transpositions down: 'tiana' / 'matilda' scores 0.665 on the jar and 0.707 on DuckDB,
either side of the 0.7 level, and on fake_1000 a few hundred pairs fell in another level, which
moved 22 records to another cluster. This function takes DuckDB's steps, so the scores are the same
doubles (tests/test_identity_spark.py checks it against DuckDB): a window of max(length) // 2 - 1
around each character of the second string; the lowest unmatched position of the first string in
it taken; transpositions halved and rounded down; the Winkler boost of the common prefix (at most 4
characters) only above 0.7, its multiply and add fused into one rounding as DuckDB's build does.

Characters are compared as characters; DuckDB compares bytes, so a value with non-ASCII letters
(an email) may score differently. Standard library only: Spark ships it to its Python workers by
value (spark.py), so they need no tessera install.
"""

from __future__ import annotations

_SPLIT = 134217729.0  # 2 ** 27 + 1: Dekker's split of a double into two halves


def _fused_multiply_add(x: float, y: float, z: float) -> float:
    """x * y + z rounded once: the exact product as two doubles (Dekker), added to z with the
    rounding error of the sum kept (Knuth's two-sum). Python 3.11 has no math.fma."""
    cx, cy = _SPLIT * x, _SPLIT * y
    xh, yh = cx - (cx - x), cy - (cy - y)
    xl, yl = x - xh, y - yh
    ph = x * y
    pl = ((xh * yh - ph) + xh * yl + xl * yh) + xl * yl
    sh = z + ph
    bb = sh - z
    return sh + (((z - (sh - bb)) + (ph - bb)) + pl)


def jaro_winkler(a: str | None, b: str | None) -> float | None:
    """DuckDB's jaro_winkler_similarity(a, b); None when either is None."""
    if a is None or b is None:
        return None
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    if la == 1 and lb == 1:
        return float(a == b)
    bound = max(la, lb) // 2 - 1
    flagged = [False] * la
    matched_b = []
    for j, ch in enumerate(b):
        for i in range(max(0, j - bound), min(la - 1, j + bound) + 1):
            if not flagged[i] and a[i] == ch:
                flagged[i] = True
                matched_b.append(j)
                break
    m = len(matched_b)
    if not m:
        return 0.0
    matched_a = [i for i in range(la) if flagged[i]]
    transpositions = sum(a[i] != b[j] for i, j in zip(matched_a, matched_b, strict=True)) // 2
    sim = m / la
    sim += m / lb
    sim += (m - transpositions) / m
    sim /= 3.0
    if sim > 0.7:
        prefix = 0
        while prefix < min(la, lb, 4) and a[prefix] == b[prefix]:
            prefix += 1
        sim = _fused_multiply_add(prefix * 0.1, 1.0 - sim, sim)
    return sim
