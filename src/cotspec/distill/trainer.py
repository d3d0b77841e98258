"""`DistillTrainer`: the transformers Trainer with our loss, our batching and a token-exact normalization.

Everything users know from the Trainer keeps working (accelerate / DDP / FSDP / DeepSpeed, gradient
accumulation, checkpoints and resume, report_to). What changes:

* **Loss** (`compute_loss`): `cotspec.distill.losses.distill_loss` (cross-entropy alone for batches
  without teacher tensors), summed over the target tokens only. The head (the output embedding) is
  applied to those positions alone — a forward pre-hook takes the selected hidden states — so prompt
  and padding positions never cost a [V]-sized logit row, and it is applied `loss.chunk_tokens` rows at
  a time with recomputation in the backward, so the [N, V] logits are never all in memory (for a 49k
  vocabulary they would dominate it).
* **Normalization**: the loss of an optimizer step is the sum over all its target tokens (every
  micro-batch, every process) divided by their count. So the gradient does not depend on how the
  global batch is split into micro-batches and processes (1 process x 4 accumulation steps = 2 x 2).
* **Order** (`_get_train_sampler`): `GroupedLengthSampler`, one format per optimizer step and rows of
  like length together; with per-format micro-batch sizes (`micro_batch_sizes`) the DataLoader takes
  its micro-batches from `MicroBatchSampler` (`get_train_dataloader`), each step of its format's size.
* **Checkpoints** (`_save_checkpoint`): written under `<out>/.staging` and renamed into place once
  complete (`cotspec.distill.rundir`), so a kill never leaves a checkpoint a resume would trip on.
* **Never past max_steps**: a run resumed at or past its last step trains no further (see
  `get_batch_samples`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..constants import IGNORE_INDEX
from .collator import TEACHER_KEYS
from .config import LossConfig
from .losses import cross_entropy_loss, distill_loss
from .rundir import STAGING_DIR, publish
from .sampler import GroupedLengthSampler, MicroBatchSampler


@contextlib.contextmanager
def head_on_positions(model: nn.Module, positions: torch.Tensor, capture: list | None = None) -> Iterator[None]:
    """Inside this block the model's output head sees only ``hidden[positions]``: logits come out
    [N, V] for the N true entries of the [B, T] bool mask instead of [B, T, V].

    With `capture` (a list), the head gets no rows at all (logits come out [0, V]) and the selected
    hidden states [N, H] are appended to `capture`, for the caller to apply the head in chunks.
    Works for any model that applies its output embedding module to the final hidden states (all
    transformers LMs), wrapped or not (DDP, FSDP and DeepSpeed run the same module's hooks).
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return

    def select(_module: nn.Module, args: tuple) -> tuple:
        hidden, *rest = args
        chosen = hidden[positions]
        if capture is not None:
            capture.append(chosen)
            chosen = chosen[:0]
        return (chosen, *rest)

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def chunked_token_loss(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    teacher: dict[str, torch.Tensor] | None,
    config: LossConfig,
    chunk_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> torch.Tensor:
    """`summed_token_loss` of ``head(hidden)``, built `chunk_size` rows at a time.

    hidden: [N, H] final hidden states at the target positions; targets: [N]; teacher as
    `summed_token_loss`. Each chunk's logits (and their float32 softmax) exist only while that chunk is
    computed: activation checkpointing drops them after the forward and recomputes them in the backward,
    so memory holds chunk_size x V floats instead of N x V, for one more head matmul over the targets.
    """
    n_rows = targets.numel()
    if n_rows == 0:
        return hidden.sum() * 0.0  # keeps a grad_fn, so backward runs

    def piece(h: torch.Tensor, start: int) -> torch.Tensor:
        stop = start + h.shape[0]
        part = {key: value[start:stop] for key, value in teacher.items()} if teacher else None
        with autocast():
            logits = head(h)
        return summed_token_loss(logits, targets[start:stop], part, config)

    total = None
    for start in range(0, n_rows, chunk_size):
        value = checkpoint(piece, hidden[start : start + chunk_size], start, use_reentrant=False)
        total = value if total is None else total + value
    return total


def supervised_positions(labels: torch.Tensor, is_seq2seq: bool) -> torch.Tensor:
    """[B, T] bool: where the logits predict a target token.

    Decoder-only logits at t predict the token at t + 1 (labels are not shifted, Hugging Face style);
    seq2seq decoder logits at t predict labels[t].
    """
    if is_seq2seq:
        return labels != IGNORE_INDEX
    positions = torch.zeros_like(labels, dtype=torch.bool)
    positions[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return positions


def _shifted(tensor: torch.Tensor, is_seq2seq: bool) -> torch.Tensor:
    """Align a per-label tensor with `supervised_positions` (shift left by one for decoder-only)."""
    return tensor if is_seq2seq else tensor[:, 1:]


def summed_token_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    teacher: dict[str, torch.Tensor] | None,
    config: LossConfig,
) -> torch.Tensor:
    """Sum over N target tokens of their loss: `cotspec.distill.losses.distill_loss`, reduction "sum".

    logits: [N, V]; targets: [N]; teacher: cand_ids / cand_logprobs [N, k] and soft [N] at the same
    positions, or None when the batch carries no teacher tensors (objective ce, or no row of this batch
    has teacher top-k): then every token is cross-entropy. Summed, not averaged, because the caller
    divides by the token count of the whole optimizer step (module doc).
    """
    if teacher is None:
        return cross_entropy_loss(logits, targets, reduction="sum")
    return distill_loss(
        logits,
        targets,
        teacher["cand_ids"],
        teacher["cand_logprobs"],
        soft=teacher["soft"],
        kd_weight=config.kd_weight,
        divergence=config.divergence,
        mode=config.forward_mode,
        support=config.support,
        beta=config.beta,
        reduction="sum",
    ).loss


class DistillTrainer(Trainer):
    """A `transformers.Trainer` for distillation; extra arguments:

    loss_config: the loss section of the run's config.
    is_seq2seq: encoder-decoder student (labels are decoder targets, not shifted).
    row_lengths / row_formats: per training row, its token count and format (for the sampler).
    batching: "per-format" or "mixed"; group_by_length: sort rows into micro-batches by length.
    micro_batch_sizes: per format, rows per micro-batch (per-format batching only); formats left out,
    or None for all, use `per_device_train_batch_size`.
    """

    # Our compute_loss already divides by the whole optimizer step's token count (see module doc).
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        loss_config: LossConfig,
        is_seq2seq: bool,
        row_lengths: Sequence[int],
        row_formats: Sequence[str],
        batching: str = "per-format",
        group_by_length: bool = True,
        micro_batch_sizes: Mapping[str, int] | None = None,
        **kwargs: Any,
    ):
        # Set while a checkpoint is written: the parent directory it goes to (see _save_checkpoint).
        self._checkpoint_parent: Path | None = None
        super().__init__(*args, **kwargs)
        self.loss_config = loss_config
        self.is_seq2seq = is_seq2seq
        self.row_lengths = row_lengths
        self.row_formats = row_formats
        self.batching = batching
        self.group_by_length = group_by_length
        self.micro_batch_sizes = dict(micro_batch_sizes) if micro_batch_sizes else None
        # transformers < 5 reads this flag (not loss_is_scaled_for_ga) to skip dividing by accumulation.
        self.model_accepts_loss_kwargs = True
        self._tokens_since_log = 0
        self._tokens_total = 0
        self._last_log_time: float | None = None

    # --- data order ---------------------------------------------------------------------------------

    def _get_train_sampler(self, train_dataset: Any = None) -> GroupedLengthSampler:
        args = self.args
        per_step = args.gradient_accumulation_steps * args.world_size  # micro-batches in one optimizer step
        per_format = self.micro_batch_sizes if self.batching == "per-format" else None
        return GroupedLengthSampler(
            self.row_lengths,
            self.row_formats if self.batching == "per-format" else None,
            group_size=args.per_device_train_batch_size * per_step,
            seed=args.data_seed if args.data_seed is not None else args.seed,
            group_by_length=self.group_by_length,
            group_sizes={fmt: size * per_step for fmt, size in per_format.items()} if per_format else None,
        )

    def get_train_dataloader(self) -> Any:
        """The Trainer's DataLoader, or with per-format micro-batch sizes one over `MicroBatchSampler`
        (a DataLoader has one batch size; here each format's steps have their own)."""
        if not (self.micro_batch_sizes and self.batching == "per-format"):
            return super().get_train_dataloader()
        from torch.utils.data import DataLoader

        args = self.args
        batches = MicroBatchSampler(self._get_train_sampler(), args.gradient_accumulation_steps * args.world_size)
        workers = args.dataloader_num_workers
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=batches,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers and workers > 0,
        )
        return self.accelerator.prepare(loader)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one pass over the rows (the sampler yields whole global batches)."""
        return self._get_train_sampler().num_groups()

    # --- loss ---------------------------------------------------------------------------------------

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | None]:
        """The next optimizer step's micro-batches and its target-token count over all processes."""
        if self.state.global_step >= self.state.max_steps:
            # Resumed at (or past) the last step. When max_steps is not a whole number of epochs the
            # Trainer resumes inside the last epoch and checks max_steps only after the next step, so it
            # trained one step more on every re-run of a finished run. No batches: no step.
            return [], None
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        if not batches:
            return batches, None
        count = sum(int(supervised_positions(b["labels"], self.is_seq2seq).sum()) for b in batches)
        total = torch.tensor(count, device=device, dtype=torch.long)
        if self.accelerator.num_processes > 1:
            total = self.accelerator.reduce(total, reduction="sum")
        return batches, total

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        # The objective was decided when the data was tokenized: the batch carries teacher tensors or not.
        teacher = {key: inputs.pop(key) for key in TEACHER_KEYS if key in inputs}
        positions = supervised_positions(labels, self.is_seq2seq)
        # The selected logits come out row-major over `positions`; pick targets and teacher rows in the
        # same order.
        label_mask = _shifted(labels, self.is_seq2seq) != IGNORE_INDEX
        targets = _shifted(labels, self.is_seq2seq)[label_mask]
        teacher_rows = {k: _shifted(v, self.is_seq2seq)[label_mask] for k, v in teacher.items()} if teacher else None
        self._count_tokens(inputs, labels)

        unwrapped = self.accelerator.unwrap_model(model)
        captured: list[torch.Tensor] | None = [] if self._chunks_the_head(unwrapped) else None
        with head_on_positions(unwrapped, positions, captured):
            outputs = model(**inputs, use_cache=False)  # a KV cache is dead weight in training
        if captured:
            loss_sum = chunked_token_loss(
                unwrapped.get_output_embeddings(), captured[0], targets, teacher_rows, self.loss_config,
                self.loss_config.chunk_tokens, self.accelerator.autocast,
            )  # fmt: skip
        else:
            logits = outputs.logits
            if logits.dim() == 3:  # a model whose head the hook could not reach: select here instead
                logits = logits[positions]
            loss_sum = summed_token_loss(logits, targets, teacher_rows, self.loss_config)

        if num_items_in_batch is None:  # evaluation: this batch alone
            num_items_in_batch = max(int(positions.sum()), 1)
        # DDP/FSDP/DeepSpeed average gradients over processes; undo that so the step's gradient is that
        # of (sum over all processes' tokens) / (their total count).
        loss = loss_sum / num_items_in_batch * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def _chunks_the_head(self, model: nn.Module) -> bool:
        """Apply the head chunk by chunk here (`chunked_token_loss`) rather than inside the model?

        Not under FSDP / DeepSpeed, whose sharded head weights exist whole only inside the model's own
        forward, and not for models that post-process logits after the head (Gemma's soft-capping).
        """
        if not self.loss_config.chunk_tokens or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return False
        config = getattr(model, "config", None)
        if getattr(config, "final_logit_softcapping", None):
            return False
        return hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None

    # --- throughput ---------------------------------------------------------------------------------

    def _count_tokens(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        """Non-padding tokens the model processes: prompt and target (decoder side for seq2seq)."""
        tokens = int(inputs["attention_mask"].sum())
        if self.is_seq2seq:
            tokens += int((labels != IGNORE_INDEX).sum())
        self._tokens_since_log += tokens

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds `tokens_per_second` (non-padding, all processes) since the previous log and `tokens`."""
        now = time.perf_counter()
        if "loss" in logs:
            tokens = torch.tensor(self._tokens_since_log, device=self.args.device, dtype=torch.long)
            if self.accelerator.num_processes > 1:
                tokens = self.accelerator.reduce(tokens, reduction="sum")
            self._tokens_total += int(tokens)
            if self._last_log_time is not None:
                logs["tokens_per_second"] = round(int(tokens) / max(now - self._last_log_time, 1e-9), 1)
            logs["tokens"] = self._tokens_total
            self._tokens_since_log = 0
            self._last_log_time = now
        super().log(logs, *args, **kwargs)

    # --- checkpoints ----------------------------------------------------------------------------------

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint, written under <out>/.staging and renamed into place when complete."""
        run_dir = Path(self._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._checkpoint_parent = run_dir / STAGING_DIR
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_parent = None
        self.accelerator.wait_for_everyone()  # every process's files are in (RNG states, FSDP/ZeRO shards)
        if self.args.should_save:
            publish(run_dir / STAGING_DIR / name, run_dir / name)
            # The Trainer rotated among the staged checkpoints (only this one); rotate the real ones.
            self._rotate_published_checkpoints(run_dir)

    def _get_output_dir(self, trial: Any) -> str:
        # The Trainer writes a checkpoint to <this>/checkpoint-<step>: the staging directory while saving.
        if self._checkpoint_parent is not None:
            return str(self._checkpoint_parent)
        return super()._get_output_dir(trial)

    def _rotate_published_checkpoints(self, run_dir: Path) -> None:
        try:
            from transformers.trainer_utils import rotate_checkpoints
        except ImportError:  # transformers < 5: a Trainer method
            self._rotate_checkpoints(use_mtime=False, output_dir=str(run_dir))
            return
        # By step number, not modification time: a renamed directory's mtime is not when it was written.
        rotate_checkpoints(
            output_dir=str(run_dir),
            save_total_limit=self.args.save_total_limit,
            best_model_checkpoint=self.state.best_model_checkpoint,
            use_mtime=False,
        )

    def train(self, *args: Any, **kwargs: Any) -> Any:
        # Throughput is measured from the start of training, not from construction.
        self._last_log_time = time.perf_counter()
        self._tokens_since_log = 0
        return super().train(*args, **kwargs)
