"""RunState: a stage's wall time adds up over the pieces a long run is produced in."""

from __future__ import annotations

import json
import time

from cotspec.pipeline import state as state_module
from cotspec.pipeline.state import RunState


def stored(run_dir, name):
    return json.loads((run_dir / "state.json").read_text())["stages"][name]


def test_a_killed_piece_still_counts_and_a_resumed_stage_adds_to_it(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(state_module.time, "monotonic", lambda: now[0])
    first = RunState(tmp_path)
    first.start("eval_base", "sha-a", {})
    now[0] += 600
    first.tick("eval_base")  # the clock's last beat before the session ended; no finish
    assert stored(tmp_path, "eval_base")["seconds"] == 600

    second = RunState(tmp_path)  # the next session, same inputs: resumes
    second.start("eval_base", "sha-a", {})
    assert stored(tmp_path, "eval_base")["pieces"] == 2
    now[0] += 300
    second.finish("eval_base", "done")
    record = stored(tmp_path, "eval_base")
    assert (record["status"], record["seconds"], record["pieces"]) == ("done", 900, 2)

    third = RunState(tmp_path)  # other inputs redo the stage: its time starts again
    third.start("eval_base", "sha-b", {})
    now[0] += 5
    third.finish("eval_base", "done")
    assert (stored(tmp_path, "eval_base")["seconds"], stored(tmp_path, "eval_base")["pieces"]) == (5, 1)


def test_the_clock_writes_while_the_stage_runs(tmp_path):
    state = RunState(tmp_path)
    state.start("train", "sha", {})
    with state.clock("train", every=0.02):
        time.sleep(0.15)
        assert stored(tmp_path, "train")["seconds"] > 0
    assert stored(tmp_path, "train")["status"] == "running"  # the clock never finishes a stage
