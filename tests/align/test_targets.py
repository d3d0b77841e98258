"""align_chain: hand-made tokenizations, then properties over real tokenizers and real GSM8K text."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cotspec.align import PAD_ID, AlignedTargets, TokenStyle, Vocab, align_chain, pair_tokens, piece_bytes

LOG_HALF = math.log(0.5)


def text_vocab(*pieces: str) -> Vocab:
    """A student vocabulary written as decoded text; id 0 is a special end-of-sequence token."""
    return Vocab.from_pieces(["</s>", *pieces], TokenStyle.TEXT, special=[0])


def student(vocab: Vocab, *pieces: str | None) -> list[int]:
    """Student ids for pieces; None is the special token."""
    return [0 if p is None else vocab.ids_by_bytes[p.encode()] for p in pieces]


def own_token_first(tokens: list[str]) -> tuple[list[list[str]], list[list[float]]]:
    """Top-1 lists: each position's own token with log 0.5."""
    return [[t] for t in tokens], [[LOG_HALF] for _ in tokens]


def align(tokens, vocab, ids, top=None, k=1, style=TokenStyle.TEXT) -> AlignedTargets:
    top_tokens, top_logprobs = top if top is not None else own_token_first(tokens)
    return align_chain(tokens, top_tokens, top_logprobs, ids, vocab, k=k, teacher_style=style)


# --- hand-made cases -----------------------------------------------------------------------------


def test_merge_and_split_get_one_hot():
    vocab = text_vocab(" so", "ld", " sold", " clips")
    merged = align([" sold", " clips"], vocab, student(vocab, " so", "ld", " clips"))
    assert merged.soft.tolist() == [False, False, True]
    assert merged.teacher_index.tolist() == [-1, -1, 1]
    split = align([" so", "ld", " clips"], vocab, student(vocab, " sold", " clips"))
    assert split.soft.tolist() == [False, True]
    assert split.teacher_index.tolist() == [-1, 2]


def test_digits_grouped_versus_split():
    vocab = text_vocab("1234", "12", "34", "1", "2", "3", "4")
    grouped_teacher = align(["1234"], vocab, student(vocab, "1", "2", "3", "4"))
    assert not grouped_teacher.soft.any()
    partly = align(["12", "3", "4"], vocab, student(vocab, "1", "2", "3", "4"))
    assert partly.teacher_index.tolist() == [-1, -1, 1, 2]
    pairs = align(["1", "2", "3", "4"], vocab, student(vocab, "12", "34"))
    assert not pairs.soft.any()


def test_one_hot_rows_are_the_students_own_token_with_probability_one():
    vocab = text_vocab(" so", "ld", " sold")
    targets = align([" sold"], vocab, student(vocab, " so", "ld"), k=3)
    first, second = targets.student_ids.tolist()
    assert targets.cand_ids.tolist() == [[first, PAD_ID, PAD_ID], [second, PAD_ID, PAD_ID]]
    assert targets.cand_logprobs[:, 0].tolist() == [0.0, 0.0]
    assert np.isneginf(targets.cand_logprobs[:, 1:]).all()
    assert targets.cand_ids.dtype == np.int32 and targets.cand_logprobs.dtype == np.float32
    assert targets.coverage == 0.0


def test_candidates_map_to_student_ids_and_unknown_ones_pad():
    vocab = text_vocab(" the", " a", " an")
    tokens = [" the"]
    top = ([[" the", " a", " zebra", " an"]], [[-0.1, -2.0, -3.0, -4.0]])
    targets = align(tokens, vocab, student(vocab, " the"), top=top, k=4)
    assert targets.soft.tolist() == [True]
    assert targets.cand_ids[0].tolist() == student(vocab, " the", " a") + [PAD_ID] + student(vocab, " an")
    np.testing.assert_array_equal(targets.cand_logprobs[0], np.float32([-0.1, -2.0, -np.inf, -4.0]))


