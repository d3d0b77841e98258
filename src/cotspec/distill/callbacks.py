"""Training progress for people: a rich bar with loss and tokens/s, or one line per log when piped."""

from __future__ import annotations

import sys
from typing import Any

from rich.progress import TextColumn
from transformers import TrainerCallback

from ..progress import make_progress


class ProgressCallback(TrainerCallback):
    """Replaces the Trainer's tqdm bar and printed dicts (main process only).

    On a terminal: a bar over optimizer steps with ETA, the last logged loss and tokens/s. Elsewhere (CI
    logs, pipes): one line per `train.log_every` steps on stderr.
    """

    def __init__(self) -> None:
        self._progress = None
        self._task = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        self._progress = make_progress(
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tok_s]} tok/s")
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, loss="-", tok_s="-"
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self._progress is None or not logs or "loss" not in logs:
            return
        tok_s = logs.get("tokens_per_second")
        fields = {"loss": f"{logs['loss']:.4f}", "tok_s": "-" if tok_s is None else f"{tok_s:,.0f}"}
        self._progress.update(self._task, **fields)
        if self._progress.disable:
            print(
                f"step {state.global_step}/{state.max_steps}  loss {fields['loss']}  "
                f"lr {logs.get('learning_rate', 0):.3g}  {fields['tok_s']} tok/s",
                file=sys.stderr,
                flush=True,
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
