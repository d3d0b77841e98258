"""Token strings -> bytes of text, for every spelling a teacher or student tokenizer uses."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotspec.align import TokenStyle, Vocab, detect_style, piece_bytes, text_token

TEXTS = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72",
    "  two  spaces,\ttab\r\nCRLF and 1234 digits",
    "Janet’s ducks — 16 eggs, café, naïve, 😀 and 中文",
]


@pytest.mark.parametrize(
    ("piece", "style", "expected"),
    [
        ("Ġthe", TokenStyle.BYTE_LEVEL, b" the"),
        ("Ċ", TokenStyle.BYTE_LEVEL, b"\n"),
        ("ðŁĺ", TokenStyle.BYTE_LEVEL, "😀".encode()[:3]),  # a character cut in the middle
        ("▁the", TokenStyle.SENTENCEPIECE, b" the"),
        ("<0xE2>", TokenStyle.SENTENCEPIECE, b"\xe2"),
        ("<0xE2>x", TokenStyle.SENTENCEPIECE, b"<0xE2>x"),  # only a whole piece is a byte
        ("##ing", TokenStyle.WORDPIECE, b"ing"),
        ("walk", TokenStyle.WORDPIECE, b" walk"),
        ("\xe2", TokenStyle.BYTES, b"\xe2"),
        (" the", TokenStyle.TEXT, b" the"),
        ("bytes:\\xe2\\x80", TokenStyle.TEXT, b"\xe2\x80"),  # OpenAI's spelling of a partial character
        ("bytes: not escapes", TokenStyle.TEXT, b"bytes: not escapes"),
    ],
)
def test_piece_bytes(piece, style, expected):
    assert piece_bytes(piece, style) == expected


@given(st.binary(max_size=12))
def test_text_token_round_trips_any_bytes(raw):
    assert piece_bytes(text_token(raw), TokenStyle.TEXT) == raw


def test_text_token_spells_partial_characters_like_openai():
    assert text_token("é".encode()[:1]) == "bytes:\\xc3"
    assert text_token(b"caf\xc3\xa9") == "café"


@pytest.mark.parametrize(
    ("fixture", "style"),
    [
        ("smollm2_tokenizer", TokenStyle.BYTE_LEVEL),
        ("byt5_tokenizer", TokenStyle.BYTES),
        ("bpe_tokenizer", TokenStyle.BYTE_LEVEL),
        ("sentencepiece_tokenizer", TokenStyle.SENTENCEPIECE),
        ("wordpiece_tokenizer", TokenStyle.WORDPIECE),
    ],
)
def test_detect_style(request, fixture, style):
    assert detect_style(request.getfixturevalue(fixture)) is style


def test_detect_style_refuses_what_it_does_not_know():
    class Opaque:
        pass

    with pytest.raises(ValueError, match="pass style="):
        detect_style(Opaque())


@pytest.mark.parametrize("fixture", ["smollm2_tokenizer", "byt5_tokenizer", "bpe_tokenizer"])
def test_lossless_vocab_spells_the_text_exactly(request, fixture):
    tokenizer = request.getfixturevalue(fixture)
    vocab = Vocab.from_tokenizer(tokenizer)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert b"".join(vocab.pieces[i] for i in ids) == text.encode("utf-8")


def test_lossy_vocab_spells_what_the_tokenizer_kept(sentencepiece_tokenizer):
    vocab = Vocab.from_tokenizer(sentencepiece_tokenizer)
    ids = sentencepiece_tokenizer("Natalia sold 48/2 = 24", add_special_tokens=False)["input_ids"]
    spelled = b"".join(vocab.pieces[i] for i in ids)
    assert spelled.split() == b"Natalia sold 48/2 24".split()  # "=" is <unk>, which spells nothing


def test_special_tokens_spell_nothing_and_are_no_candidate(smollm2_tokenizer, smollm2_vocab):
    for special_id in smollm2_tokenizer.all_special_ids:
        assert special_id in smollm2_vocab.special
        assert smollm2_vocab.pieces[special_id] == b""
    assert b"" not in smollm2_vocab.ids_by_bytes
    assert smollm2_vocab.ids_by_bytes[b" the"] == smollm2_tokenizer.convert_tokens_to_ids("Ġthe")


def test_regular_piece_wins_over_byte_fallback():
    vocab = Vocab.from_pieces(["<unk>", "<0x41>", "A", "▁A"], TokenStyle.SENTENCEPIECE, special=[0])
    assert vocab.ids_by_bytes[b"A"] == 2
    assert vocab.ids_by_bytes[b" A"] == 3


def test_id_of_maps_teacher_strings_through_bytes(smollm2_vocab):
    id_of = smollm2_vocab.id_of(TokenStyle.TEXT)
    assert id_of[" the"] == smollm2_vocab.ids_by_bytes[b" the"]
    assert id_of["no such token in any vocabulary"] == -1
    partial = "😀".encode()[:2]  # SmolLM2 has a byte-level token for the first two bytes of 😀
    assert smollm2_vocab.pieces[id_of[text_token(partial)]] == partial


def test_vocab_pickles_without_its_memos(smollm2_vocab):
    id_of = smollm2_vocab.id_of(TokenStyle.TEXT)
    assert id_of[" the"] >= 0  # fills a memo
    copy = pickle.loads(pickle.dumps(smollm2_vocab))
    assert copy == smollm2_vocab
    assert copy.id_of(TokenStyle.TEXT)[" the"] == id_of[" the"]