def test_k_truncates_and_short_lists_pad():
    vocab = text_vocab("x", "y", "z", "w")
    top = ([["x", "y", "z", "w"], ["y"]], [[-0.1, -1.0, -2.0, -3.0], [-0.5]])
    targets = align(["x", "y"], vocab, student(vocab, "x", "y", None), top=top, k=2)
    assert targets.cand_ids.tolist() == [student(vocab, "x", "y"), [*student(vocab, "y"), PAD_ID], [0, PAD_ID]]
    assert targets.soft.tolist() == [True, True, False]


def test_repeated_candidate_counts_once():
    # Codex returned the sampled token and then the top-5, so the sampled one is often listed twice.
    vocab = text_vocab("W", "We", "If")
    top = ([["W", "We", "W", "If"]], [[-1.1, -3.1, -1.1, -2.0]])
    targets = align(["W"], vocab, student(vocab, "W"), top=top, k=4)
    assert targets.cand_ids[0].tolist() == [*student(vocab, "W", "We"), PAD_ID, *student(vocab, "If")]
    assert np.isneginf(targets.cand_logprobs[0, 2])


def test_teacher_minus_infinity_is_no_candidate():
    vocab = text_vocab("x", "y")
    top = ([["x", "y"]], [[-0.1, -math.inf]])
    targets = align(["x"], vocab, student(vocab, "x"), top=top, k=2)
    assert targets.cand_ids[0].tolist() == [*student(vocab, "x"), PAD_ID]


def test_no_candidate_the_student_can_spell_falls_back_to_one_hot():
    vocab = text_vocab("x")
    top = ([["qq", "rr"]], [[-0.1, -1.0]])
    targets = align(["x"], vocab, student(vocab, "x"), top=top, k=2)
    assert targets.soft.tolist() == [False]
    assert targets.cand_ids[0].tolist() == [*student(vocab, "x"), PAD_ID]


def test_special_student_tokens_get_one_hot_and_the_rest_still_pairs():
    vocab = text_vocab("a", " b")
    targets = align(["a", " b"], vocab, student(vocab, None, "a", " b", None))
    assert targets.teacher_index.tolist() == [-1, 0, 1, -1]
    assert targets.cand_ids[[0, 3], 0].tolist() == [0, 0]


def test_sentencepiece_markers_and_redressed_candidates():
    # The student (Metaspace, prepends ▁ to the first word) has "▁Nat" where the teacher has "Nat".
    vocab = Vocab.from_pieces(
        ["<unk>", "▁Nat", "Nat", "alia", "▁sold", "▁The", "▁bought"], TokenStyle.SENTENCEPIECE, special=[0]
    )
    ids = [vocab.ids_by_bytes[b" Nat"], vocab.ids_by_bytes[b"alia"], vocab.ids_by_bytes[b" sold"]]
    top = (
        [["Nat", " Nat", "The"], ["alia", "al", " x"], [" sold", " bought", "sold"]],
        [[-0.2, -1.0, -2.0], [-0.1, -3.0, -4.0], [-0.3, -1.5, -5.0]],
    )
    targets = align(["Nat", "alia", " sold"], vocab, ids, top=top, k=3)
    assert targets.soft.all()
    # Position 0: the teacher's "Nat"/"The" (no space) become the student's "▁Nat"/"▁The"; " Nat" would
    # mean a different text layout (a space the teacher did not write) and is dropped.
    assert targets.cand_ids[0].tolist() == [vocab.ids_by_bytes[b" Nat"], PAD_ID, vocab.ids_by_bytes[b" The"]]
    # Position 2: same whitespace on both sides, candidates map verbatim.
    assert targets.cand_ids[2].tolist() == [vocab.ids_by_bytes[b" sold"], vocab.ids_by_bytes[b" bought"], PAD_ID]


