"""Draw chain-of-thought samples from a teacher into a sample store, resumably.

    run_sampling(SampleConfig(tasks=("gsm8k",), split="train", n=40, temperature=0.5, top_logprobs=5,
                              base_urls=("http://127.0.0.1:8080/v1",), model="teacher",
                              store=Path("runs/teacher.db")))   # or cotspec.sample(...), `cotspec sample`

Teacher calls are the expensive part of a distillation run, so the loop is built around never losing
or repeating one: the store says which (question, chain index) pairs are missing, only those are sent,
and every chain is scored and committed the moment its response arrives. A run killed at any point
loses at most the requests in flight; the same command resumes it.

The answer-line cut is post-hoc, not a stop sequence: "stop after the line that says The answer is"
cannot be expressed as a fixed stop string (the number comes after the marker), and a newline stop would
end every chain after its first step. The task's stop sequences (a blank line, the next question's
header) end most chains right after their answer line anyway; the cut removes whatever a chain goes on
with before that. It is made on the teacher's token stream, at a token boundary, and the stored text is the text of
the kept tokens, so text, tokens and top-k log-probabilities always describe the same chain.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path
from typing import Callable, Collection

from rich.progress import TextColumn

from ..align.pieces import TokenStyle, piece_bytes
from ..backends import Backend, Completion, SampleRequest, SamplingParams, create_backend
from ..errors import ConfigError, CotspecError
from ..progress import make_progress
from ..store import RunConfig, SampleRow, SampleStore
from ..tasks.base import Example, Mode, Prompter, PromptSpec, Task
from .config import SampleConfig

logger = logging.getLogger(__name__)

_PLACEHOLDER_QUESTION = "\x00question\x00"


# ---- the answer-line cut ---------------------------------------------------------------------------


def _line_end_after(haystack: bytes, marker: bytes) -> int | None:
    """Byte offset of the newline ending the first line that contains `marker` (ASCII case-insensitive)."""
    at = haystack.lower().find(marker.lower())
    if at < 0:
        return None
    end = haystack.find(b"\n", at + len(marker))
    return None if end < 0 else end


def cut_after_answer_line(completion: Completion, marker: str) -> Completion:
    """The completion ending with the first line that contains `marker`; unchanged when nothing follows.

    With tokens, the cut is after the token that completes the answer line, and the text becomes exactly
    the kept tokens' text (a token that straddles the line end, like ``".\\n\\n"``, is kept whole).
    `completion_tokens` then counts the kept tokens. Without tokens only the text is cut and the count is
    left as the teacher reported it.
    """
    if not marker:
        return completion
    needle = marker.encode("utf-8")
    if completion.tokens is None or completion.top_logprobs is None:
        end = _line_end_after(completion.text.encode("utf-8"), needle)
        if end is None:
            return completion
        text = completion.text.encode("utf-8")[:end].decode("utf-8", "replace")
        return replace(completion, text=text, finish_reason="stop")
    pieces = [piece_bytes(t, TokenStyle.TEXT) for t in completion.tokens]
    joined = b"".join(pieces)
    end = _line_end_after(joined, needle)
    if end is None:
        return completion
    ends = list(accumulate(len(p) for p in pieces))
    keep = next(i + 1 for i, e in enumerate(ends) if e >= end)
    if keep == len(pieces):
        return completion
    if joined == completion.text.encode("utf-8"):
        text = joined[: ends[keep - 1]].decode("utf-8", "replace")
    else:
        # The server's text and tokens disagree (e.g. a lossy token spelling): cut the text at its own
        # answer line; the tokens are cut at the same line.
        raw = completion.text.encode("utf-8")
        text_end = _line_end_after(raw, needle)
        text = completion.text if text_end is None else raw[:text_end].decode("utf-8", "replace")
    return replace(
        completion,
        text=text,
        finish_reason="stop",
        completion_tokens=keep,
        tokens=completion.tokens[:keep],
        top_logprobs=completion.top_logprobs[:keep],
    )


# ---- what to sample --------------------------------------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def template_sha256(prompter: Prompter, task: str, split: str) -> str:
    """Hash of the prompt template: the prompt built for a placeholder question."""
    return sha256(prompter(Example(id=f"{task}/{split}/template", question=_PLACEHOLDER_QUESTION, answer="")))


def select_questions(
    task: Task, config: SampleConfig, data_dir: Path, dev_ids: Callable[[Path], Collection[str]]
) -> list[Example]:
    """The split's examples, minus the gsm8k-dev questions unless asked, cut to `limit`."""
    if config.split not in task.splits:
        raise ConfigError("split", f"{config.split!r}: task {task.name} has splits {', '.join(task.splits)}")
    examples = task.load(data_dir, config.split)
    if task.name == "gsm8k" and config.split == "train" and not config.include_dev:
        held_out = dev_ids(data_dir)
        examples = [ex for ex in examples if ex.id not in held_out]
    if config.limit is not None:
        examples = examples[: config.limit]
    if not examples:
        raise CotspecError(f"no questions to sample in {task.name}/{config.split} (check the limit and the data directory)")
    return examples


# ---- streaming completions into the store ----------------------------------------------------------


