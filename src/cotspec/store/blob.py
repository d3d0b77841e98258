"""The binary column that holds a sample's teacher tokens and top-k log-probabilities.

A teacher run keeps, for every generated position, the sampled token and the k most likely
(token, logprob) candidates. As JSON that is ~100 bytes per position; here it is 4 + 8k bytes before
compression, and token strings are stored once per store (the `tokens` intern table) and referenced by
int32 id.

Layout, version 1 (all integers little-endian)::

    offset  size  field
    0       4     magic b"CSTK"
    4       1     layout version (1)
    5       1     flags: bit 0 = body is zlib-compressed
    6       2     k: candidates per position (uint16)
    8       4     n: generated positions (uint32)
    12      ...   body (zlib stream when flag bit 0 is set), the concatenation of
                    int32[n]       id of the sampled token at each position
                    int32[n, k]    candidate token ids, most likely first, -1 = padding
                    float32[n, k]  candidate log-probabilities, -inf = padding

The header stays uncompressed so a reader can check n against the row's token count before inflating.
Log-probabilities are float32 because that is what inference servers compute them in: values
round-trip bit-exactly from what the teacher sent (a Python float from JSON rounds to the nearest
float32). Positions with fewer than k candidates (servers may return fewer, e.g. after merging
duplicates) are padded, never dropped, so position i of the blob is always token i of the text.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..constants import PAD_ID  # the layout's padding id; readers use blob.PAD_ID

MAGIC = b"CSTK"
LAYOUT_VERSION = 1
_HEADER = struct.Struct("<4sBBHI")
_FLAG_ZLIB = 1
# Level 1 keeps compression off the sampling hot path; higher levels gain little on int32/float32 data.
_ZLIB_LEVEL = 1


class BlobError(ValueError):
    """A blob that does not decode: wrong magic, unknown layout, or a body of the wrong size."""


@dataclass(frozen=True)
class TopK:
    """Decoded top-k data of one sample, as interned token ids."""

    chosen: np.ndarray
    """int32 [n]: id of the sampled token at each position."""
    candidate_ids: np.ndarray
    """int32 [n, k]: candidate token ids, most likely first; PAD_ID where a position has fewer than k."""
    candidate_logprobs: np.ndarray
    """float32 [n, k]: candidate log-probabilities; -inf where padded."""

    @property
    def n(self) -> int:
        return int(self.chosen.shape[0])

    @property
    def k(self) -> int:
        return int(self.candidate_ids.shape[1])

    def unpadded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The candidates without padding, position after position, as flat arrays (no Python per token).

        Returns (widths int32 [n]: candidates at each position; ids int32 [m]; log-probs float32 [m]), m the
        sum of the widths: position i's candidates are the widths[i] entries after those of positions < i.
        """
        real = self.candidate_ids != PAD_ID
        widths = real.sum(axis=1, dtype=np.int32)
        return widths, self.candidate_ids[real], self.candidate_logprobs[real]


def encode(topk: TopK, compress: bool = True) -> bytes:
    """Serialize `topk` in layout version 1."""
    if topk.candidate_ids.ndim != 2:
        raise ValueError(f"candidate ids must be [n, k], got shape {topk.candidate_ids.shape}")
    n, k = topk.candidate_ids.shape
    if topk.chosen.shape != (n,) or topk.candidate_logprobs.shape != (n, k):
        raise ValueError(
            f"inconsistent top-k shapes: chosen {topk.chosen.shape}, ids {topk.candidate_ids.shape}, "
            f"logprobs {topk.candidate_logprobs.shape}"
        )
    if k > 0xFFFF:
        raise ValueError(f"k={k} candidates per position exceeds the layout's uint16 limit")
    body = b"".join(
        (
            np.ascontiguousarray(topk.chosen, dtype="<i4").tobytes(),
            np.ascontiguousarray(topk.candidate_ids, dtype="<i4").tobytes(),
            np.ascontiguousarray(topk.candidate_logprobs, dtype="<f4").tobytes(),
        )
    )
    flags = 0
    if compress:
        body = zlib.compress(body, _ZLIB_LEVEL)
        flags |= _FLAG_ZLIB
    return _HEADER.pack(MAGIC, LAYOUT_VERSION, flags, k, n) + body


def peek_shape(blob: bytes) -> tuple[int, int]:
    """(n, k) from the header alone, without inflating the body."""
    if len(blob) < _HEADER.size:
        raise BlobError(f"blob is {len(blob)} bytes, shorter than its {_HEADER.size}-byte header")
    magic, version, _flags, k, n = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise BlobError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != LAYOUT_VERSION:
        raise BlobError(f"top-k layout version {version} is not supported (this cotspec reads {LAYOUT_VERSION})")
    return n, k


def decode(blob: bytes) -> TopK:
    """Inverse of `encode`; raises BlobError on anything that is not a complete version-1 blob."""
    n, k = peek_shape(blob)
    flags = blob[5]
    body = blob[_HEADER.size :]
    if flags & _FLAG_ZLIB:
        try:
            body = zlib.decompress(body)
        except zlib.error as err:
            raise BlobError(f"compressed body does not inflate: {err}") from None
    expected = 4 * n + 8 * n * k
    if len(body) != expected:
        raise BlobError(f"body is {len(body)} bytes, expected {expected} for n={n}, k={k}")
    chosen = np.frombuffer(body, dtype="<i4", count=n, offset=0)
    ids = np.frombuffer(body, dtype="<i4", count=n * k, offset=4 * n).reshape(n, k)
    logprobs = np.frombuffer(body, dtype="<f4", count=n * k, offset=4 * n + 4 * n * k).reshape(n, k)
    return TopK(chosen=chosen, candidate_ids=ids, candidate_logprobs=logprobs)
