"""Progress where stderr is not a terminal (plain periodic lines with rate and ETA), and the -v switch."""

from __future__ import annotations

import logging
import os
import re

import pytest
from rich.progress import Progress, TextColumn

import cotspec
from cotspec import progress as progress_module
from cotspec.progress import PlainProgress, configure_logging, make_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_plain_lines_every_five_percent_with_rate_eta_and_fields(capsys):
    clock = FakeClock()
    progress = PlainProgress(TextColumn("[bold]{task.fields[tok_s]:.0f} tok/s"), clock=clock)
    with progress:
        task = progress.add_task("eval m", total=40, tok_s=0.0)
        for step in range(40):
            clock.now += 0.5
            progress.update(task, advance=1, tok_s=10.0 * step)
    printed = lines(capsys)
    # 5% of 40 is 2 steps (1 s apart here): a line each time, the last one says done.
    assert len(printed) == 20
    assert printed[0] == "eval m: 2/40 (5%) 2/s elapsed 0:00:01 eta 0:00:19 | 10 tok/s"
    assert printed[9] == "eval m: 20/40 (50%) 2/s elapsed 0:00:10 eta 0:00:10 | 190 tok/s"
    assert printed[-1] == "eval m: 40/40 (100%) 2/s elapsed 0:00:20 done | 390 tok/s"


def test_fast_loops_print_little_and_slow_ones_at_least_every_interval(capsys):
    clock = FakeClock()
    progress = PlainProgress(clock=clock)
    with progress:
        task = progress.add_task("build", total=1000)
        for _ in range(1000):
            clock.now += 0.001  # one second in all: no step line (they wait a second), only "done"
            progress.advance(task)
    assert [line.split(" elapsed")[0] for line in lines(capsys)] == ["build: 1000/1000 (100%) 1,000/s"]

    with PlainProgress(clock=clock) as progress:
        task = progress.add_task("sampling gsm8k/train", total=10_000)
        for _ in range(5):
            clock.now += 4.0  # 0.01% per step: lines come from the 10 s interval
            progress.advance(task)
    printed = lines(capsys)
    assert [re.match(r"\S+ \S+ (\d+)/", line).group(1) for line in printed] == ["3", "5"]  # 12 s, then stop()
    assert printed[0].endswith("0.25/s elapsed 0:00:12 eta 11:06:28")


def test_resumed_totals_rate_counts_only_this_run_and_an_error_adds_no_line(capsys):
    clock = FakeClock()
    with pytest.raises(RuntimeError):
        with PlainProgress(clock=clock) as progress:
            task = progress.add_task("train", total=100, completed=50)  # resumed at step 50
            clock.now += 10
            progress.update(task, completed=60)
            clock.now += 1
            progress.update(task, completed=61)
            raise RuntimeError("boom")
    assert lines(capsys) == ["train: 60/100 (60%) 1/s elapsed 0:00:10 eta 0:00:40"]


def test_make_progress_follows_the_terminal_and_the_override(monkeypatch, capsys):
    monkeypatch.delenv(progress_module.PROGRESS_ENV, raising=False)
    assert isinstance(make_progress(), PlainProgress)  # pytest's captured stderr is no terminal
    monkeypatch.setenv(progress_module.PROGRESS_ENV, "rich")
    assert isinstance(make_progress(), Progress)
    monkeypatch.setenv(progress_module.PROGRESS_ENV, "off")
    with make_progress() as progress:
        task = progress.add_task("quiet", total=1)
        progress.advance(task)
    assert lines(capsys) == []


def test_a_real_build_reports_in_plain_lines(tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.delenv(progress_module.PROGRESS_ENV, raising=False)
    cotspec.build(gold=True, limit=4, formats="zero_shot_cot", out=tmp_path / "data", data_dir=data_dir)
    assert any(re.fullmatch(r"build: 4/4 \(100%\) \S+/s elapsed 0:00:\d\d done", line) for line in lines(capsys))


# --- logging -------------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging():
    """Put loggers and the verbosity variables back as they were (other tests rely on propagation)."""
    names = ("cotspec", *progress_module.LIBRARY_LOGGERS)
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate, list(logging.getLogger(name).handlers)) for name in names}
    env = {var: os.environ.get(var) for var in ("TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY", "HF_HUB_VERBOSITY")}
    yield
    for name, (level, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers
    for var, value in env.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value
    progress_module._verbosity_env_set = False


def test_quiet_logging_shows_warnings_only(restore_logging, capsys):
    configure_logging(verbose=False)
    logging.getLogger("cotspec.teacher.sampler").info("retrying a request")
    logging.getLogger("httpx").info("HTTP Request: POST http://x/v1/completions 200 OK")
    logging.getLogger("cotspec.distill.data").warning("dropped 3 rows longer than max_length")
    assert lines(capsys) == ["dropped 3 rows longer than max_length"]


def test_verbose_logging_shows_info_of_cotspec_and_the_libraries(restore_logging, capsys):
    from transformers.utils import logging as hf_logging

    configure_logging(verbose=True)
    configure_logging(verbose=True)  # twice: still one handler, one line per message
    logging.getLogger("cotspec.models.loading").info("dequantizing model.gguf once")
    logging.getLogger("httpx").info("HTTP Request: POST http://x/v1/completions 200 OK")
    logging.getLogger("accelerate.state").info("distributed type: NO")
    printed = lines(capsys)
    assert len(printed) == 3
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO cotspec\.models\.loading: dequantizing model\.gguf once", printed[0])
    assert "INFO httpx: HTTP Request" in printed[1] and "INFO accelerate.state: distributed type: NO" in printed[2]
    # transformers, datasets and huggingface_hub print through their own handlers, at INFO now and
    # when imported later (their verbosity variables).
    assert hf_logging.get_verbosity() == logging.INFO and os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert logging.getLogger("datasets").level == logging.INFO and os.environ["HF_HUB_VERBOSITY"] == "info"

    configure_logging(verbose=False)  # back to quiet, and the libraries' settings with it
    logging.getLogger("cotspec.models.loading").info("not shown")
    logging.getLogger("httpx").info("not shown")
    assert lines(capsys) == []
    assert hf_logging.get_verbosity() == logging.WARNING and "TRANSFORMERS_VERBOSITY" not in os.environ
