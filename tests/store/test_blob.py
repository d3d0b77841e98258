"""The top-k blob layout: exact round trip, and refusal of anything that is not a whole v1 blob."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cotspec.store import blob


def _random_topk(rng: np.random.Generator, n: int, k: int) -> blob.TopK:
    ids = rng.integers(0, 50_000, size=(n, k), dtype=np.int32)
    logprobs = np.sort(rng.normal(-3, 3, size=(n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    if n and k > 1:  # a ragged position: fewer candidates than k
        ids[0, -1] = blob.PAD_ID
        logprobs[0, -1] = -np.inf
    return blob.TopK(rng.integers(0, 50_000, size=n, dtype=np.int32), ids, logprobs)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("n,k", [(0, 5), (1, 1), (37, 5), (300, 20)])
def test_round_trip_is_bit_exact(n, k, compress):
    topk = _random_topk(np.random.default_rng(n * 100 + k), n, k)
    encoded = blob.encode(topk, compress=compress)
    assert blob.peek_shape(encoded) == (n, k)
    decoded = blob.decode(encoded)
    np.testing.assert_array_equal(decoded.chosen, topk.chosen)
    np.testing.assert_array_equal(decoded.candidate_ids, topk.candidate_ids)
    # float32 in, float32 out: the bits are identical, -inf padding included.
    assert decoded.candidate_logprobs.tobytes() == topk.candidate_logprobs.tobytes()


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=12),
        elements=st.floats(width=32, allow_nan=False),
    )
)
def test_any_float32_logprobs_survive(logprobs):
    n, k = logprobs.shape
    topk = blob.TopK(np.arange(n, dtype=np.int32), np.zeros((n, k), dtype=np.int32), logprobs)
    assert blob.decode(blob.encode(topk)).candidate_logprobs.tobytes() == logprobs.tobytes()


def test_compression_pays_on_realistic_rows():
    rng = np.random.default_rng(0)
    n, k = 200, 5
    # Real top-k ids repeat a lot (a few hundred distinct tokens in a chain); logprobs are noisy floats.
    vocab = rng.integers(0, 50_000, size=300, dtype=np.int32)
    topk = blob.TopK(
        rng.choice(vocab, size=n),
        rng.choice(vocab, size=(n, k)),
        np.sort(rng.normal(-3, 3, size=(n, k)).astype(np.float32), axis=1)[:, ::-1].copy(),
    )
    raw = 4 * n + 8 * n * k
    assert len(blob.encode(topk, compress=True)) < raw


def test_truncated_blob_is_refused():
    encoded = blob.encode(_random_topk(np.random.default_rng(1), 20, 5), compress=False)
    with pytest.raises(blob.BlobError, match="expected"):
        blob.decode(encoded[:-4])
    with pytest.raises(blob.BlobError, match="header"):
        blob.decode(encoded[:5])
    compressed = blob.encode(_random_topk(np.random.default_rng(1), 20, 5))
    with pytest.raises(blob.BlobError):
        blob.decode(compressed[: len(compressed) // 2])


def test_wrong_magic_and_newer_layout_are_refused():
    encoded = bytearray(blob.encode(_random_topk(np.random.default_rng(2), 3, 2)))
    with pytest.raises(blob.BlobError, match="magic"):
        blob.decode(b"XXXX" + bytes(encoded[4:]))
    encoded[4] = blob.LAYOUT_VERSION + 1
    with pytest.raises(blob.BlobError, match="layout version"):
        blob.decode(bytes(encoded))


def test_header_layout_is_as_documented():
    encoded = blob.encode(_random_topk(np.random.default_rng(3), 7, 3), compress=False)
    magic, version, flags, k, n = struct.unpack_from("<4sBBHI", encoded)
    assert (magic, version, flags, k, n) == (b"CSTK", 1, 0, 3, 7)
    assert len(encoded) == 12 + 4 * 7 + 8 * 7 * 3


def test_inconsistent_shapes_are_a_bug_not_a_blob():
    with pytest.raises(ValueError, match="inconsistent"):
        blob.encode(blob.TopK(np.zeros(3, np.int32), np.zeros((2, 5), np.int32), np.zeros((2, 5), np.float32)))


def test_unpadded_drops_exactly_the_padding_position_by_position():
    ids = np.array([[4, 7, blob.PAD_ID], [blob.PAD_ID] * 3, [1, 2, 3]], dtype=np.int32)
    logprobs = np.array([[-0.5, -1.5, -np.inf], [-np.inf] * 3, [-0.25, -2.0, -9.0]], dtype=np.float32)
    widths, flat_ids, flat_logprobs = blob.TopK(np.array([4, 9, 1], dtype=np.int32), ids, logprobs).unpadded()
    assert widths.tolist() == [2, 0, 3]
    assert flat_ids.tolist() == [4, 7, 1, 2, 3]
    assert flat_logprobs.dtype == np.float32 and flat_logprobs.tolist() == [-0.5, -1.5, -0.25, -2.0, -9.0]
