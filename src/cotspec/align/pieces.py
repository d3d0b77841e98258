"""Token strings as the bytes of text they stand for.

Every tokenizer writes its tokens differently: GPT-2 byte-level BPE spells a space ``Ġ`` and a newline
``Ċ``, SentencePiece spells a space ``▁`` and raw bytes ``<0xE2>``, WordPiece marks word continuations
with ``##``, ByT5 has one token per byte, and teacher APIs return decoded text with the OpenAI
``bytes:\\xe2\\x80`` spelling for tokens that end inside a UTF-8 character. Alignment compares the
*bytes of text* each token stands for, so all of these must first become bytes; that is this module.
Working on bytes (not str) is what makes byte-level artefacts line up exactly instead of fuzzily.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence


class TokenStyle(str, Enum):
    """How a token string spells the text it stands for."""

    TEXT = "text"
    """Decoded text (teacher APIs, llama.cpp); partial UTF-8 as OpenAI's ``bytes:\\xe2\\x80``."""
    BYTE_LEVEL = "byte_level"
    """GPT-2 byte-level BPE: each byte is one printable char (``Ġ`` space, ``Ċ`` newline)."""
    SENTENCEPIECE = "sentencepiece"
    """``▁`` is a space; ``<0xNN>`` is a raw byte (byte fallback)."""
    WORDPIECE = "wordpiece"
    """``##`` continues a word; any other piece starts one (we give it a leading space)."""
    BYTES = "bytes"
    """One char per byte, code point = byte value (ByT5)."""


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[int, int]:
    """GPT-2's bytes_to_unicode, inverted, as a str.translate table onto latin-1 code points."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shift)
            shift += 1
    return {char: byte for byte, char in zip(printable, chars)}


_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_OPENAI_BYTES_PREFIX = "bytes:"


def _sentencepiece_bytes(piece: str) -> bytes:
    if piece.startswith("<0x") and _SP_BYTE.fullmatch(piece):
        return bytes([int(piece[3:5], 16)])
    return piece.replace("▁", " ").encode("utf-8")


def _text_bytes(token: str) -> bytes:
    if token.startswith(_OPENAI_BYTES_PREFIX):
        # OpenAI spells a token that ends inside a UTF-8 character as "bytes:\xe2\x80" (literal escapes).
        hexes = token[len(_OPENAI_BYTES_PREFIX) :].split("\\x")
        if hexes[0] == "" and all(len(h) == 2 for h in hexes[1:]) and len(hexes) > 1:
            try:
                return bytes(int(h, 16) for h in hexes[1:])
            except ValueError:
                pass
    return token.encode("utf-8")


def piece_bytes(piece: str, style: TokenStyle) -> bytes:
    """The bytes of text that one token string of the given style stands for."""
    if style is TokenStyle.TEXT:
        return _text_bytes(piece)
    if style is TokenStyle.BYTE_LEVEL:
        try:
            return piece.translate(_byte_level_table()).encode("latin-1")
        except UnicodeEncodeError:  # an added token written as plain text, not in the byte alphabet
            return piece.encode("utf-8")
    if style is TokenStyle.SENTENCEPIECE:
        return _sentencepiece_bytes(piece)
    if style is TokenStyle.WORDPIECE:
        return piece[2:].encode("utf-8") if piece.startswith("##") else b" " + piece.encode("utf-8")
    if style is TokenStyle.BYTES:
        return piece.encode("latin-1") if len(piece) == 1 and ord(piece) < 256 else piece.encode("utf-8")
    raise ValueError(f"unknown token style {style!r}")


class _Memo(dict):
    """A dict that fills itself from ``fn`` on a miss (the hit path stays a C dict lookup).

    Alignment decodes the same few thousand token strings millions of times; this makes that a lookup.
    Cleared when it grows past ``limit`` so a stream of odd strings cannot grow it without bound.
    """

    def __init__(self, fn: Callable[[str], Any], limit: int = 1 << 20):
        super().__init__()
        self._fn = fn
        self._limit = limit

    def __missing__(self, key: str) -> Any:
        if len(self) >= self._limit:
            self.clear()
        value = self[key] = self._fn(key)
        return value


_DECODERS: dict[TokenStyle, _Memo] = {}


def piece_decoder(style: TokenStyle) -> Mapping[str, bytes]:
    """A memoized ``piece -> piece_bytes(piece, style)`` mapping (index it: ``decoder[piece]``)."""
    memo = _DECODERS.get(style)
    if memo is None:
        memo = _DECODERS[style] = _Memo(lambda piece: piece_bytes(piece, style))
    return memo


def text_token(piece: bytes) -> str:
    """The TEXT-style spelling of a token's bytes (inverse of ``piece_bytes(., TokenStyle.TEXT)``).

    What a teacher API would return for this token: its text, or ``bytes:\\xNN...`` when the bytes are
    not valid UTF-8 on their own.
    """
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return _OPENAI_BYTES_PREFIX + "".join(f"\\x{b:02x}" for b in piece)
    if text.startswith(_OPENAI_BYTES_PREFIX):  # would be misread as escapes: spell it as bytes
        return _OPENAI_BYTES_PREFIX + "".join(f"\\x{b:02x}" for b in piece)
    return text


def _decoder_types(node: Any) -> list[dict]:
    """Flatten a tokenizers decoder JSON (possibly a Sequence) into its component dicts."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [d for child in node.get("decoders", []) for d in _decoder_types(child)]
    return [node]


