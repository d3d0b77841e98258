"""One distillation run, start to finish: rows -> tokens -> Trainer -> a plain save_pretrained model.

    summary = run_training(load_config(Path("configs/distill-gold.yaml"), ["train.max_steps=20"]))

The run directory (`out`) holds everything: config.yaml (resolved), data/ (when built here),
checkpoint-<step>/ (resumable), model/ (the final student, LoRA merged), train_summary.json. Each is
written so that a kill leaves the old or the new, never half (`cotspec.distill.rundir`). Re-running
resumes from the newest complete checkpoint; a run that already reached its last step is left as it is.
Under `accelerate launch` every process runs this; data is built and tokenized by the main process
first, the others then read the cache.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import ConfigError, CotspecError
from ..progress import quiet_transformers_bars
from ..outputs import check_can_write_in, writing_output
from .config import DistillConfig, DataConfig, TrainConfig, differing_keys, flatten, load_config, to_yaml
from .rundir import (
    checkpoint_dirs,
    checkpoint_step,
    newest_complete_checkpoint,
    publish,
    remove_leftovers,
    remove_staging,
    staged,
    write_text,
)

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "train_summary.json"
MODEL_DIR = "model"
DATA_DIR = "data"


def run_training(config: DistillConfig, callbacks: Sequence[Any] = ()) -> dict[str, Any] | None:
    """Train the student `config` describes; returns (and writes) the run summary on the main process,
    None on the others. `callbacks` are extra `transformers.TrainerCallback`s (metrics, early stop).

    A run that already reached its last step returns its stored summary and changes nothing."""
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from ..models import check_model_reference

    out = config.require_out()
    args = TrainingArguments(**training_arguments(config, out))  # before the model: ZeRO-3 loads sharded
    is_main = args.process_index == 0
    try:
        checkpoint = _checkpoint_to_resume(config, out)
        finished = _finished_summary(config, out)
        if finished is not None:
            _say(args, _finished_line(config, out, finished["steps"]))
            return finished if is_main else None
        check_model_reference(config.student.model)  # a broken model fails before anything is written
        if is_main:
            removed = _prepare_run_dir(config, out)
            if removed:
                _say(args, f"removed {', '.join(removed)} from {out}: incomplete (a run was killed while writing it)")
        with args.main_process_first(desc="training data"):
            rows, manifest = resolve_rows(config.data, out)
        student = _load_student(config)
        with args.main_process_first(desc="tokenization"):
            data = _tokenize(config, rows, manifest, student)
        _say(args, _data_line(data.stats, data.top_k))

        from .callbacks import ProgressCallback
        from .collator import DistillCollator
        from .trainer import DistillTrainer

        model = _with_lora(config, student.model, student.is_seq2seq)
        collator = DistillCollator(
            pad_id=student.tokenizer.pad_token_id,
            is_seq2seq=student.is_seq2seq,
            top_k=data.top_k,
            decoder_start_id=getattr(model.config, "decoder_start_token_id", None) if student.is_seq2seq else None,
        )
        trainer = DistillTrainer(
            model=model,
            args=args,
            train_dataset=data.dataset,
            data_collator=collator,
            processing_class=student.tokenizer,
            callbacks=[ProgressCallback(), *callbacks],
            loss_config=config.loss,
            is_seq2seq=student.is_seq2seq,
            row_lengths=data.dataset.data.column("length").to_pylist(),
            row_formats=data.dataset.data.column("format").to_pylist(),
            batching=config.train.batching,
            group_by_length=config.train.group_by_length,
            micro_batch_sizes=config.train.micro_batch_size_per_format,
        )
        trainer.remove_callback(PrinterCallback)
        if checkpoint is not None:
            _say_if_nothing_left_to_train(args, checkpoint, target_steps(config.train, trainer.steps_per_epoch))
        with quiet_transformers_bars():  # ours shows the steps; theirs would interleave at every save
            result = trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
            model_dir = _save_final(trainer, config, out)
        summary = None
        if is_main:
            summary = _summary(config, out, trainer, result, data, manifest, model_dir, checkpoint)
            with writing_output(out):
                write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
                remove_staging(out)
        # All processes leave together: the main one hosts the rendezvous store, and a process still
        # shutting down its process group after the main one exited waits on that store until timeout.
        trainer.accelerator.wait_for_everyone()
        return summary
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def training_arguments(config: DistillConfig, out: Path) -> dict[str, Any]:
    """The `TrainingArguments` of a run, as keyword arguments."""
    train = config.train
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    per_step = train.micro_batch_size * world_size
    if train.global_batch_size is not None and train.global_batch_size % per_step:
        raise CotspecError(
            f"train.global_batch_size={train.global_batch_size} is not a multiple of train.micro_batch_size="
            f"{train.micro_batch_size} x {world_size} processes; change one of them"
        )
    has_cuda = torch.cuda.is_available()
    return {
        "output_dir": str(out),
        "per_device_train_batch_size": train.micro_batch_size,
        "gradient_accumulation_steps": train.accumulation_steps(world_size),
        "learning_rate": train.lr,
        "warmup_steps": train.warmup_steps,
        "lr_scheduler_type": train.lr_schedule,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "optim": train.optim,
        "num_train_epochs": train.epochs,
        "max_steps": train.max_steps if train.max_steps is not None else -1,
        "bf16": resolve_precision(train.precision) == "bf16-mixed",
        "use_cpu": not has_cuda,
        **_checkpointing(config.student.gradient_checkpointing),
        "save_strategy": "steps",
        "save_steps": train.save_every,
        "save_total_limit": train.save_total_limit,
        "logging_steps": train.log_every,
        "report_to": list(train.report_to) or "none",
        "seed": train.seed,
        "data_seed": train.seed,
        "dataloader_num_workers": train.num_workers,
        "remove_unused_columns": False,  # the collator needs the teacher columns the model never sees
        "ddp_find_unused_parameters": False,
        "disable_tqdm": True,  # ProgressCallback draws the bar
    }


def _checkpointing(enabled: bool) -> dict[str, Any]:
    if not enabled:
        return {}
    from dataclasses import fields

    from transformers import TrainingArguments

    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing (the old name warns).
    name = "activation_checkpointing" if any(f.name == "activation_checkpointing" for f in fields(TrainingArguments)) else "gradient_checkpointing"
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16-mixed where bf16 runs natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "fp32"
    from ..models import cpu_has_native_bf16

    return "bf16-mixed" if cpu_has_native_bf16() else "fp32"


# --- run directory ---------------------------------------------------------------------------------


def _checkpoint_to_resume(config: DistillConfig, out: Path) -> Path | None:
    """The newest complete checkpoint (None: a fresh start); refuses to mix two configs in one `out`."""
    earlier = _earlier_training(out)
    if earlier is None:
        return None
    if not config.train.resume:
        raise ConfigError(
            "out", f"{out} already holds {earlier}; set `train.resume` to true to continue that run, or choose a new run directory"
        )
    saved = out / CONFIG_FILE
    if saved.is_file():
        before, now = flatten(load_config(saved)), flatten(config)
        changed = differing_keys(before, now)
        if changed:
            key = changed[0]
            raise ConfigError(
                "out",
                f"{out} holds a run with {key}={before.get(key)!r}, now {now.get(key)!r}; "
                "resume with the same settings or choose a new run directory",
            )
    return newest_complete_checkpoint(out)


def _earlier_training(out: Path) -> str | None:
    """What an earlier run trained into `out`: its newest checkpoint (complete or not) or its summary."""
    checkpoints = checkpoint_dirs(out)
    if checkpoints:
        return checkpoints[-1].name
    return SUMMARY_FILE if (out / SUMMARY_FILE).is_file() else None


def _finished_summary(config: DistillConfig, out: Path) -> dict[str, Any] | None:
    """The stored summary when the run in `out` already trained as far as `config` asks, else None."""
    try:
        summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no finished run (or a summary nobody can read: the run completes and rewrites it)
    if not isinstance(summary, dict) or not (out / MODEL_DIR / "config.json").is_file():
        return None
    steps, target = summary.get("steps"), target_steps(config.train, summary.get("steps_per_epoch"))
    if not isinstance(steps, int) or target is None or steps < target:
        return None
    return summary


def target_steps(train: TrainConfig, steps_per_epoch: int | None) -> int | None:
    """The optimizer step a run stops at: train.max_steps, else train.epochs passes rounded up as the
    Trainer rounds them; None when the epoch length is not known."""
    if train.max_steps is not None:
        return train.max_steps
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        return None
    return math.ceil(train.epochs * steps_per_epoch)


def _finished_line(config: DistillConfig, out: Path, steps: int) -> str:
    train = config.train
    limit = f"train.max_steps={train.max_steps}" if train.max_steps is not None else f"train.epochs={train.epochs:g}"
    return (
        f"{out}: training finished at step {steps} ({limit}); nothing to do. Raise train.max_steps or "
        "train.epochs to train further, or choose a new run directory (out)"
    )


def _say_if_nothing_left_to_train(args: Any, checkpoint: Path, target: int | None) -> None:
    """A run killed after its last checkpoint but before model/ was written: the Trainer resumes, trains
    no step (`DistillTrainer.get_batch_samples`) and model/ is written from the checkpoint."""
    step = checkpoint_step(checkpoint)
    if step is not None and target is not None and step >= target:
        _say(args, f"{checkpoint.name} is already at step {step}: writing {MODEL_DIR}/ from it, no training")


def _prepare_run_dir(config: DistillConfig, out: Path) -> list[str]:
    """Create `out`, clear what killed runs left there and write config.yaml (main process). Returns the
    incomplete checkpoints removed."""
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} is a file; give a directory for the training run")
    check_can_write_in(out, "out", out)  # under a file, read-only media, no permission
    with writing_output(out):
        out.mkdir(parents=True, exist_ok=True)
        removed = remove_leftovers(out)
        write_text(out / CONFIG_FILE, to_yaml(config))
    return removed


# --- data ------------------------------------------------------------------------------------------


def resolve_rows(data: DataConfig, out: Path) -> tuple[Any, dict]:
    """(train split, build manifest): the given build, or one built into <out>/data from the config."""
    from ..formats import BuildConfig, build_training_data, load_training_data

    if data.path is not None:
        rows, manifest = load_training_data(data.path)
        return rows["train"], manifest
    try:
        build = BuildConfig(out=out / DATA_DIR, **data.build_settings())
    except ConfigError as err:
        raise err.within("data") from None
    manifest_path = out / DATA_DIR / "build.json"
    if manifest_path.is_file():
        rows, manifest = load_training_data(out / DATA_DIR)
        if manifest.get("config") == build.to_json():
            return rows["train"], manifest
    build_training_data(build)
    rows, manifest = load_training_data(out / DATA_DIR)
    return rows["train"], manifest


def _tokenize(config: DistillConfig, rows: Any, manifest: dict, student: Any) -> Any:
    from .data import TokenizeSettings, tokenize_rows

    settings = TokenizeSettings(
        is_seq2seq=student.is_seq2seq,
        keeps_newlines=student.keeps_newlines,
        max_length=config.data.max_length,
        objective=config.loss.objective,  # takes effect here only: ce rows carry no teacher top-k
        top_k=config.loss.top_k,
    )
    return tokenize_rows(
        rows, manifest, student.tokenizer, settings, cache_dir=config.data.cache_dir, num_proc=config.data.num_proc
    )


def _data_line(stats: dict, top_k: int) -> str:
    line = f"{stats['rows']} rows, {stats['target_tokens']:,} target tokens"
    if stats.get("dropped_too_long"):
        line += f", {sum(stats['dropped_too_long'].values())} dropped as longer than data.max_length"
    if top_k:
        line += f"; teacher top-{top_k} on {100 * (stats['soft_coverage'] or 0):.1f}% of the tokens of rows with log-probs"
    line += " (tokenized: cache hit)" if stats.get("cache_hit") else " (tokenized and cached)"
    return line


# --- model -----------------------------------------------------------------------------------------


def _load_student(config: DistillConfig) -> Any:
    from ..models import load_model

    # float32 master weights in every precision mode (bf16-mixed autocasts the compute); placed on the
    # CPU first, the Trainer moves them to each process's device.
    student = load_model(
        config.student.model, dtype="float32", trust_remote_code=config.student.trust_remote_code, device="cpu"
    )
    if config.student.gradient_checkpointing:
        student.model.config.use_cache = False
    return student


def _with_lora(config: DistillConfig, model: Any, is_seq2seq: bool) -> Any:
    if not config.lora.enabled:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    lora = config.lora
    targets = "all-linear" if lora.target_modules == ("all-linear",) else list(lora.target_modules)
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type=TaskType.SEQ_2_SEQ_LM if is_seq2seq else TaskType.CAUSAL_LM,
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as err:
        raise CotspecError(f"lora.target_modules: {str(err).splitlines()[0]}") from None


def _save_final(trainer: Any, config: DistillConfig, out: Path) -> Path:
    """The trained student as a plain save_pretrained directory (LoRA merged into the weights), written
    to staging and renamed to <out>/model when complete."""
    if not (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
        # Training is over: the optimizer state (2x the weights for AdamW) is not needed to save the
        # model, and dropping it first keeps the save from raising the run's peak memory.
        trainer.optimizer.state.clear()
        gc.collect()
    is_main = trainer.args.process_index == 0
    staging = staged(out, MODEL_DIR)
    if config.lora.enabled:
        if is_main:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(staging)
            trainer.processing_class.save_pretrained(staging)
    else:
        trainer.save_model(str(staging))  # gathers FSDP / ZeRO-3 shards
    trainer.accelerator.wait_for_everyone()
    model_dir = out / MODEL_DIR
    if is_main:
        (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle nobody needs in a model directory
        publish(staging, model_dir)
    return model_dir


def _summary(
    config: DistillConfig, out: Path, trainer: Any, result: Any, data: Any, manifest: dict, model_dir: Path, checkpoint: Path | None
) -> dict[str, Any]:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    resumed_at = checkpoint_step(checkpoint) if checkpoint is not None else None
    # Resumed at its last step, the run trained nothing here: the Trainer's mean loss over no steps is 0.
    ran_steps = trainer.state.global_step > (resumed_at or 0)
    speeds = [entry["tokens_per_second"] for entry in trainer.state.log_history if "tokens_per_second" in entry]
    return {
        "model": str(model_dir),
        "steps": trainer.state.global_step,
        "steps_per_epoch": trainer.steps_per_epoch,  # how a re-run of an epoch-based run knows it is finished
        "resumed_from": None if checkpoint is None else str(checkpoint),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss if ran_steps else None,
        "tokens": next((e["tokens"] for e in reversed(trainer.state.log_history) if "tokens" in e), None),
        "tokens_per_second": round(sum(speeds) / len(speeds), 1) if speeds else None,
        "runtime_seconds": result.metrics.get("train_runtime"),
        "precision": resolve_precision(config.train.precision),
        "processes": trainer.accelerator.num_processes,
        "data": {"content_sha256": manifest.get("content_sha256"), "top_k": data.top_k, **data.stats},
        "config": str(out / CONFIG_FILE),
    }


def _say(args: Any, line: str) -> None:
    if args.process_index == 0:
        print(line, file=sys.stderr, flush=True)

