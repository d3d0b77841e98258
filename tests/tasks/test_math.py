"""Math loaders on the full original files: counts, ids, golds, and errors on malformed copies."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from cotspec.errors import CotspecError
from cotspec.tasks.math import (
    asdiv_gold,
    gsm8k_dev_ids,
    load_asdiv,
    load_gsm8k,
    load_gsm8k_dev,
    load_multiarith,
    load_svamp,
    svamp_question,
)
from cotspec.tasks.scoring import canonical_number, extract_math_answer, math_is_correct


@pytest.fixture(scope="module")
def gsm8k_train(data_dir: Path):
    return load_gsm8k(data_dir, "train")


@pytest.fixture(scope="module")
def gsm8k_test(data_dir: Path):
    return load_gsm8k(data_dir, "test")


def _by_id(examples):
    return {e.id: e for e in examples}


def test_gsm8k_counts_ids_and_golds(gsm8k_train, gsm8k_test) -> None:
    assert (len(gsm8k_train), len(gsm8k_test)) == (7473, 1319)
    assert [e.id for e in gsm8k_test[:2]] == ["gsm8k/test/0", "gsm8k/test/1"]
    test = _by_id(gsm8k_test)
    assert test["gsm8k/test/0"].question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert test["gsm8k/test/0"].answer == "18"
    assert test["gsm8k/test/0"].rationale.endswith("She makes 9 * 2 = $18 every day at the farmer’s market.")
    # Thousands separators dropped (test 146 is "#### 2,125"), minus signs kept (test 489, 1113).
    assert [test[f"gsm8k/test/{i}"].answer for i in (146, 201, 489, 1113)] == ["2125", "114200", "-10", "-3"]
    assert _by_id(gsm8k_train)["gsm8k/train/5844"].answer == "-47"


def test_gsm8k_rationales_are_plain_steps(gsm8k_train, gsm8k_test) -> None:
    for example in gsm8k_train + gsm8k_test:
        assert "<<" not in example.rationale and "####" not in example.rationale
        assert example.answer == canonical_number(example.answer) and "/" not in example.answer
    # The gold rationale followed by the exemplars' closing line scores as correct for every question.
    assert all(
        math_is_correct(extract_math_answer(f"{e.rationale}\nThe answer is {e.answer}."), e.answer)
        for e in gsm8k_test
    )


def test_gsm8k_dev_is_the_papers_200_train_lines(data_dir: Path, gsm8k_train) -> None:
    dev = load_gsm8k_dev(data_dir)
    indices = np.load(data_dir / "gsm8k_prompts" / "validation_index.npy", allow_pickle=False)
    assert len(dev) == 200 and len({e.id for e in dev}) == 200
    assert [e.id for e in dev] == [f"gsm8k/train/{i}" for i in indices]
    assert frozenset(e.id for e in dev) == gsm8k_dev_ids(data_dir)
    train = _by_id(gsm8k_train)
    assert all(train[e.id] == e for e in dev)  # same example, same id: later stages exclude by id


def test_multiarith(data_dir: Path) -> None:
    examples = load_multiarith(data_dir)
    assert len(examples) == 600
    first = examples[0]
    assert first.id == "multiarith/test/0" and first.answer == "39"  # lSolutions [39.0]
    assert first.question.startswith("For Halloween Debby") and first.question.endswith("do they have left?")
    assert all(e.question == e.question.strip() for e in examples)
    assert all(e.answer == canonical_number(e.answer) for e in examples)
    raw = json.loads((data_dir / "multiarith" / "MultiArith.json").read_text(encoding="utf-8"))
    assert [e.question for e in examples] == [r["sQuestion"][1:-1] for r in raw]  # the paper's [1:-1]


def test_asdiv_a(data_dir: Path) -> None:
    examples = load_asdiv(data_dir)
    # SOURCES.md expects 1217 of the 1218 ASDiv-A ids to be numeric; its regex misses `14  (seats)`
    # (two spaces, nluds-1008), which is a plain number, so all 1218 are kept.
    assert len(examples) == 1218
    fold_ids = set()
    for fold in sorted((data_dir / "asdiv" / "nfolds" / "asdiv-a").glob("fold*.txt")):
        fold_ids |= {line.strip() for line in fold.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert {e.id for e in examples} == {f"asdiv/test/{i}" for i in fold_ids}
    by_id = _by_id(examples)
    assert by_id["asdiv/test/nluds-1008"].answer == "14"
    hilt = by_id["asdiv/test/nluds-0153"]
    assert hilt.question == "Mrs. Hilt has 50 cents. A pencil costs 5 cents. How many pencils can she buy with the money she has?"
    assert (hilt.answer, hilt.meta["unit"]) == ("10", "pencils")
    assert "3.333" in {e.answer for e in examples}  # decimal golds stay decimal
    assert examples[0].id == "asdiv/test/nluds-0001"  # ASDiv.xml order


def test_asdiv_gold_over_the_whole_xml(data_dir: Path) -> None:
    answers = [p.findtext("Answer") for p in ET.parse(data_dir / "asdiv" / "ASDiv.xml").getroot().iter("Problem")]
    parsed = [asdiv_gold(a) for a in answers]
    # SOURCES.md counts 2091 single numbers; its regex also rejects `14  (seats)` and `-(1/3)`.
    assert sum(p is not None for p in parsed) == 2093
    assert asdiv_gold("5/2") == ("5/2", None)
    assert asdiv_gold("-(1/3)") == ("-1/3", None)
    assert asdiv_gold("9 (apples)") == ("9", "apples")
    for not_numeric in ("8 (km/hour); 3 (km/hour)", "3:30 p.m.", "6th", "Yes", "Mrs. Hilt"):
        assert asdiv_gold(not_numeric) is None


def test_svamp(data_dir: Path) -> None:
    examples = load_svamp(data_dir)
    assert len(examples) == 1000
    first = examples[0]
    assert first.id == "svamp/test/0" and first.meta["svamp_id"] == "chal-1" and first.answer == "51"
    assert first.question == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack, "
        "how much do you have to pay to buy each pack?"
    )
    assert all(e.answer == canonical_number(e.answer) for e in examples)
    assert not any(" ," in e.question for e in examples)
    # Joins never double a full stop; the one ".." is in the source Body itself ("154 cards left..").
    assert [e.meta["svamp_id"] for e in examples if ".." in e.question] == ["chal-410"]


def test_svamp_question_joins_read_as_sentences(data_dir: Path) -> None:
    raw = json.loads((data_dir / "svamp" / "SVAMP.json").read_text(encoding="utf-8"))
    joins = [svamp_question(r["Body"], r["Question"])[len(r["Body"].strip()) :][:2] for r in raw]
    # 642 bodies end with a full stop; 346 end in an "If ..." clause; 12 end with a bare statement.
    assert (joins.count(" H") + joins.count(" A") + joins.count(" W") + joins.count(" T")) == 642
    assert joins.count(", ") == 346 and joins.count(". ") == 12
    assert svamp_question("Then he got 10 new customers", "How many customers does he have now?") == (
        "Then he got 10 new customers. How many customers does he have now?"
    )


@pytest.mark.parametrize("load", [load_multiarith, load_asdiv, load_svamp])
def test_every_gold_scores_when_stated(data_dir: Path, load) -> None:
    examples = load(data_dir)
    assert all(math_is_correct(extract_math_answer(f"So 1 + 1 = 2.\nThe answer is {e.answer}."), e.answer) for e in examples)
    assert not any(math_is_correct(extract_math_answer(f"The answer is {e.answer}1."), e.answer) for e in examples)


def test_unknown_split(data_dir: Path) -> None:
    with pytest.raises(CotspecError, match="split 'validation' does not exist for task gsm8k; it has train, test"):
        load_gsm8k(data_dir, "validation")


def _copy(data_dir: Path, tmp_path: Path, relpath: str) -> Path:
    target = tmp_path / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_dir / relpath, target)
    return target


def test_gsm8k_line_without_answer_names_line_and_field(data_dir: Path, tmp_path: Path) -> None:
    path = _copy(data_dir, tmp_path, "gsm8k/test.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    record = json.loads(lines[2])
    lines[2] = json.dumps({"question": record["question"]}) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(CotspecError, match=rf"^{path}:3: field 'answer' is missing$"):
        load_gsm8k(tmp_path, "test")


def test_gsm8k_solution_without_final_line(data_dir: Path, tmp_path: Path) -> None:
    path = _copy(data_dir, tmp_path, "gsm8k/test.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    record = json.loads(lines[0])
    lines[0] = json.dumps({**record, "answer": record["answer"].replace("#### ", "")}) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(CotspecError, match=rf"{path}:1: field 'answer' must end with a '#### <number>' line"):
        load_gsm8k(tmp_path, "test")


def test_svamp_ill_typed_answer_names_index_and_field(data_dir: Path, tmp_path: Path) -> None:
    path = _copy(data_dir, tmp_path, "svamp/SVAMP.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw[7]["Answer"] = "fifty"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(CotspecError, match=rf"{path}\[7\]: field 'Answer' must be a number, got a string"):
        load_svamp(tmp_path)


def test_asdiv_broken_xml_names_line(data_dir: Path, tmp_path: Path) -> None:
    for fold in range(5):
        _copy(data_dir, tmp_path, f"asdiv/nfolds/asdiv-a/fold{fold}.txt")
    path = tmp_path / "asdiv" / "ASDiv.xml"
    path.write_text("<Machine-Reading-Corpus-File>\n<ProblemSet>\n<Problem ID='x'>\n</ProblemSet>\n", encoding="utf-8")
    with pytest.raises(CotspecError, match=rf"{path}:4:\d+: not well-formed XML"):
        load_asdiv(tmp_path)


def test_missing_file_offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COTSPEC_OFFLINE", "1")
    with pytest.raises(CotspecError, match=r"missing data file multiarith/MultiArith\.json under data dir .*"
                       r"get it from https://raw\.githubusercontent\.com/kojima-takeshi188/zero_shot_cot/"):
        load_multiarith(tmp_path)