def _row(
    example: Example, prompt: str, sample_index: int, completion: Completion, task: Task, run_id: int, marker: str
) -> SampleRow:
    generated = completion.completion_tokens
    cut = cut_after_answer_line(completion, marker)
    tokens, top = cut.tokens, cut.top_logprobs
    if tokens is not None and (top is None or len(top) != len(tokens)):
        logger.warning(
            "%s#%d: tokens and top-k disagree in length; storing it without logprobs", example.id, sample_index
        )
        tokens = top = None
    extracted = task.extract(cut.text)
    return SampleRow(
        question_id=example.id,
        sample_index=sample_index,
        run_id=run_id,
        prompt_sha256=sha256(prompt),
        text=cut.text,
        finish_reason=cut.finish_reason,
        extracted=extracted,
        correct=bool(task.is_correct(extracted, example.answer)),
        prompt_tokens=cut.prompt_tokens,
        completion_tokens=len(tokens) if tokens is not None else cut.completion_tokens,
        generated_tokens=max(generated, len(tokens) if tokens is not None else 0),
        tokens=tokens,
        top_logprobs=[list(position) for position in top] if top is not None else None,
    )


@dataclass(frozen=True)
class SamplingReport:
    questions: int
    wanted: int
    """Chains the run asked for: questions x `n`."""
    already_stored: int
    written: int
    written_correct: int
    """Correct chains among those scored by this run."""
    seconds: float


def make_teacher_backend(config: SampleConfig) -> Backend:
    """The teacher `config` names, built through the backend registry (`config.backend`: openai for the
    servers at `base_urls`, transformers to run `model` in-process)."""
    return create_backend(config.backend, config.backend_settings)


def run_sampling(
    config: SampleConfig, make_backend: Callable[[SampleConfig], Backend] = make_teacher_backend
) -> SamplingReport:
    """Sample the missing chains of `config` into its store; see the module docstring.

    The backend is asked for exactly the missing (question, chain index) pairs, chain indices as sample
    ids: with a `seed`, each chain's seed derives from the seed, its prompt and its index
    (`cotspec.backends.sample_seed`), so a resumed run draws new chains, never the stored ones again.
    """
    from ..tasks import get_task, gsm8k_dev_ids, resolve_data_dir

    task = get_task(config.task)
    data_dir = resolve_data_dir(config.data_dir)
    examples = select_questions(task, config, data_dir, gsm8k_dev_ids)
    exemplars, shots = config.exemplar_choice
    if config.prompt_file is not None and shots is None:
        from ..tasks.prompts import load_math_exemplars

        shots = len(load_math_exemplars(data_dir, str(config.prompt_file)))  # a prompt file is used whole
    prompter = task.make_prompter(data_dir, PromptSpec(mode=Mode.FEW_SHOT, cot=True, exemplars=exemplars, shots=shots))
    params = SamplingParams(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        n=config.n,
        stop=tuple(task.stop),
        top_logprobs=config.top_logprobs,
        seed=config.seed,
    )
    run_config = RunConfig(
        teacher=config.model or config.teacher or "",
        task=task.name,
        prompt=f"file {config.prompt_file}" if config.prompt_file else f"{exemplars or 'task default'} x{shots or '?'}",
        prompt_sha256=template_sha256(prompter, task.name, config.split),
        temperature=config.temperature,
        top_p=config.top_p,
        top_logprobs=config.top_logprobs,
        max_new_tokens=config.max_new_tokens,
        stop=params.stop,
        answer_cut=config.answer_marker or None,
        seed=config.seed,
    )
    with SampleStore.open(config.store, writable=True) as store:
        run_id = store.register_run(run_config, allow_mixed=config.allow_mixed_runs)
        store.add_questions(examples)
        missing = store.missing([ex.id for ex in examples], config.n)
        wanted = len(examples) * config.n
        report = dict(questions=len(examples), wanted=wanted, already_stored=wanted - len(missing))
        if not missing:
            return SamplingReport(**report, written=0, written_correct=0, seconds=0.0)
        indices: dict[str, list[int]] = defaultdict(list)
        for qid, index in missing:
            indices[qid].append(index)
        questions = {ex.id: ex for ex in examples}
        requests = {qid: SampleRequest(qid, prompter(questions[qid]), tuple(ids)) for qid, ids in indices.items()}
        written = correct = 0
        started = time.monotonic()
        backend = make_backend(config)
        progress = make_progress(
            TextColumn("{task.fields[rate]:.2f} chains/s"), TextColumn("{task.fields[correct]} correct")
        )
        try:
            with progress:
                bar = progress.add_task(f"sampling {task.name}/{config.split}", total=len(missing), rate=0.0, correct=0)
                for result in backend.generate_requests(requests.values(), params):
                    question, prompt = questions[result.key], requests[result.key].prompt
                    row = _row(question, prompt, result.sample_id, result.completion, task, run_id, config.answer_marker)
                    written += store.add(row)
                    correct += row.correct
                    elapsed = max(time.monotonic() - started, 1e-9)
                    progress.update(bar, advance=1, rate=written / elapsed, correct=correct)
        except CotspecError as err:
            # Every chain that arrived is committed: say so, so nobody fears for (or deletes) the store.
            stored = wanted - len(missing) + written
            raise CotspecError(
                f"sampling stopped: {err}. {config.store} keeps every finished chain ({stored} of {wanted}); "
                "run the same command again to sample only the missing ones"
            ) from None
        finally:
            backend.close()
        return SamplingReport(**report, written=written, written_correct=correct, seconds=time.monotonic() - started)

