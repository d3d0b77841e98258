"""`build_training_data` end to end on the real GSM8K files and a real sample store."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from datasets import load_from_disk

from support.formats_support import raw_solution

from cotspec.errors import CotspecError
from cotspec.formats import FEATURES, FORMATS, MANIFEST, BuildConfig, build_training_data, load_training_data


@pytest.fixture(scope="module")
def full_gold(tmp_path_factory, data_dir):
    """Every format, built from GSM8K's own solutions for the whole training set."""
    out = tmp_path_factory.mktemp("gold") / "data"
    data = build_training_data(BuildConfig(out=out, gold=True, data_dir=data_dir))
    return out, data["train"]


def test_full_train_set_leaves_out_exactly_the_dev_questions(full_gold, raw_train, dev_ids):
    out, rows = full_gold
    assert len(dev_ids) == 200
    expected = {f"gsm8k/train/{i}" for i in range(len(raw_train))} - dev_ids
    assert len(expected) == 7473 - 200
    question_ids = rows["question_id"]
    assert set(question_ids) == expected
    assert Counter(rows["format"]) == {fmt: 7273 for fmt in FORMATS}
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["dev_questions_excluded"] == 200 and manifest["questions"] == 7273
    assert manifest["rows"] == len(rows) == 4 * 7273


def test_in_context_exemplars_are_other_non_dev_train_questions_with_their_gold_solutions(full_gold, raw_train, dev_ids):
    _, rows = full_gold
    columns = rows.select_columns(["format", "question_id", "exemplar_ids", "prompt"]).to_dict()
    in_context = [row for row in zip(*columns.values()) if row[0].startswith("in_context")]
    assert len(in_context) == 2 * 7273
    used = Counter()
    for fmt, question_id, shots, prompt in in_context:
        assert len(shots) == len(set(shots)) == 4
        assert question_id not in shots and not dev_ids.intersection(shots)
        used.update(shots)
        # Rebuild the prompt from the raw file alone.
        blocks = []
        for qid in [*shots, question_id]:
            record = raw_train[int(qid.rsplit("/", 1)[1])]
            steps, final = raw_solution(record)
            if fmt == "in_context_answer":
                blocks.append(f"Q: {record['question']}\nA:" + (f" The answer is {final}" if qid != question_id else ""))
            else:
                solved = f"{steps}\nThe answer is {final}".replace("\n\n", "\n")
                blocks.append(f"Q: {record['question']}\nLet's think step by step\n" + (solved if qid != question_id else ""))
        assert prompt == "\n\n".join(blocks)
    assert len(used) > 7000  # draws spread over the whole pool, not a fixed handful


def test_one_row_of_each_format_exactly(full_gold, raw_train):
    _, rows = full_gold
    record = raw_train[0]
    steps, final = raw_solution(record)
    by_id = {row["id"]: row for row in rows.select(range(4))}
    chain = f"{steps}\nThe answer is {final}"
    assert by_id["zero_shot_answer:gsm8k/train/0"]["prompt"] == f"Q: {record['question']}\nA:"
    assert by_id["zero_shot_answer:gsm8k/train/0"]["target"] == " The answer is 72"
    assert by_id["zero_shot_cot:gsm8k/train/0:gold"]["prompt"] == f"Q: {record['question']}\nLet's think step by step\n"
    assert by_id["zero_shot_cot:gsm8k/train/0:gold"]["target"] == chain
    assert by_id["in_context_answer:gsm8k/train/0"]["prompt"].endswith(f"\n\nQ: {record['question']}\nA:")
    assert by_id["in_context_answer:gsm8k/train/0"]["target"] == " The answer is 72"
    assert by_id["in_context_cot:gsm8k/train/0:gold"]["prompt"].endswith(f"\n\nQ: {record['question']}\nLet's think step by step\n")
    assert by_id["in_context_cot:gsm8k/train/0:gold"]["target"] == chain
    assert not any(row["has_logprobs"] or row["teacher_tokens"] for row in by_id.values())


def test_output_loads_with_datasets_and_has_the_documented_columns(full_gold):
    out, rows = full_gold
    reloaded = load_from_disk(str(out))["train"]
    assert reloaded.features == FEATURES
    assert len(set(reloaded["id"])) == len(reloaded)
    data, manifest = load_training_data(out)
    assert data["train"].num_rows == manifest["rows"]


