"""Read a `cotspec run` directory into plain dataclasses: evaluations, selection, loss, sampling, versions.

Everything a report shows comes from here, so the tables and plots never touch a file. The layout read
(written by `cotspec run`)::

    <run>/config.yaml  state.json  versions.json  selection.json
    <run>/teacher/samples.db                         sample store
    <run>/data/build.json                            the training set's manifest
    <run>/train/checkpoint-N/trainer_state.json      loss curve (log_history); train_summary.json
    <run>/eval/<model>/<suite>-<mode>/summary.json   <model>: base, step-<N>, teacher
    <run>/model/                                     the selected model

A part that is missing (no teacher, no selection yet, one mode only) becomes a line in `RunData.skipped`
and is left out of the report; a summary file that is missing from an evaluation directory, or that
cannot be read, is a one-line `CotspecError` naming it.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CotspecError

SUMMARY = "summary.json"
BASE, TEACHER = "base", "teacher"
SUITES = ("dev", "test")
MODES = ("few-shot", "zero-shot")
"""In-context (few-shot) first, as the paper's Table 1 orders its columns."""
_STEP_MODEL = re.compile(r"^step-(\d+)$")
_EVAL_DIR = re.compile(r"^(dev|test)-(few-shot|zero-shot)$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

TASK_NAMES = {
    "gsm8k": "GSM8K",
    "gsm8k-dev": "GSM8K dev",
    "multiarith": "MultiArith",
    "asdiv": "ASDiv",
    "svamp": "SVAMP",
    "bbh": "BBH",
}
"""How the report spells the benchmarks; other task names are shown as they are."""
TABLE1_TASKS = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh")


def task_label(name: str) -> str:
    return TASK_NAMES.get(name, name)


@dataclass(frozen=True)
class Score:
    """One accuracy with its sample size; `stderr` as lm-eval reports it, sqrt(p(1-p)/n)."""

    accuracy: float
    n: int
    correct: int
    macro_accuracy: float | None = None
    subtasks: int | None = None

    @property
    def stderr(self) -> float:
        if self.n <= 0:
            return 0.0
        p = self.accuracy
        return math.sqrt(max(p * (1.0 - p), 0.0) / self.n)


@dataclass(frozen=True)
class EvalResult:
    """One `cotspec eval` output directory of the run."""

    model: str
    """``base``, ``step-<N>`` or ``teacher``."""
    suite: str
    """``dev`` or ``test``."""
    mode: str
    """``few-shot`` or ``zero-shot``."""
    path: Path
    """The summary.json it was read from."""
    model_ref: str
    """The model the evaluation ran (summary's ``model``)."""
    scores: dict[str, Score]
    """Task (or group, ``bbh``) -> score; bbh subtasks are left out."""

    @property
    def step(self) -> int | None:
        if self.model == BASE:
            return 0
        match = _STEP_MODEL.match(self.model)
        return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Selection:
    criterion: str | None
    picked: dict[str, int]
    """criterion -> the step it would have picked."""
    selected: list[int]
    dev: dict[int, dict[str, float]]
    """step -> task -> dev accuracy, as selection.json recorded it."""
    excluded_from_test: dict[str, list[str]]


@dataclass(frozen=True)
class LossCurve:
    steps: list[int]
    losses: list[float]
    source: Path


@dataclass(frozen=True)
class SamplingStats:
    """The teacher's chains in the sample store."""

    path: Path
    questions: int
    samples: int
    chains_per_question: float
    chains_min: int
    chains_max: int
    correct: int
    yield_mean: float
    """Correct chains per question."""
    yield_rate: float
    """Share of all chains that are correct."""
    share_with_correct: float
    pass_at_1: float
    k: int
    pass_at_k: float
    questions_at_k: int
    distinct_correct: int
    majority_vote_accuracy: float
    """The teacher's self-consistency accuracy: a question counts when its most frequent answer is right."""
    generated_tokens: int
    without_logprobs: int
    teacher: str | None
    correct_per_question: dict[int, int] = field(default_factory=dict)
    """Correct chains -> questions with that many (the yield histogram)."""


@dataclass(frozen=True)
class Coverage:
    """How much of the training targets carry the teacher's top-k after alignment to the student."""

    top_k: int | None
    soft_coverage: float | None
    """Share of the target tokens of rows with teacher log-probs that got a soft (top-k) target."""
    soft_target_tokens: int | None
    target_tokens_with_teacher_rows: int | None
    rows_with_logprobs: int | None
    rows: int | None
    source: str


@dataclass
class RunData:
    path: Path
    name: str
    config_text: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    evals: list[EvalResult] = field(default_factory=list)
    selection: Selection | None = None
    loss: LossCurve | None = None
    sampling: SamplingStats | None = None
    coverage: Coverage | None = None
    build: dict[str, Any] | None = None
    train_summary: dict[str, Any] | None = None
    parameters: int | None = None
    model_dir: Path | None = None
    skipped: list[str] = field(default_factory=list)
    """One line per part of the report left out, and why."""

    def find(self, model: str, suite: str, mode: str) -> EvalResult | None:
        return next((e for e in self.evals if (e.model, e.suite, e.mode) == (model, suite, mode)), None)

    def models(self, suite: str) -> list[str]:
        """Models evaluated on `suite`: base, then steps in order, then the teacher."""
        names = {e.model for e in self.evals if e.suite == suite}
        return sorted(names, key=_model_order)

    def modes(self, suite: str) -> list[str]:
        found = {e.mode for e in self.evals if e.suite == suite}
        return [m for m in MODES if m in found]

    @property
    def selected_steps(self) -> list[int]:
        if self.selection is not None:
            return list(self.selection.selected)
        return []

    def setting(self, dotted: str) -> Any:
        """A value of the resolved config by dotted key (``student.model``), None when absent."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    @property
    def student(self) -> str | None:
        value = self.setting("student.model")
        if value is None and self.train_summary:
            value = self.train_summary.get("student")
        return None if value is None else str(value)

    @property
    def teacher(self) -> str | None:
        value = self.setting("teacher.model")
        if value is None and self.sampling is not None:
            value = self.sampling.teacher
        return None if value is None else str(value)


def _model_order(name: str) -> tuple[int, int]:
    if name == BASE:
        return (0, 0)
    match = _STEP_MODEL.match(name)
    if match:
        return (1, int(match.group(1)))
    return (2, 0)


# --- reading -----------------------------------------------------------------------------------------


def read_run(path: Path) -> RunData:
    """Everything the report needs from run directory `path`."""
    path = Path(path)
    if not path.is_dir():
        raise CotspecError(f"{path}: not a directory; give the run directory `cotspec run` wrote")
    run = RunData(path=path, name=path.resolve().name)
    _read_config(run)
    run.state = _optional_json(path / "state.json", run, "stage states") or {}
    run.versions = _optional_json(path / "versions.json", run, "versions") or {}
    run.evals = read_evals(path / "eval")
    if not run.evals:
        run.skipped.append(f"no evaluations: {path / 'eval'} holds no <model>/<suite>-<mode>/summary.json")
    run.selection = _read_selection(path / "selection.json", run)
    run.build = _optional_json(path / "data" / "build.json", run, "training data manifest")
    _read_training(run)
    shared_store = ((run.config or {}).get("teacher") or {}).get("store")  # a store shared between runs
    run.sampling = _read_sampling(Path(shared_store) if shared_store else path / "teacher" / "samples.db", run)
    run.coverage = _coverage(run)
    _read_model(run)
    return run


def read_evals(eval_root: Path) -> list[EvalResult]:
    """Every <model>/<suite>-<mode>/summary.json under `eval_root`; an evaluation directory without a
    readable summary is a CotspecError naming the file."""
    if not eval_root.is_dir():
        return []
    results = []
    for model_dir in sorted(eval_root.iterdir(), key=lambda p: _model_order(p.name)):
        if not model_dir.is_dir() or not (model_dir.name in (BASE, TEACHER) or _STEP_MODEL.match(model_dir.name)):
            continue
        for run_dir in sorted(model_dir.iterdir()):
            match = _EVAL_DIR.match(run_dir.name)
            if not run_dir.is_dir() or not match:
                continue
            summary = read_summary(run_dir / SUMMARY)
            results.append(
                EvalResult(
                    model=model_dir.name,
                    suite=match.group(1),
                    mode=match.group(2),
                    path=run_dir / SUMMARY,
                    model_ref=str(summary.get("model", model_dir.name)),
                    scores=_scores(summary, run_dir / SUMMARY),
                )
            )
    return results


def read_summary(path: Path) -> dict[str, Any]:
    """A `cotspec eval` summary.json; CotspecError (one line, naming the file) when missing or corrupt."""
    if not path.is_file():
        raise CotspecError(
            f"{path}: missing; finish that evaluation (re-run `cotspec run` or `cotspec eval --out {path.parent}`) "
            "or delete its directory"
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CotspecError(f"{path}: not a readable summary ({_first_line(err)}); re-run that evaluation to rewrite it") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), dict):
        raise CotspecError(f"{path}: not a `cotspec eval` summary (no \"tasks\" object); re-run that evaluation to rewrite it")
    return summary


def _scores(summary: dict[str, Any], path: Path) -> dict[str, Score]:
    scores = {}
    for name, row in summary["tasks"].items():
        if name.startswith("bbh:"):
            continue  # folded into the bbh group row
        try:
            scores[name] = Score(
                accuracy=float(row["accuracy"]),
                n=int(row["n"]),
                correct=int(row["correct"]),
                macro_accuracy=None if row.get("macro_accuracy") is None else float(row["macro_accuracy"]),
                subtasks=None if row.get("subtasks") is None else int(row["subtasks"]),
            )
        except (KeyError, TypeError, ValueError):
            raise CotspecError(
                f"{path}: task {name!r} has no accuracy, n and correct; re-run that evaluation to rewrite it"
            ) from None
    return scores


def _read_config(run: RunData) -> None:
    path = run.path / "config.yaml"
    if not path.is_file():
        path = run.path / "train" / "config.yaml"
    if not path.is_file():
        run.skipped.append(f"config: no config.yaml in {run.path}")
        return
    import yaml

    run.config_text = path.read_text(encoding="utf-8", errors="replace")
    try:
        loaded = yaml.safe_load(run.config_text)
    except yaml.YAMLError as err:
        raise CotspecError(f"{path}: not valid YAML ({_first_line(err)})") from None
    run.config = loaded if isinstance(loaded, dict) else {}


def _optional_json(path: Path, run: RunData, what: str) -> Any:
    if not path.is_file():
        run.skipped.append(f"{what}: {path} not written yet")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CotspecError(f"{path}: not valid JSON ({_first_line(err)}); re-run the stage that writes it") from None


def _read_selection(path: Path, run: RunData) -> Selection | None:
    data = _optional_json(path, run, "checkpoint selection")
    if data is None:
        return None
    try:
        dev: dict[int, dict[str, float]] = {}
        for model, tasks in (data.get("dev") or {}).items():
            match = _STEP_MODEL.match(model)
            step = 0 if model == BASE else int(match.group(1)) if match else None
            if step is not None:
                dev[step] = {str(t): float(a) for t, a in tasks.items()}
        return Selection(
            criterion=data.get("criterion"),
            picked={str(k): int(v) for k, v in (data.get("picked") or {}).items() if v is not None},
            selected=[int(s) for s in data.get("selected") or []],
            dev=dev,
            excluded_from_test={str(k): list(v) for k, v in (data.get("excluded_from_test") or {}).items()},
        )
    except (AttributeError, TypeError, ValueError) as err:
        raise CotspecError(f"{path}: not a checkpoint selection record ({_first_line(err)}); re-run the select stage") from None


def _read_training(run: RunData) -> None:
    train = run.path / "train"
    summary_path = train / "train_summary.json"
    if summary_path.is_file():
        run.train_summary = _optional_json(summary_path, run, "training summary")
    if not train.is_dir():
        run.skipped.append(f"training: {train} not written yet")
        return
    checkpoints = sorted(
        (p for p in train.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)),
        key=lambda p: int(_CHECKPOINT.match(p.name).group(1)),  # type: ignore[union-attr]
    )
    for checkpoint in reversed(checkpoints):
        state_path = checkpoint / "trainer_state.json"
        try:
            history = json.loads(state_path.read_text(encoding="utf-8")).get("log_history", [])
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            continue  # an incomplete checkpoint: the next older one has the curve up to its step
        points = [(int(e["step"]), float(e["loss"])) for e in history if "loss" in e and "step" in e]
        if points:
            run.loss = LossCurve([s for s, _ in points], [v for _, v in points], state_path)
            return
    if run.train_summary and run.train_summary.get("first_loss") is not None:
        s = run.train_summary
        steps = [1, int(s.get("steps") or 1)]
        losses = [float(s["first_loss"]), float(s.get("last_loss") if s.get("last_loss") is not None else s["first_loss"])]
        run.loss = LossCurve(steps, losses, summary_path)
        return
    run.skipped.append(f"training loss: no checkpoint in {train} has a log_history with losses")


def _read_sampling(path: Path, run: RunData) -> SamplingStats | None:
    if not path.is_file():
        run.skipped.append(f"sampling statistics: no teacher sample store at {path}")
        return None
    from ..store import SampleStore

    try:
        with SampleStore.open(path) as store:
            stats = store.stats()
            per_question = store.per_question()
            votes: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
            for sample in store.iter_samples(with_topk=False):
                if sample.extracted is not None:
                    votes[sample.question_id][sample.extracted].append(bool(sample.correct))
            teachers = sorted({config.teacher for config in store.runs().values()})
    except CotspecError:
        raise
    except Exception as err:  # sqlite3.DatabaseError and friends: a damaged file
        raise CotspecError(f"{path}: not a readable sample store ({_first_line(err)})") from None
    if stats.questions == 0:
        run.skipped.append(f"sampling statistics: {path} holds no samples")
        return None
    majority_right = 0
    for answers in votes.values():
        # The most frequent answer; ties go to the answer given first (dicts keep insertion order).
        winner = max(answers, key=lambda a: len(answers[a]))
        majority_right += any(answers[winner])
    counts = [q.samples for q in per_question]
    return SamplingStats(
        path=path,
        questions=stats.questions,
        samples=stats.samples,
        chains_per_question=stats.samples / stats.questions,
        chains_min=min(counts),
        chains_max=max(counts),
        correct=stats.correct,
        yield_mean=stats.yield_mean,
        yield_rate=stats.correct / stats.samples if stats.samples else 0.0,
        share_with_correct=stats.share_with_correct,
        pass_at_1=stats.pass_at_1,
        k=stats.k,
        pass_at_k=stats.pass_at_k,
        questions_at_k=stats.questions_at_k,
        distinct_correct=stats.distinct_correct,
        majority_vote_accuracy=majority_right / stats.questions,
        generated_tokens=stats.generated_tokens,
        without_logprobs=stats.without_logprobs,
        teacher=", ".join(teachers) if teachers else None,
        correct_per_question=dict(sorted(Counter(q.correct for q in per_question).items())),
    )


def _coverage(run: RunData) -> Coverage | None:
    """The alignment coverage recorded by training (train_summary.json's data section), with the
    build's count of rows that carry teacher log-probs."""
    rows_lp = rows = None
    if run.build:
        formats = run.build.get("formats") or {}
        rows_lp = sum(int(f.get("rows_with_logprobs") or 0) for f in formats.values()) if formats else None
        rows = run.build.get("rows")
    data = (run.train_summary or {}).get("data") or {}
    if "soft_coverage" in data:
        return Coverage(
            top_k=data.get("top_k"),
            soft_coverage=data.get("soft_coverage"),
            soft_target_tokens=data.get("soft_target_tokens"),
            target_tokens_with_teacher_rows=data.get("target_tokens_with_teacher_rows"),
            rows_with_logprobs=rows_lp,
            rows=rows,
            source=str(run.path / "train" / "train_summary.json"),
        )
    if rows_lp is not None:
        return Coverage(None, None, None, None, rows_lp, rows, str(run.path / "data" / "build.json"))
    run.skipped.append("alignment coverage: not recorded (train/train_summary.json has no data.soft_coverage)")
    return None


def _read_model(run: RunData) -> None:
    for candidate in (run.path / "model", run.path / "train" / "model"):
        if (candidate / "config.json").is_file():
            run.model_dir = run.model_dir or candidate
            count = parameter_count(candidate)
            if count is not None:
                run.parameters = count
                break
    if run.parameters is None:  # before publish: the newest checkpoint holds the same architecture
        train = run.path / "train"
        checkpoints = sorted((p for p in train.glob("checkpoint-*") if _CHECKPOINT.match(p.name)),
                             key=lambda p: int(p.name.split("-")[1]), reverse=True) if train.is_dir() else []
        for checkpoint in checkpoints:
            count = parameter_count(checkpoint)
            if count is not None:
                run.parameters = count
                break
    if run.parameters is None and run.train_summary:
        for key in ("parameters", "num_parameters", "params", "student_parameters"):
            if isinstance(run.train_summary.get(key), int):
                run.parameters = run.train_summary[key]
                break
    if run.model_dir is None:
        run.skipped.append(f"model card: no selected model in {run.path / 'model'} yet")


def parameter_count(model_dir: Path) -> int | None:
    """Parameters of a save_pretrained directory, from its safetensors headers (no weights are read)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for path in files:
            with path.open("rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            for name, info in header.items():
                if name != "__metadata__":
                    total += math.prod(info["shape"])
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return total


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