def detect_style(tokenizer: Any) -> TokenStyle:
    """The token style of a Hugging Face tokenizer, read from its decoder.

    Raises ValueError when the decoder is not one we know; pass the style explicitly then.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        decoder = json.loads(backend.to_str()).get("decoder")
        for part in _decoder_types(decoder):
            kind = part.get("type")
            if kind == "ByteLevel":
                return TokenStyle.BYTE_LEVEL
            if kind == "Metaspace" or (kind == "Replace" and part.get("pattern", {}).get("String") == "▁"):
                return TokenStyle.SENTENCEPIECE
            if kind == "WordPiece":
                return TokenStyle.WORDPIECE
    # ByT5 is a pure-Python tokenizer with 256 byte tokens after its specials.
    if getattr(tokenizer, "_utf_vocab_size", None) == 256 and hasattr(tokenizer, "offset"):
        return TokenStyle.BYTES
    if hasattr(tokenizer, "sp_model"):
        return TokenStyle.SENTENCEPIECE
    raise ValueError(
        f"cannot tell how {type(tokenizer).__name__} spells text in its tokens; pass style= explicitly"
    )


@dataclass(frozen=True)
class Vocab:
    """A tokenizer's vocabulary as bytes of text, both ways.

    Built once per tokenizer (``Vocab.from_tokenizer``); alignment then never calls the tokenizer.
    """

    pieces: tuple[bytes, ...]
    """Per token id, the bytes of text it stands for (``b""`` for special tokens)."""
    special: frozenset[int]
    """Ids that stand for no text (BOS, EOS, pad, unk, chat markers): never aligned, never a candidate."""
    style: TokenStyle
    ids_by_bytes: dict[bytes, int] = field(repr=False, compare=False)
    """Bytes of text -> the token id that spells exactly those bytes. Where two ids spell the same bytes
    (SentencePiece byte fallback ``<0x41>`` vs ``A``), the regular piece wins."""
    _id_memos: dict[TokenStyle, _Memo] = field(default_factory=dict, repr=False, compare=False)

    def id_of(self, style: TokenStyle) -> Mapping[str, int]:
        """A memoized ``token string in style -> id spelling the same bytes, or -1`` mapping."""
        memo = self._id_memos.get(style)
        if memo is None:
            decode, ids = piece_decoder(style), self.ids_by_bytes
            memo = self._id_memos[style] = _Memo(lambda piece: ids.get(decode[piece], -1))
        return memo

    def __len__(self) -> int:
        return len(self.pieces)

    def __reduce__(self):
        # Pickled without its memos (they hold lambdas, and are rebuilt on demand): datasets.map and
        # DataLoader workers pickle whatever holds a Vocab.
        return (Vocab, (self.pieces, self.special, self.style, self.ids_by_bytes))

    @classmethod
    def from_pieces(
        cls, raw_pieces: Sequence[str], style: TokenStyle, special: Sequence[int] = ()
    ) -> Vocab:
        """From token strings indexed by id (``tokenizer.convert_ids_to_tokens(range(V))``)."""
        special_ids = frozenset(int(i) for i in special)
        pieces = tuple(
            b"" if i in special_ids else piece_bytes(p, style) for i, p in enumerate(raw_pieces)
        )
        ids_by_bytes: dict[bytes, int] = {}
        fallback: list[tuple[bytes, int]] = []
        for i, (raw, piece) in enumerate(zip(raw_pieces, pieces)):
            if i in special_ids or not piece:
                continue
            if style is TokenStyle.SENTENCEPIECE and _SP_BYTE.fullmatch(raw):
                fallback.append((piece, i))
            else:
                ids_by_bytes.setdefault(piece, i)
        for piece, i in fallback:
            ids_by_bytes.setdefault(piece, i)
        return cls(pieces=pieces, special=special_ids, style=style, ids_by_bytes=ids_by_bytes)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, style: TokenStyle | None = None) -> Vocab:
        """From a Hugging Face tokenizer (fast or slow). The style is detected unless given.

        Added tokens that are not special (normalized=False ones hold plain text) keep their content as
        text; special tokens stand for no text.
        """
        style = detect_style(tokenizer) if style is None else style
        size = len(tokenizer)
        raw = list(tokenizer.convert_ids_to_tokens(list(range(size))))
        special = set(tokenizer.all_special_ids)
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        for token_id, token in added.items():
            if getattr(token, "special", False):
                special.add(int(token_id))
        raw = [("" if p is None else p) for p in raw]
        vocab = cls.from_pieces(raw, style, sorted(i for i in special if 0 <= i < size))
        if not added:
            return vocab
        # Non-special added tokens hold their text verbatim, not in the tokenizer's piece alphabet.
        pieces = list(vocab.pieces)
        for token_id, token in added.items():
            if int(token_id) < size and int(token_id) not in vocab.special:
                pieces[int(token_id)] = str(token.content).encode("utf-8")
        ids_by_bytes = dict(vocab.ids_by_bytes)
        for token_id, token in added.items():
            if int(token_id) < size and int(token_id) not in vocab.special:
                ids_by_bytes.setdefault(pieces[int(token_id)], int(token_id))
        return cls(pieces=tuple(pieces), special=vocab.special, style=style, ids_by_bytes=ids_by_bytes)

    def text_tokens(self, ids: Sequence[int]) -> list[str]:
        """The tokens of ``ids`` as a teacher API would spell them (TEXT style; specials dropped)."""
        return [text_token(self.pieces[i]) for i in ids if i not in self.special]