def test_store_rows_keep_teacher_tokens_aligned_with_target(tmp_path, data_dir, teacher_store):
    out = tmp_path / "data"
    rows = build_training_data(BuildConfig(out=out, store=teacher_store.path, data_dir=data_dir))["train"]
    assert set(rows["question_id"]) == {"gsm8k/train/0", "gsm8k/train/1"}
    cot = [r for r in rows if r["format"] in ("zero_shot_cot", "in_context_cot")]
    assert sorted(r["id"] for r in cot if r["format"] == "zero_shot_cot") == [
        "zero_shot_cot:gsm8k/train/0:s0", "zero_shot_cot:gsm8k/train/0:s3", "zero_shot_cot:gsm8k/train/0:s4",
        "zero_shot_cot:gsm8k/train/1:s0",
    ]  # fmt: skip
    for row in cot:
        stored = teacher_store.chains[(row["question_id"], int(row["id"].rsplit(":s", 1)[1]))]
        assert row["target"] == stored.text
        if row["has_logprobs"]:
            assert "".join(row["teacher_tokens"]) == row["target"]
            assert row["teacher_tokens"] == stored.tokens
            assert row["teacher_top_tokens"] == [[t for t, _ in pos] for pos in stored.top_logprobs]
            assert row["teacher_top_logprobs"] == [[lp for _, lp in pos] for pos in stored.top_logprobs]
        else:
            assert row["teacher_tokens"] == row["teacher_top_tokens"] == row["teacher_top_logprobs"] == []
    with_lp = {r["id"] for r in cot if r["has_logprobs"]}
    assert with_lp == {f"{fmt}:gsm8k/train/{q}:s0" for fmt in ("zero_shot_cot", "in_context_cot") for q in (0, 1)}
    manifest = json.loads((out / MANIFEST).read_text())
    store = manifest["sources"]["store"]
    assert store["store_chains_logprobs_dropped_tokens_differ_from_text"] == 1
    assert store["store_chains_with_logprobs"] == 2 and store["store_dev_chains_dropped"] == 1
    assert manifest["dev_questions_excluded"] == 1
    assert manifest["formats"]["zero_shot_cot"]["rows_with_logprobs"] == 2


def test_weights_set_each_formats_share(tmp_path, data_dir):
    out = tmp_path / "weighted"
    config = BuildConfig(out=out, gold=True, limit=40, weights=(1, 1, 2, 4), data_dir=data_dir)
    rows = build_training_data(config)["train"]
    # 160 natural rows (40 per format) re-split 1:1:2:4.
    assert Counter(rows["format"]) == {"zero_shot_answer": 20, "zero_shot_cot": 20, "in_context_answer": 40, "in_context_cot": 80}
    per_question = Counter(qid for qid, fmt in zip(rows["question_id"], rows["format"]) if fmt == "in_context_cot")
    assert set(per_question.values()) == {2}  # every chain twice...
    prompts = [p for p, fmt in zip(rows["prompt"], rows["format"]) if fmt == "in_context_cot"]
    assert len(set(prompts)) == 80  # ...each copy with its own exemplars
    assert len(set(qid for qid, fmt in zip(rows["question_id"], rows["format"]) if fmt == "zero_shot_answer")) == 20
    manifest = json.loads((out / MANIFEST).read_text())
    assert [manifest["formats"][f]["share"] for f in FORMATS] == [0.125, 0.125, 0.25, 0.5]


def test_builds_are_deterministic_and_seeded(tmp_path, data_dir):
    def digest(name: str, seed: int) -> str:
        build_training_data(BuildConfig(out=tmp_path / name, gold=True, limit=20, seed=seed, data_dir=data_dir))
        return json.loads((tmp_path / name / MANIFEST).read_text())["content_sha256"]

    assert digest("a", 0) == digest("b", 0)
    assert digest("c", 1) != digest("a", 0)


def test_out_directory_handling(tmp_path, data_dir):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(CotspecError, match=r"holds what cotspec build did not write: other files \(todo\.txt\)"):
        build_training_data(BuildConfig(out=foreign, gold=True, limit=2, data_dir=data_dir))
    assert (foreign / "todo.txt").read_text() == "keep me"
    out = tmp_path / "data"
    build_training_data(BuildConfig(out=out, gold=True, limit=2, formats=("zero_shot_cot",), data_dir=data_dir))
    again = build_training_data(BuildConfig(out=out, gold=True, limit=3, formats=("zero_shot_answer",), data_dir=data_dir))
    assert again["train"]["format"] == ["zero_shot_answer"] * 3  # the earlier build was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "notes"]  # no scratch left behind
    with pytest.raises(CotspecError, match="not a `cotspec build` output"):
        load_training_data(foreign)


@pytest.mark.parametrize(
    ("added", "named"),
    [
        ({"config.yaml": "out: x\n", "model/model.safetensors": "weights"}, "the output of cotspec train"),
        ({"run.json": "{}\n", "predictions/gsm8k.jsonl": "{}\n"}, "the output of cotspec eval"),
        ({"notes.txt": "mine"}, "other files (notes.txt)"),
    ],
)
def test_a_build_holding_anything_else_is_not_replaced(tmp_path, data_dir, added, named):
    # `train --data D --out D` leaves the trained model next to the build: rebuilding D used to delete it.
    out = tmp_path / "data"
    build_training_data(BuildConfig(out=out, gold=True, limit=2, formats=("zero_shot_cot",), data_dir=data_dir))
    for name, text in added.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_text(text)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(CotspecError, match=re.escape(named)):
        build_training_data(BuildConfig(out=out, gold=True, limit=3, data_dir=data_dir))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no scratch left behind


