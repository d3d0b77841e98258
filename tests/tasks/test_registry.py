"""The registry: names, the bbh group, prefixes, and errors that list what is valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import cotspec.tasks as tasks
from cotspec.errors import CotspecError
from cotspec.tasks import get_task, list_groups, list_tasks, register, resolve_tasks
from cotspec.tasks.bbh import BBH_TASK_NAMES
from cotspec.tasks.prompts import BBH_STOP, MATH_STOP


def test_builtin_tasks() -> None:
    names = list_tasks()
    assert names[:5] == ["gsm8k", "gsm8k-dev", "multiarith", "asdiv", "svamp"]
    assert names[5:] == [f"bbh:{t}" for t in BBH_TASK_NAMES]
    assert list_groups() == {"bbh": sorted(names[5:])}
    gsm8k, snarks = get_task("gsm8k"), get_task("bbh:snarks")
    assert (gsm8k.stop, gsm8k.group, gsm8k.default_split, tuple(gsm8k.splits)) == (MATH_STOP, None, "test", ("train", "test"))
    assert (snarks.stop, snarks.group) == (BBH_STOP, "bbh")
    assert get_task(" gsm8k ") is gsm8k


def test_resolve_expands_the_bbh_group_in_sorted_order() -> None:
    resolved = [t.name for t in resolve_tasks("gsm8k,svamp,bbh")]
    assert resolved[:2] == ["gsm8k", "svamp"]
    assert resolved[2:] == sorted(resolved[2:]) and len(resolved) == 29
    assert resolved[2] == "bbh:boolean_expressions" and resolved[-1] == "bbh:word_sorting"


def test_resolve_drops_duplicates_and_blanks() -> None:
    assert [t.name for t in resolve_tasks(" bbh:snarks , gsm8k,,gsm8k,bbh:snarks")] == ["bbh:snarks", "gsm8k"]
    assert len(resolve_tasks("bbh:snarks,bbh")) == 27
    assert [t.name for t in resolve_tasks(["svamp", "asdiv"])] == ["svamp", "asdiv"]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(CotspecError) as err:
        resolve_tasks("gsm8k,gsm8x")
    message = str(err.value)
    assert message.startswith("unknown task 'gsm8x' (did you mean gsm8k?); valid tasks: ")
    for valid in ("gsm8k-dev", "multiarith", "asdiv", "svamp", "bbh (group of 27)", "bbh:<task>", "jsonl:<path>"):
        assert valid in message
    with pytest.raises(CotspecError, match=r"'bbh:snark' \(did you mean bbh:snarks\?\); bbh:<task> takes one of: boolean_expressions, "):
        get_task("bbh:snark")
    with pytest.raises(CotspecError, match="bbh is a group of 27 tasks, not one task"):
        get_task("bbh")
    with pytest.raises(CotspecError, match="^tasks: names no task"):
        resolve_tasks(" , ")


def test_jsonl_prefix_makes_a_task(tmp_path: Path) -> None:
    task = get_task(f"jsonl:{tmp_path}/mine.jsonl")
    assert task.name == f"jsonl:{tmp_path}/mine.jsonl" and task.stop == MATH_STOP
    assert [t.name for t in resolve_tasks(f"gsm8k,jsonl:{tmp_path}/mine.jsonl")] == ["gsm8k", task.name]


def test_adding_a_task_is_one_register_call(monkeypatch) -> None:
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    new = dataclasses.replace(get_task("svamp"), name="svamp-copy", description="a copy")
    register(new)
    assert get_task("svamp-copy") is new and "svamp-copy" in list_tasks()
    assert resolve_tasks("svamp-copy") == [new]
    with pytest.raises(ValueError, match="already registered"):
        register(new)
    with pytest.raises(ValueError, match="already a group name"):
        register(dataclasses.replace(new, name="bbh"))


def test_one_file_named_twice_is_one_task_and_two_files_named_alike_are_two(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    same = resolve_tasks("jsonl:q.jsonl,jsonl:./q.jsonl")
    assert [t.name for t in same] == ["jsonl:q.jsonl"]
    alike = resolve_tasks("jsonl:a/q.jsonl,jsonl:b/q.jsonl")
    assert [t.name for t in alike] == ["jsonl:a/q.jsonl", "jsonl:b/q.jsonl"]