def test_student_splits_off_the_space():
    vocab = text_vocab(" ", "4", "8", " 4")
    top = ([[" 4", " 8", "4"], ["8", "4", " 8"]], [[-0.1, -2.0, -3.0], [-0.2, -2.5, -4.0]])
    targets = align([" 4", "8"], vocab, student(vocab, " ", "4", "8"), top=top, k=3)
    assert targets.teacher_index.tolist() == [-1, 0, 1]
    # " 4" and " 8" lose their space (the student already wrote it); "4" assumed no space: dropped.
    assert targets.cand_ids[1].tolist() == [*student(vocab, "4", "8"), PAD_ID]


def test_teacher_in_byte_level_spelling():
    vocab = text_vocab(" the", " cat", "\n")
    targets = align(["Ġthe", "Ġcat", "Ċ"], vocab, student(vocab, " the", " cat", "\n"), style=TokenStyle.BYTE_LEVEL)
    assert targets.soft.all()
    assert targets.cand_ids[:, 0].tolist() == student(vocab, " the", " cat", "\n")


def test_whitespace_tokens_pair_only_with_the_same_whitespace():
    vocab = text_vocab("a", "b", "\n", "\n\n", " ")
    same = align(["a", "\n", "b"], vocab, student(vocab, "a", "\n", "b", None))
    assert same.teacher_index.tolist() == [0, 1, 2, -1]
    doubled = align(["a", "\n\n", "b"], vocab, student(vocab, "a", "\n", "\n", "b"))
    assert doubled.teacher_index.tolist() == [0, -1, -1, 2]
    runs = align(["a", "\n", "\n", " ", "b"], vocab, student(vocab, "a", "\n", " ", "b"))
    assert runs.teacher_index.tolist() == [0, 1, -1, 4]
    # The pairing itself (before candidates): the r-th blank at an offset meets the r-th, if equal.
    assert pair_tokens([b"a", b"\n", b"\n", b" ", b"b"], [b"a", b"\n", b" ", b"b"]).tolist() == [0, 1, -1, 4]
    assert pair_tokens([b"a", b"\n", b" ", b"b"], [b"a", b"\n", b" ", b"b"]).tolist() == [0, 1, 2, 3]
    assert pair_tokens([b"a\n", b" ", b"b"], [b"a", b"\n", b" ", b"b"]).tolist() == [0, -1, -1, 2]


def test_unicode_bytes_against_a_byte_tokenizer(byt5_tokenizer):
    vocab = Vocab.from_tokenizer(byt5_tokenizer)
    ids = byt5_tokenizer("café", add_special_tokens=False)["input_ids"]
    whole = align(["caf", "é"], vocab, ids)
    assert whole.soft.tolist() == [False, False, False, False, False]  # "é" is 2 bytes to ByT5
    halves = align(["c", "a", "f", "bytes:\\xc3", "bytes:\\xa9"], vocab, ids)
    assert halves.soft.all()
    assert halves.cand_ids[:, 0].tolist() == ids


def test_lossy_student_pairs_around_what_it_lost():
    # The student has no "{" or "}" (it wrote <unk>, a special token spelling nothing) and lowercases.
    vocab = text_vocab("x", "=", "2", "<unk>", "the", " cat")
    unk = 0
    ids = [vocab.ids_by_bytes[b"x"], unk, vocab.ids_by_bytes[b"="], vocab.ids_by_bytes[b"2"], unk,
           vocab.ids_by_bytes[b"the"], vocab.ids_by_bytes[b" cat"]]  # fmt: skip
    targets = align(["x", "{", "=", "2", "}", "The", " cat"], vocab, ids)
    assert targets.teacher_index.tolist() == [0, -1, 2, 3, -1, -1, 6]
    # A byte lost *inside* a token: "ab" is not the text of "a{b", even though both its bytes match.
    assert pair_tokens([b"x", b"a{b", b"y"], [b"x", b"ab", b"y"]).tolist() == [0, -1, 2]


