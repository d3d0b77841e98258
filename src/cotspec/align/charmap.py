"""Character alignment of two texts that should be equal but are not quite.

Two tokenizations of the same text usually spell the same bytes, and then alignment needs no dynamic
programming at all (see `targets`). They differ where a tokenizer is lossy: an ``<unk>`` for ``{``,
lowercasing, NFKC, a teacher API that returned ``�`` for half a character. There we align the two
byte streams by indel edit distance (insertions and deletions cost 1, equal bytes match for free, no
substitutions: a byte is either matched to an equal byte or to nothing), which is the character edit
distance Fu et al. (2023) run between token strings, done once over the whole stream.

The DP is banded (Ukkonen): with band w it only visits cells with |i - j| <= w, which is exact whenever
the distance is <= w, because every off-diagonal step costs 1. We start with a small band and widen it
until that holds, so the cost is O((n + m) * distance) rather than O(n * m). Common prefixes and suffixes
are cut first. numba compiles the kernel when installed (`_numba`).
"""

from __future__ import annotations

import numpy as np

from ._numba import jit

_MIN_BAND = 8


@jit
def _banded_indel(a, b, band, out):  # pragma: no cover - compiled by numba
    """The cheapest alignment cost within the band. When it is <= band it is the true indel distance and
    out[j] holds the index in a matched to b[j] (or -1); otherwise out is untouched."""
    n = a.shape[0]
    m = b.shape[0]
    if abs(n - m) > band:
        return n + m
    width = 2 * band + 1
    inf = n + m + 1
    # cost[i, d] is the distance of a[:i] and b[:j] with j = i + d - band.
    cost = np.full((n + 1, width), inf, np.int32)
    for i in range(n + 1):
        j_lo = max(0, i - band)
        j_hi = min(m, i + band)
        for j in range(j_lo, j_hi + 1):
            d = j - i + band
            if i == 0:
                cost[0, d] = j
                continue
            if j == 0:
                cost[i, d] = i
                continue
            best = inf
            if d + 1 < width:  # from (i - 1, j): a[i-1] unmatched
                best = cost[i - 1, d + 1] + 1
            if d >= 1 and cost[i, d - 1] + 1 < best:  # from (i, j - 1): b[j-1] unmatched
                best = cost[i, d - 1] + 1
            if a[i - 1] == b[j - 1] and cost[i - 1, d] < best:  # match
                best = cost[i - 1, d]
            cost[i, d] = best
    distance = cost[n, m - n + band]
    if distance > band:
        return distance
    for j in range(m):
        out[j] = -1
    i = n
    j = m
    while i > 0 and j > 0:
        d = j - i + band
        if a[i - 1] == b[j - 1] and cost[i - 1, d] == cost[i, d]:
            out[j - 1] = i - 1
            i -= 1
            j -= 1
        elif d + 1 < width and cost[i - 1, d + 1] + 1 == cost[i, d]:
            i -= 1
        else:
            j -= 1
    return distance


def match_bytes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each position of ``b``, the position of ``a`` it is matched to, or -1.

    a: uint8[n], b: uint8[m] -> int64[m]. The matching is monotonic (a longest common subsequence) and
    only pairs equal bytes.
    """
    n, m = a.shape[0], b.shape[0]
    shortest = min(n, m)
    differ = np.flatnonzero(a[:shortest] != b[:shortest])
    prefix = int(differ[0]) if differ.size else shortest
    differ = np.flatnonzero(a[n - shortest + prefix :][::-1] != b[m - shortest + prefix :][::-1])
    suffix = int(differ[0]) if differ.size else shortest - prefix

    out = np.full(m, -1, np.int64)
    out[:prefix] = np.arange(prefix)
    if suffix:
        out[m - suffix :] = np.arange(n - suffix, n)
    a_mid = np.ascontiguousarray(a[prefix : n - suffix])
    b_mid = np.ascontiguousarray(b[prefix : m - suffix])
    if a_mid.size == 0 or b_mid.size == 0:
        return out
    mid = np.empty(b_mid.shape[0], np.int64)
    band = max(_MIN_BAND, abs(a_mid.shape[0] - b_mid.shape[0]))
    while True:
        cost = _banded_indel(a_mid, b_mid, band, mid)
        if cost <= band:
            break
        # cost is a real alignment's cost, so the distance is <= cost: a band of cost surely succeeds.
        # Jump there when it is near; keep doubling when a narrow band forced a detour.
        band = cost if cost <= 4 * band else 2 * band
    out[prefix : m - suffix] = np.where(mid >= 0, mid + prefix, -1)
    return out
