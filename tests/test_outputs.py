"""Output-path checks (the `out` setting) shared by eval, build and store export: writable, and holding only the command's own files.

Read-only media are simulated by patching `os.access` for one directory (tests run as root, for whom
permission bits stop nothing); tests/cli/test_faults_eval_build_store.py runs the same refusals against
a truly read-only mount.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cotspec.errors import ConfigError, CotspecError
from cotspec import outputs
from cotspec.outputs import BUILD_OUTPUT, EVAL_OUTPUT, check_output_dir, check_output_file, writing_output


@pytest.fixture
def read_only(monkeypatch):
    """Make `os.access` report the given directories (and nothing else) as not writable."""
    blocked: set[Path] = set()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).absolute() in blocked:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(outputs.os, "access", access)
    return lambda path: blocked.add(Path(path).absolute())


def test_a_new_directory_under_writable_ones_is_fine(tmp_path):
    check_output_dir(tmp_path / "runs" / "e", EVAL_OUTPUT)
    check_output_file(tmp_path / "exports" / "chains.jsonl")
    assert list(tmp_path.iterdir()) == []  # checking creates nothing


@pytest.mark.parametrize("check", [lambda p: check_output_dir(p, EVAL_OUTPUT), lambda p: check_output_dir(p, BUILD_OUTPUT)])
def test_a_file_is_not_an_output_directory(tmp_path, check):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(CotspecError, match=rf"^out: {path} is a file; give a directory"):
        check(path)


@pytest.mark.parametrize("check", [lambda p: check_output_dir(p, EVAL_OUTPUT), check_output_file])
def test_nothing_can_be_created_under_a_file(tmp_path, check):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(CotspecError, match=rf"^out: {path}/x/y: {path} is a file, so nothing can be created under it"):
        check(path / "x" / "y")


def test_a_directory_nobody_may_write_is_refused(tmp_path, read_only):
    media = tmp_path / "media"
    media.mkdir()
    read_only(media)
    for check in (lambda p: check_output_dir(p, EVAL_OUTPUT), check_output_file):
        with pytest.raises(CotspecError, match=rf"^out: {media}/new/run: {media} is not writable \(read-only media"):
            check(media / "new" / "run")


def test_a_build_needs_its_parent_writable_too(tmp_path, read_only):
    out = tmp_path / "media" / "data"
    out.mkdir(parents=True)
    read_only(out.parent)  # the new build is staged next to `out`, then swapped in
    check_output_dir(out, EVAL_OUTPUT)
    with pytest.raises(CotspecError, match="is not writable"):
        check_output_dir(out, BUILD_OUTPUT, replaced_whole=True)


def test_a_directory_is_ours_with_our_marker_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "summary.json.tmp").write_text("{")  # left by a kill mid-write
    check_output_dir(run, EVAL_OUTPUT)
    (run / "notes.txt").write_text("x")
    with pytest.raises(CotspecError, match=r"holds what cotspec eval did not write: other files \(notes\.txt\)"):
        check_output_dir(run, EVAL_OUTPUT)


def test_a_killed_run_that_left_only_scratch_is_ours(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json.tmp").write_text("{")
    check_output_dir(run, EVAL_OUTPUT)


def test_our_names_without_our_marker_are_someone_elses(tmp_path):
    # A plain `datasets` save has dataset_dict.json and train/ but no build.json: a build must not replace it.
    saved = tmp_path / "saved"
    (saved / "train").mkdir(parents=True)
    (saved / "dataset_dict.json").write_text("{}")
    with pytest.raises(CotspecError, match=r"other files \(dataset_dict\.json, train\)"):
        check_output_dir(saved, BUILD_OUTPUT)


def test_foreign_outputs_are_named_by_their_command(tmp_path):
    out = tmp_path / "data"
    (out / "model").mkdir(parents=True)
    for name in ("build.json", "dataset_dict.json", "config.yaml", "train_summary.json", "checkpoint-2"):
        (out / name).write_text("x")
    message = (r"holds what cotspec build did not write: "
               r"the output of cotspec train \(checkpoint-2, config\.yaml, model and 1 more\)")
    with pytest.raises(CotspecError, match=message):
        check_output_dir(out, BUILD_OUTPUT)


def test_a_directory_is_not_an_output_file(tmp_path):
    with pytest.raises(CotspecError, match=rf"^out: {tmp_path} is a directory; give a file name such as {tmp_path}/c\.parquet$"):
        check_output_file(tmp_path, example_name="c.parquet")


def test_write_errors_become_one_line(tmp_path):
    with pytest.raises(CotspecError, match=r"^out: x\.jsonl: cannot write the output: No space left on device \(/d/x\)"):
        with writing_output(Path("x.jsonl")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/x")


def test_errors_name_the_setting_not_a_flag(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(ConfigError) as err:
        check_output_dir(path, EVAL_OUTPUT, field="model_dir")
    assert err.value.field == "model_dir" and err.value.message.startswith(f"{path} is a file")
    with pytest.raises(ConfigError) as err:
        check_output_file(path / "x")
    assert err.value.field == "out" and "--" not in str(err.value)