def test_monotonic_even_when_the_texts_differ_a_lot():
    vocab = text_vocab("ab", "ba", "a", "b")
    teacher = ["ab", "ba", "ab", "ba"]
    ids = student(vocab, "ba", "ab", "a", "b", "ab")
    index = pair_tokens([t.encode() for t in teacher], [vocab.pieces[i] for i in ids])
    paired = index[index >= 0]
    assert (np.diff(paired) > 0).all()


def test_mismatched_lengths_are_refused():
    vocab = text_vocab("x")
    with pytest.raises(ValueError, match="teacher tokens"):
        align_chain(["x", "x"], [["x"]], [[-0.1]], [1], vocab, k=1)
    with pytest.raises(ValueError, match="differ in length"):
        align_chain(["x"], [["x", "x"]], [[-0.1]], [1], vocab, k=2)


# --- properties over real tokenizers ---------------------------------------------------------------

ALPHABET = list("abcxyz ABCZ0123456789 .,$=+-*/%()\n\n  ’é😀中{}<>#")
K = 4


def texts(rationales: list[str]):
    made_up = st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=60)
    return st.one_of(st.sampled_from(rationales), made_up)


def stripped(piece: bytes) -> bytes:
    return b"".join(piece.split())


def check_invariants(targets: AlignedTargets, teacher_tokens: list[str], ids: list[int], vocab: Vocab) -> None:
    """What every alignment must satisfy, whatever the tokenizers."""
    size = len(ids)
    assert targets.student_ids.tolist() == ids
    assert targets.cand_ids.shape == targets.cand_logprobs.shape == (size, K)
    assert targets.soft.shape == targets.teacher_index.shape == (size,)
    # Every position has a target: at least one candidate; padding exactly where log-prob is -inf.
    assert ((targets.cand_ids != PAD_ID).any(axis=1)).all()
    assert ((targets.cand_ids == PAD_ID) == np.isneginf(targets.cand_logprobs)).all()
    hard = ~targets.soft
    assert (targets.cand_ids[hard, 0] == targets.student_ids[hard]).all()
    assert (targets.cand_logprobs[hard, 0] == 0).all()
    assert (targets.teacher_index[hard] == -1).all()
    # Monotonic: soft rows come from strictly increasing teacher positions.
    sources = targets.teacher_index[targets.soft]
    assert (np.diff(sources) > 0).all()
    assert (sources < len(teacher_tokens)).all()
    for row in np.flatnonzero(targets.soft):
        student_piece = vocab.pieces[ids[row]]
        teacher_piece = piece_bytes(teacher_tokens[targets.teacher_index[row]], TokenStyle.TEXT)
        # Same text on both sides, whitespace aside; whitespace-only tokens must be the same whitespace.
        assert stripped(student_piece) == stripped(teacher_piece)
        assert stripped(student_piece) or student_piece == teacher_piece
        # ... and the most likely candidate (the teacher's own token, by construction) spells it too.
        best = targets.cand_ids[row, int(np.argmax(targets.cand_logprobs[row]))]
        assert stripped(vocab.pieces[best]) == stripped(student_piece)
        real = targets.cand_ids[row][targets.cand_ids[row] != PAD_ID]
        assert len(set(real.tolist())) == len(real)  # no candidate twice


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_identical_tokenizers_take_the_identity_path(
    data, smollm2_tokenizer, smollm2_vocab, gsm8k_rationales, synthetic_chain
):
    text = data.draw(texts(gsm8k_rationales))
    ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens, top_tokens, top_logprobs = synthetic_chain(smollm2_vocab, ids, K)
    targets = align_chain(tokens, top_tokens, top_logprobs, ids, smollm2_vocab, k=K)
    check_invariants(targets, tokens, ids, smollm2_vocab)
    assert targets.coverage == 1.0
    assert targets.teacher_index.tolist() == list(range(len(ids)))
    assert targets.cand_ids[:, 0].tolist() == ids