def test_answer_only_formats_take_one_correct_chain_per_question_and_cot_formats_all(
    tmp_path, data_dir, teacher_store, gsm8k_train
):
    """The paper's recipe (Fu et al. 2023, data_utils.py `process_data_format`): the answer-only formats get
    one row per question (its first correct chain's answer: `break` after it), the CoT formats one row per
    correct chain; in-context rows carry 4 random gold exemplars."""
    config = BuildConfig(out=tmp_path / "data", store=teacher_store.path, gold=True, limit=3, data_dir=data_dir)
    rows = build_training_data(config)["train"]
    # train/0: teacher chains s0, s3, s4 and the gold solution; train/1: s0 (= gold, kept once); train/2: gold.
    chains = {"gsm8k/train/0": 4, "gsm8k/train/1": 1, "gsm8k/train/2": 1}
    per_question = Counter((fmt, qid) for fmt, qid in zip(rows["format"], rows["question_id"]))
    for qid, n_chains in chains.items():
        assert per_question["zero_shot_cot", qid] == per_question["in_context_cot", qid] == n_chains
        assert per_question["zero_shot_answer", qid] == per_question["in_context_answer", qid] == 1
    answer_of = {ex.id: ex.answer for ex in gsm8k_train[:3]}
    for row in rows:
        if row["format"].endswith("_answer"):
            assert row["target"] == f" The answer is {answer_of[row['question_id']]}"
            assert row["source"] == "gold_answer" and not row["has_logprobs"]
        if row["format"].startswith("in_context"):
            assert len(row["exemplar_ids"]) == 4 and row["question_id"] not in row["exemplar_ids"]
    manifest = json.loads((tmp_path / "data" / MANIFEST).read_text())
    assert manifest["formats"]["zero_shot_answer"]["natural_rows"] == 3
    assert manifest["formats"]["zero_shot_cot"]["natural_rows"] == 6


def test_teacher_columns_and_hash_are_the_teachers_values_exactly(tmp_path, data_dir, gsm8k_train, dev_ids):
    """The store's arrays go to Arrow without Python lists (`formats/teacher_columns.py`); what arrives must
    be what the teacher sent: every token and candidate, ragged top-k (1..5 candidates, none at some
    positions), characters JSON escapes, non-ASCII, at float32, and `content_sha256` as the lists gave it."""
    from support.formats_support import reference_content_hash, teacher_row
    from support.sample_rows import make_row, run_config

    from cotspec.store import SampleRow, SampleStore

    questions = [ex for ex in gsm8k_train[:30] if ex.id not in dev_ids][:5]
    escaped = ['"', "\\", "\t", "\x01", "é", " 🦆", "\u2028", "’s"]
    no_candidates = make_row(questions[4].id, 2, correct=True, n_tokens=6, seed=9)
    no_candidates.top_logprobs = [[] if i % 2 else position for i, position in enumerate(no_candidates.top_logprobs)]
    written: list[SampleRow] = [
        *(make_row(q.id, i, correct=True, n_tokens=4 + 11 * i, seed=7) for q in questions for i in range(2)),
        teacher_row(questions[0].id, 2, "".join(escaped), tokens=escaped),
        no_candidates,
    ]
    path = tmp_path / "teacher.db"
    with SampleStore.open(path, writable=True) as store:
        store.register_run(run_config())
        store.add_questions(questions)
        store.add_many(written)
    by_key = {(r.question_id, f"s{r.sample_index}"): r for r in written}

    rows = build_training_data(BuildConfig(out=tmp_path / "data", store=path, data_dir=data_dir))["train"].to_list()
    expected = []
    for row in rows:
        want = dict.fromkeys(("teacher_tokens", "teacher_top_tokens", "teacher_top_logprobs"), [])
        if row["format"].endswith("_cot"):
            sample = by_key[(row["question_id"], row["id"].rsplit(":", 1)[1])]
            want = {
                "teacher_tokens": sample.tokens,
                "teacher_top_tokens": [[t for t, _ in position] for position in sample.top_logprobs],
                "teacher_top_logprobs": [[float(np.float32(lp)) for _, lp in position] for position in sample.top_logprobs],
            }
        expected.append({**row, **want})
    cot = [r for r in rows if r["format"].endswith("_cot")]
    assert len(cot) == 2 * len(written) and all(r["has_logprobs"] for r in cot)
    assert rows == expected
    manifest = json.loads((tmp_path / "data" / MANIFEST).read_text())
    assert manifest["content_sha256"] == reference_content_hash(expected)
