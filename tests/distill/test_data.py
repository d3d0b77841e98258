"""Tokenizing built rows for a student: continuation-exact targets, teacher top-k aligned across
tokenizers, overlong rows dropped and counted, and a cache keyed on everything that changes a token."""

from __future__ import annotations

import pytest
from transformers import ByT5Tokenizer

from cotspec.errors import ConfigError
from cotspec.distill.data import TokenizeSettings, tokenize_rows
from cotspec.formats import load_training_data


def settings(**changes) -> TokenizeSettings:
    base = dict(is_seq2seq=False, keeps_newlines=True, max_length=512, objective="kd", top_k=None)
    return TokenizeSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def built(kd_data):
    rows, manifest = load_training_data(kd_data)
    return rows["train"], manifest


def test_decoder_only_rows_and_aligned_teacher(built, student_bpe_tokenizer, tmp_path):
    rows, manifest = built
    tok = student_bpe_tokenizer
    data = tokenize_rows(rows, manifest, tok, settings(), cache_dir=tmp_path)
    assert data.top_k == 5 and len(data.dataset) == len(rows)
    soft_positions = 0
    for source, row in zip(rows, data.dataset):
        prompt_ids, target_ids = row["prompt_ids"], row["target_ids"]
        # The target is what follows the prompt's own tokens in the joint tokenization, then EOS.
        assert prompt_ids == tok(source["prompt"])["input_ids"]
        assert prompt_ids + target_ids[:-1] == tok(source["prompt"] + source["target"])["input_ids"]
        assert target_ids[-1] == tok.eos_token_id
        if not source["has_logprobs"]:
            assert row["soft"] == [] and row["cand_ids"] == []
            continue
        k = data.top_k
        assert len(row["soft"]) == len(target_ids) and len(row["cand_ids"]) == k * len(target_ids)
        assert not row["soft"][-1]  # EOS: no teacher knowledge, one-hot
        for t, soft in enumerate(row["soft"]):
            # Soft rows exist where one teacher token spells exactly this student token; the synthetic
            # teacher ranks its own token first, so slot 0 is the student's target token. One-hot rows
            # hold the target token in slot 0 as well.
            assert row["cand_ids"][t * k] == target_ids[t]
            soft_positions += soft
    assert soft_positions == data.stats["soft_target_tokens"] > 0
    assert data.stats["rows_per_format"] == {"zero_shot_answer": 12, "zero_shot_cot": 12}


def test_cache_hit_and_key(built, student_bpe_tokenizer, tmp_path):
    rows, manifest = built
    first = tokenize_rows(rows, manifest, student_bpe_tokenizer, settings(), cache_dir=tmp_path)
    again = tokenize_rows(rows, manifest, student_bpe_tokenizer, settings(), cache_dir=tmp_path)
    assert not first.stats["cache_hit"] and again.stats["cache_hit"]
    assert again.stats["cache"] == first.stats["cache"]
    assert again.dataset["target_ids"] == first.dataset["target_ids"]
    other = tokenize_rows(rows, manifest, student_bpe_tokenizer, settings(top_k=2), cache_dir=tmp_path)
    assert not other.stats["cache_hit"] and other.top_k == 2
    byt5 = tokenize_rows(rows, manifest, ByT5Tokenizer(), settings(), cache_dir=tmp_path)
    assert not byt5.stats["cache_hit"]  # another tokenizer is another entry
    assert len({first.stats["cache"], other.stats["cache"], byt5.stats["cache"]}) == 3


def test_overlong_rows_are_dropped_and_counted(built, student_bpe_tokenizer, tmp_path):
    rows, manifest = built
    data = tokenize_rows(rows, manifest, student_bpe_tokenizer, settings(max_length=80), cache_dir=tmp_path)
    dropped = data.stats["dropped_too_long"]
    assert dropped.get("zero_shot_cot", 0) > 0
    assert data.stats["rows"] + sum(dropped.values()) == len(rows)
    assert max(data.dataset["length"]) <= 80
    too_short = r"^data.max_length: every one of the \d+ rows is longer than 8 student tokens"
    with pytest.raises(ConfigError, match=too_short) as err:
        tokenize_rows(rows, manifest, student_bpe_tokenizer, settings(max_length=8), cache_dir=tmp_path)
    assert err.value.field == "data.max_length"


def test_seq2seq_rows_and_newline_handling(built, tmp_path):
    rows, manifest = built
    tok = ByT5Tokenizer()
    newline = tok("\n", add_special_tokens=False)["input_ids"][0]
    data = tokenize_rows(rows, manifest, tok, settings(is_seq2seq=True, keeps_newlines=False), cache_dir=tmp_path)
    for source, row in zip(rows, data.dataset):
        assert row["prompt_ids"][-1] == row["target_ids"][-1] == tok.eos_token_id  # T5 style: both end in </s>
        assert newline not in row["prompt_ids"] and newline not in row["target_ids"]
        assert row["target_ids"] == tok(source["target"].replace("\n", " "))["input_ids"]
    assert data.stats["soft_target_tokens"] > 0  # alignment ignores the newline/space difference


def test_cross_entropy_runs_skip_alignment(built, student_bpe_tokenizer, tmp_path):
    rows, manifest = built
    data = tokenize_rows(rows, manifest, student_bpe_tokenizer, settings(objective="ce"), cache_dir=tmp_path)
    assert data.top_k == 0 and all(not soft for soft in data.dataset["soft"])
