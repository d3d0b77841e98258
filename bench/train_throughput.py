#!/usr/bin/env python
"""Training throughput and memory: cotspec (cross-entropy and top-5 KD) against TRL's SFTTrainer.

    .venv/bin/python bench/train_throughput.py                       # the full run (30 steps each)
    .venv/bin/python bench/train_throughput.py --steps 4 --rows 64   # a quick check

Same student (smollm2-135m-instruct, float32 weights), same rows (GSM8K gold chains in the zero-shot CoT
format, the first --rows whose prompt + chain + EOS fit in --max-length student tokens, so no trainer
truncates or drops any), global batch 8, max length 384, AdamW at the paper's lr 5e-4 / 10 warm-up steps
/ cosine, CPU. Each trainer runs in its own subprocess, so the peak RSS reported is that trainer's alone
(measured when training ends, before any final save). cotspec runs micro-batches of 8 with gradient
checkpointing by default (--micro-batch-size, --no-gradient-checkpointing); TRL runs its defaults
(batch 8 in one pass, completion-only loss, padding to the longest row of the batch).

Lockstep: the trainers of a group (--groups, default "cotspec-ce,trl/cotspec-ce,cotspec-kd") run at the
same time but take turns, one optimizer step each, so load from other work on a shared machine falls on
all of them alike; tokens/s counts only a trainer's own steps (2..N; step 1 pays one-off costs). "x TRL"
comes from the group that holds trl, "KD vs CE" from the group that holds both.

KD teacher: synthetic, identity tokenizer. The "teacher" tokens are the student's own tokens of each
chain (spelled as text, as an API returns them; alignment takes its identity path) and its top-5 at each
position is the chain's own token at p = 0.6 and the next four tokens at p = 0.1 each. The values do
not change the cost of the loss; the shapes ([B, T, 5] candidates) are the real ones.

Runs: cotspec-ce, cotspec-kd (precision --cotspec-precision, default auto = bf16 autocast on CPUs with
AVX512-BF16), cotspec-ce-fp32 (float32 throughout), trl (fp32), trl-bf16 (bf16 autocast). A cotspec run
name may carry variants: `cotspec-ce@2` (micro-batch 2), `cotspec-ce@8+gc` (gradient checkpointing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ("cotspec-ce", "cotspec-kd", "trl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per trainer")
    parser.add_argument("--rows", type=int, default=512, help="GSM8K gold chains in the training set")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per optimizer step (global batch)")
    parser.add_argument("--micro-batch-size", type=int, default=8, help="cotspec rows per forward/backward (TRL: the whole batch, its default)")
    parser.add_argument("--max-length", type=int, default=384, help="longest row in student tokens")
    parser.add_argument(
        "--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
        help="cotspec runs recompute activations: less memory, and on this 2-core machine also faster than "
        "smaller micro-batches without it (measured: micro 8 + checkpointing 49.7 tok/s, 3.74 GB; micro 4 + "
        "checkpointing 33.5, 3.86 GB; micro 2 without 25.4, 4.19 GB, in lockstep)",
    )
    parser.add_argument("--groups", default="cotspec-ce,trl/cotspec-ce,cotspec-kd", help="lockstep groups: runs joined by ',', groups by '/'")
    parser.add_argument("--cotspec-precision", default="auto", choices=["auto", "bf16-mixed", "fp32"], help="precision of the cotspec runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--data-dir", type=Path, default=None, help="benchmark files (default: $COTSPEC_DATA_DIR or ../shared/data)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--turns", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--turn", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        turns = Turns(args.turns, args.turn)
        try:
            print("RESULT " + json.dumps(worker(args, turns)), flush=True)
        finally:
            turns.leave()
        return

    groups = [[r.strip() for r in group.split(",") if r.strip()] for group in args.groups.split("/")]
    with tempfile.TemporaryDirectory(prefix="cotspec-bench-") as tmp:
        workdir = Path(tmp)
        info = prepare(args, workdir)
        print(
            f"{info['rows']} rows, {info['tokens']:,} tokens ({info['tokens'] / info['rows']:.0f} per row, "
            f"{info['target_tokens']:,} of them targets); {args.steps} steps x {args.batch_size} rows\n",
            file=sys.stderr,
        )
        results = [run_group(group, i, workdir) for i, group in enumerate(groups)]
    report(results, args)


def run_group(runs: list[str], index: int, workdir: Path) -> dict[str, dict]:
    """Start the group's trainers together; they take turns step by step (`Turns`)."""
    turns = workdir / f"turns-{index}.json"
    Turns.create(turns, len(runs))
    procs = []
    for turn, run in enumerate(runs):
        command = [sys.executable, __file__, *sys.argv[1:], "--worker", run, "--workdir", str(workdir), "--turns", str(turns), "--turn", str(turn)]
        procs.append((run, turn, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    started = time.perf_counter()
    results = {}
    for run, turn, proc in procs:
        out, err = proc.communicate()
        Turns(turns, turn).leave()  # a crashed worker must not hold up the others
        line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{run} failed:\n{err[-4000:]}", file=sys.stderr)
            continue
        results[run] = json.loads(line[len("RESULT ") :])
    print(f"group {', '.join(runs)}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return results


class Turns:
    """Round-robin turns between processes through a small JSON file under an exclusive lock."""

    def __init__(self, path: Path, me: int) -> None:
        self.path, self.me = path, me

    @staticmethod
    def create(path: Path, count: int) -> None:
        path.write_text(json.dumps({"turn": 0, "count": count, "left": []}))

    def _update(self, change) -> dict:
        import fcntl

        with open(self.path, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            state = json.loads(handle.read())
            change(state)
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(state))
            return state

    def _pass_on(self, state: dict) -> None:
        for offset in range(1, state["count"] + 1):
            candidate = (state["turn"] + offset) % state["count"]
            if candidate not in state["left"]:
                state["turn"] = candidate
                return

    def wait(self) -> None:
        while self._update(lambda state: None)["turn"] != self.me:
            time.sleep(0.02)

    def done(self) -> None:
        self._update(self._pass_on)

    def leave(self) -> None:
        def change(state: dict) -> None:
            if self.me not in state["left"]:
                state["left"].append(self.me)
            if state["turn"] == self.me:
                self._pass_on(state)

        self._update(change)


# --- data and model, prepared once -----------------------------------------------------------------


def prepare(args: argparse.Namespace, workdir: Path) -> dict:
    from transformers import AutoTokenizer

    from cotspec.align import Vocab
    from cotspec.formats import BuildConfig, build_training_data
    from cotspec.formats.templates import gold_chain, zero_shot_chain_prompt
    from cotspec.models.loading import dequantized_copy
    from cotspec.models.presets import PRESETS, preset_path
    from cotspec.store import RunConfig, SampleRow, SampleStore
    from cotspec.tasks import gsm8k_dev_ids, resolve_data_dir
    from cotspec.tasks.math import load_gsm8k

    data_dir = resolve_data_dir(args.data_dir or _default_data_dir())
    model_dir = dequantized_copy(preset_path(PRESETS["smollm2-135m-instruct"]))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = Vocab.from_tokenizer(tokenizer)
    dev = gsm8k_dev_ids(data_dir)

    chosen, rows, tokens, target_tokens = [], [], 0, 0
    for example in load_gsm8k(data_dir, "train"):
        if example.id in dev:
            continue
        prompt, chain = zero_shot_chain_prompt(example), gold_chain(example)
        n_prompt = len(tokenizer(prompt)["input_ids"])
        chain_ids = tokenizer(chain, add_special_tokens=False)["input_ids"]
        if n_prompt + len(chain_ids) + 1 > args.max_length:
            continue
        chosen.append(example)
        rows.append(_teacher_row(example, chain, vocab.text_tokens(chain_ids)))
        tokens += n_prompt + len(chain_ids) + 1
        target_tokens += len(chain_ids) + 1
        if len(chosen) == args.rows:
            break

    store = workdir / "teacher.db"
    with SampleStore.open(store, writable=True) as handle:
        handle.register_run(
            RunConfig(
                teacher="synthetic-identity", task="gsm8k", prompt="zero-shot", prompt_sha256="0" * 64,
                temperature=0.0, top_p=1.0, top_logprobs=5, max_new_tokens=args.max_length, stop=(), answer_cut=None,
            )  # fmt: skip
        )
        handle.add_questions(chosen)
        handle.add_many(rows)
    build_training_data(BuildConfig(out=workdir / "data", store=store, formats=("zero_shot_cot",), data_dir=data_dir))
    (workdir / "model_dir").write_text(str(model_dir))
    return {"rows": len(rows), "tokens": tokens, "target_tokens": target_tokens}


def _teacher_row(example, chain: str, tokens: list[str]):
    from cotspec.store import SampleRow

    n = len(tokens)
    top = [[(tokens[i], math.log(0.6))] + [(tokens[(i + j) % n], math.log(0.1)) for j in range(1, 5)] for i in range(n)]
    return SampleRow(
        question_id=example.id, sample_index=0, run_id=1, prompt_sha256="0" * 64, text=chain, finish_reason="stop",
        extracted=example.answer, correct=True, prompt_tokens=0, completion_tokens=n, generated_tokens=n,
        tokens=tokens, top_logprobs=top,
    )  # fmt: skip


def _default_data_dir() -> Path | None:
    if os.environ.get("COTSPEC_DATA_DIR"):
        return None
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


# --- one trainer per process -------------------------------------------------------------------------


class StepClock:
    """Per optimizer step: its own wall time (turn taken to step end) and its non-padding tokens."""

    def __init__(self, turns: Turns) -> None:
        from transformers import TrainerCallback

        clock = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                turns.wait()
                clock._began = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                clock.durations.append(time.perf_counter() - clock._began)
                turns.done()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    clock.tokens.append(int(logs.get("tokens", state.num_input_tokens_seen)))
                    clock.losses.append(float(logs["loss"]))

            def on_train_end(self, args, state, control, **kwargs):
                clock.train_peak_gb = _peak_rss_gb()
                turns.leave()

        self.durations: list[float] = []
        self.tokens: list[int] = []  # cumulative, logged after each step
        self.losses: list[float] = []
        self.train_peak_gb = float("nan")
        self._began = 0.0
        self.callback = _Callback()

    def steady_tokens_per_second(self) -> float:
        """Tokens of steps 2..N over their own time (the wait for other trainers' turns excluded)."""
        return (self.tokens[-1] - self.tokens[0]) / sum(self.durations[1:])


def worker(args: argparse.Namespace, turns: Turns) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = args.workdir
    model_dir = Path((workdir / "model_dir").read_text())
    clock = StepClock(turns)
    if args.worker.startswith("cotspec"):
        run_cotspec(args, workdir, model_dir, clock)
    else:
        run_trl(args, workdir, model_dir, clock)
    return {
        "tokens_per_second": clock.steady_tokens_per_second(),
        "steps": len(clock.durations),
        "tokens": clock.tokens[-1] - clock.tokens[0],
        "first_loss": clock.losses[0],
        "last_loss": clock.losses[-1],
        "peak_rss_gb": clock.train_peak_gb,
        "peak_rss_with_save_gb": _peak_rss_gb(),
    }


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


def run_cotspec(args: argparse.Namespace, workdir: Path, model_dir: Path, clock: StepClock) -> None:
    from cotspec.distill.config import load_config
    from cotspec.distill.run import run_training

    # A run may carry variants: cotspec-ce@2 (micro-batch 2), cotspec-ce+gc (gradient checkpointing).
    name, _, micro = args.worker.replace("+gc", "").partition("@")
    micro_batch = int(micro) if micro else args.micro_batch_size
    checkpointing = args.gradient_checkpointing or "+gc" in args.worker
    objective = "kd" if name == "cotspec-kd" else "ce"
    precision = "fp32" if name == "cotspec-ce-fp32" else args.cotspec_precision
    config = load_config(
        None,
        [
            f"out={workdir / f'run-{args.worker}-{args.turns.stem}-{args.turn}'}",
            f"student.model={model_dir}",
            f"data.path={workdir / 'data'}",
            f"data.cache_dir={workdir / 'token-cache'}",
            f"data.max_length={args.max_length}",
            f"loss.objective={objective}",
            f"train.global_batch_size={args.batch_size}",
            f"train.micro_batch_size={micro_batch}",
            f"train.max_steps={args.steps}",
            f"train.precision={precision}",
            f"student.gradient_checkpointing={checkpointing}",
            "train.log_every=1",
            f"train.save_every={10 * args.steps}",
        ],
    )
    run_training(config, callbacks=[clock.callback])


def run_trl(args: argparse.Namespace, workdir: Path, model_dir: Path, clock: StepClock) -> None:
    import torch
    from datasets import Dataset, load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = load_from_disk(str(workdir / "data"))["train"]
    dataset = Dataset.from_dict({"prompt": rows["prompt"], "completion": rows["target"]})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = SFTConfig(
        output_dir=str(workdir / "run-trl"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=5e-4,
        warmup_steps=10,
        lr_scheduler_type="cosine",
        max_length=args.max_length,
        bf16=args.worker == "trl-bf16",
        use_cpu=True,
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock.callback]).train()


# --- report ---------------------------------------------------------------------------------------------


def report(groups: list[dict[str, dict]], args: argparse.Namespace) -> None:
    print(f"| group | run | tokens/s (steps 2..{args.steps}) | x TRL | peak RSS GB (training) | loss first -> last |")
    print("|---:|---|---:|---:|---:|---|")
    for index, results in enumerate(groups, 1):
        trl = results.get("trl", {}).get("tokens_per_second")
        for run, r in results.items():
            ratio = f"{r['tokens_per_second'] / trl:.2f}" if trl else "-"
            print(
                f"| {index} | {run} | {r['tokens_per_second']:.1f} | {ratio} | {r['peak_rss_gb']:.2f} "
                f"| {r['first_loss']:.3f} -> {r['last_loss']:.3f} |"
            )
    for results in groups:
        if "cotspec-ce" in results and "cotspec-kd" in results:
            slowdown = 1 - results["cotspec-kd"]["tokens_per_second"] / results["cotspec-ce"]["tokens_per_second"]
            print(f"\nKD vs CE: {100 * slowdown:+.1f}% slower (goal <= 15%)")


if __name__ == "__main__":
    main()
