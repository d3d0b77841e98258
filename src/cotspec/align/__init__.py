"""Carry a teacher's top-k log-probs over to a student that tokenizes the same text differently."""

from __future__ import annotations

from ._numba import HAVE_NUMBA
from .charmap import match_bytes
from .pieces import TokenStyle, Vocab, detect_style, piece_bytes, text_token
from .spans import pair_tokens
from .targets import PAD_ID, AlignedTargets, align_chain

__all__ = [
    "HAVE_NUMBA",
    "PAD_ID",
    "AlignedTargets",
    "TokenStyle",
    "Vocab",
    "align_chain",
    "detect_style",
    "match_bytes",
    "pair_tokens",
    "piece_bytes",
    "text_token",
]