STUDENTS = ["byt5_tokenizer", "bpe_tokenizer", "sentencepiece_tokenizer", "wordpiece_tokenizer"]


@pytest.mark.parametrize("student_fixture", STUDENTS)
def test_different_tokenizers_keep_every_invariant(
    request, student_fixture, smollm2_tokenizer, smollm2_vocab, gsm8k_rationales, synthetic_chain
):
    student_tokenizer = request.getfixturevalue(student_fixture)
    student_vocab = Vocab.from_tokenizer(student_tokenizer)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=texts(gsm8k_rationales))
    def check(text):
        teacher_ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens, top_tokens, top_logprobs = synthetic_chain(smollm2_vocab, teacher_ids, K)
        ids = student_tokenizer(text, add_special_tokens=False)["input_ids"]
        targets = align_chain(tokens, top_tokens, top_logprobs, ids, student_vocab, k=K)
        check_invariants(targets, tokens, ids, student_vocab)

    check()


def reference_pairs(t_pieces: list[bytes], s_pieces: list[bytes]) -> list[int]:
    """Pairing written the slow, obvious way, for texts that are equal up to whitespace."""

    def spans(pieces):
        out, offset = [], 0
        for piece in pieces:
            out.append((offset, offset + len(stripped(piece))))
            offset = out[-1][1]
        return out

    t_spans, s_spans = spans(t_pieces), spans(s_pieces)
    result = []
    for j, (span, piece) in enumerate(zip(s_spans, s_pieces)):
        if span[1] > span[0]:
            result.append(t_spans.index(span) if span in t_spans else -1)
            continue
        # A whitespace-only token: the r-th at its offset against the teacher's r-th there.
        rank = sum(1 for q in range(j) if s_spans[q] == span and s_spans[q][0] == s_spans[q][1])
        teacher_blanks = [i for i, s in enumerate(t_spans) if s == span]
        i = teacher_blanks[rank] if rank < len(teacher_blanks) else -1
        result.append(i if i >= 0 and piece and t_pieces[i] == piece else -1)
    return result


@pytest.mark.parametrize("student_fixture", ["byt5_tokenizer", "bpe_tokenizer"])
def test_pairing_matches_the_obvious_reference(
    request, student_fixture, smollm2_tokenizer, smollm2_vocab, gsm8k_rationales
):
    student_tokenizer = request.getfixturevalue(student_fixture)
    student_vocab = Vocab.from_tokenizer(student_tokenizer)

    @settings(max_examples=40, deadline=None)
    @given(text=texts(gsm8k_rationales))
    def check(text):
        t_pieces = [smollm2_vocab.pieces[i] for i in smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]]
        s_pieces = [student_vocab.pieces[i] for i in student_tokenizer(text, add_special_tokens=False)["input_ids"]]
        assert pair_tokens(t_pieces, s_pieces).tolist() == reference_pairs(t_pieces, s_pieces)

    check()


def test_coverage_on_real_gsm8k_rationales(
    smollm2_tokenizer, smollm2_vocab, bpe_tokenizer, gsm8k_rationales, synthetic_chain
):
    """SmolLM2 as teacher (synthetic top-k), a small BPE as student, on 200 real gold rationales."""
    student_vocab = Vocab.from_tokenizer(bpe_tokenizer)
    soft = total = 0
    for text in gsm8k_rationales:
        teacher_ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
        student_ids = bpe_tokenizer(text, add_special_tokens=False)["input_ids"]
        targets = align_chain(*synthetic_chain(smollm2_vocab, teacher_ids, K), student_ids, student_vocab, k=K)
        soft += int(targets.soft.sum())
        total += len(targets)
    # Both are byte-level BPEs over the same text, so most tokens (digits, common words, punctuation)
    # come out the same; a broken span merge would drop this towards 0.
    assert soft / total > 0.5
