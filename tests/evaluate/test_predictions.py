import json

import pytest

from cotspec.errors import CotspecError
from cotspec.evaluate.predictions import PredictionFile, predictions_path, write_json_atomic


def test_paths_per_task(tmp_path):
    assert predictions_path(tmp_path, "gsm8k") == tmp_path / "predictions" / "gsm8k.jsonl"
    assert predictions_path(tmp_path, "bbh:navigate") == tmp_path / "predictions" / "bbh" / "navigate.jsonl"
    mine = predictions_path(tmp_path, "jsonl:/data/my set.jsonl")
    assert mine.parent == tmp_path / "predictions" / "jsonl" and mine.name.startswith("my set-")


def test_user_files_named_alike_get_files_of_their_own(tmp_path, monkeypatch):
    # jsonl:a/q.jsonl and jsonl:b/q.jsonl once shared predictions/jsonl/q.jsonl, and one task's were lost.
    monkeypatch.chdir(tmp_path)
    first, second = predictions_path(tmp_path, "jsonl:a/q.jsonl"), predictions_path(tmp_path, "jsonl:b/q.jsonl")
    assert first != second
    # The same file, however spelled and on every run, keeps its predictions file.
    assert predictions_path(tmp_path, f"jsonl:{tmp_path}/a/q.jsonl") == predictions_path(tmp_path, "jsonl:./a/q.jsonl") == first


def test_append_then_load_round_trip(tmp_path):
    handle = PredictionFile(tmp_path / "p.jsonl")
    handle.append({"id": "a/1", "correct": True, "output": "é ✓"})
    handle.append({"id": "a/2", "correct": False})
    handle.close()
    loaded = PredictionFile(tmp_path / "p.jsonl").load()
    assert list(loaded) == ["a/1", "a/2"]
    assert loaded["a/1"]["output"] == "é ✓"


def test_torn_last_line_is_dropped_and_cut(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a/1"}) + "\n" + '{"id": "a/2", "outp')
    assert list(PredictionFile(path).load()) == ["a/1"]
    # The torn bytes are gone, so the next append starts on a clean line.
    assert path.read_text() == json.dumps({"id": "a/1"}) + "\n"


def test_corrupt_line_in_the_middle_names_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a/1"}\nnot json\n{"id": "a/3"}\n')
    with pytest.raises(CotspecError, match=r"p\.jsonl:2: "):
        PredictionFile(path).load()


def test_atomic_json_replaces_whole_file(tmp_path):
    path = tmp_path / "s.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert not list(tmp_path.glob("*.tmp"))


def test_rewrite_in_order_puts_dataset_order_first(tmp_path):
    handle = PredictionFile(tmp_path / "p.jsonl")
    for i in (2, 0, 9, 1):
        handle.append({"id": f"t/{i}"})
    records = handle.load()
    handle.rewrite_in_order(records, ["t/0", "t/1", "t/2"])
    assert list(PredictionFile(tmp_path / "p.jsonl").load()) == ["t/0", "t/1", "t/2", "t/9"]
