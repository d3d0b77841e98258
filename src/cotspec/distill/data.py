"""Training rows as student tokens: tokenize once, align the teacher's top-k, cache on disk.

    data = tokenize_rows(rows, manifest, student, TokenizeSettings(max_length=1024, top_k=None, ...))

A `cotspec build` output is text (tokenizer-independent). Here each row becomes

* ``prompt_ids``: what the student reads (the encoder input of a seq2seq student), special tokens as
  its tokenizer adds them at inference;
* ``target_ids``: what it learns to write, ending with EOS;
* for rows with teacher log-probs (and objective kd): ``cand_ids`` / ``cand_logprobs`` — per target
  token, the teacher's top-k carried over to student ids (`cotspec.align`), flattened [T * k] — and
  ``soft`` [T], whether the position holds teacher knowledge (else it is one-hot on the target token).

This is the one place the training objective takes effect: under ``ce`` no row gets teacher columns, so
no batch carries teacher tensors, and the loss only asks whether a batch has them.

The result is saved under the cache directory keyed by the rows' content hash, the student tokenizer's
fingerprint and every setting that changes a token, so a second run (or another process of the same
run) reads it instead of tokenizing again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value
from transformers import PreTrainedTokenizerBase

from ..errors import ConfigError
from ..progress import quiet_datasets_bars

logger = logging.getLogger(__name__)

TOKENIZED_LAYOUT = "cotspec.tokenized/1"
"""Version of the columns below and of how they are computed; part of the cache key."""

FEATURES = Features(
    {
        "format": Value("string"),
        "prompt_ids": List(Value("int32")),
        "target_ids": List(Value("int32")),
        "length": Value("int32"),  # prompt + target tokens: what length grouping sorts by
        "soft": List(Value("bool")),  # [T] or empty (no teacher top-k for this row)
        "cand_ids": List(Value("int32")),  # [T * k] or empty
        "cand_logprobs": List(Value("float32")),  # [T * k] or empty
    }
)


@dataclass(frozen=True)
class TokenizeSettings:
    """Everything besides the rows and the tokenizer that changes the tokenized dataset."""

    is_seq2seq: bool
    keeps_newlines: bool
    """False for tokenizers that drop ``\\n`` (T5's): newlines become spaces (`LoadedModel.prepare_prompt`)."""
    max_length: int
    objective: Literal["kd", "ce"]
    """`LossConfig.objective`, acted on here and nowhere else: kd aligns the teacher's top-k of the rows
    that have it; ce leaves every row without teacher columns, so every batch trains on cross-entropy."""
    top_k: int | None


@dataclass(frozen=True)
class TokenizedData:
    dataset: Dataset
    top_k: int
    """Width of the candidate arrays (0: no row carries teacher top-k)."""
    stats: dict[str, Any]
    """rows, dropped rows per format, target tokens, soft-target coverage, cache path and hit."""


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """SHA-256 of what the tokenizer is and does: its serialized model (or vocabulary) and special
    tokens, plus its ids for a probe text (catches settings such as add_bos that live outside both)."""
    sha = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        sha.update(backend.to_str().encode())
    else:
        sha.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    sha.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    probe = "Q: 12 + 30 = ?\nLet's think step by step\n  The answer is 42. é"
    sha.update(json.dumps(tokenizer(probe)["input_ids"]).encode())
    return sha.hexdigest()


def cache_key(content_sha256: str, tokenizer: PreTrainedTokenizerBase, settings: TokenizeSettings) -> str:
    identity = {
        "layout": TOKENIZED_LAYOUT,
        "rows": content_sha256,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        **asdict(settings),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def default_cache_dir() -> Path:
    from ..models import cache_dir

    return cache_dir() / "tokenized"


def tokenize_rows(
    rows: Dataset,
    manifest: dict,
    tokenizer: PreTrainedTokenizerBase,
    settings: TokenizeSettings,
    *,
    cache_dir: Path | None = None,
    num_proc: int = 1,
) -> TokenizedData:
    """Tokenized (and aligned) training rows, from the cache when this exact job was done before."""
    key = cache_key(manifest["content_sha256"], tokenizer, settings)
    target = Path(cache_dir or default_cache_dir()) / key
    meta_path = target / "tokenized.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dataset = datasets.load_from_disk(str(target))
        return TokenizedData(dataset, meta["top_k"], {**meta["stats"], "cache": str(target), "cache_hit": True})

    top_k = _teacher_width(rows, settings) if settings.objective == "kd" else 0
    target.parent.mkdir(parents=True, exist_ok=True)
    # Intermediate Arrow files go to a scratch dir next to the cache entry, never into the build dir.
    with tempfile.TemporaryDirectory(prefix=f".{key}-", dir=target.parent) as scratch, quiet_datasets_bars():
        encoded = rows.map(
            _Encoder(tokenizer, settings, top_k),
            batched=True,
            batch_size=256,
            num_proc=num_proc if num_proc > 1 else None,
            remove_columns=rows.column_names,
            features=Features({**FEATURES, "too_long": Value("bool")}),
            cache_file_name=str(Path(scratch) / "encoded.arrow"),
            desc="tokenize",
        )
        too_long = encoded.data.column("too_long").to_numpy(zero_copy_only=False)
        stats = _stats(encoded.data.table, too_long, settings)
        kept = encoded.select(np.flatnonzero(~too_long)).remove_columns("too_long")
        if len(kept) == 0:
            raise ConfigError(
                "data.max_length",
                f"every one of the {len(encoded)} rows is longer than {settings.max_length} student tokens; "
                "raise it (in-context formats need ~1000 and more)",
            )
        _save(kept, target, {"key": key, "top_k": top_k, "stats": stats, "settings": asdict(settings)})
        del encoded, kept  # release the memory maps before the scratch dir goes
    dataset = datasets.load_from_disk(str(target))
    return TokenizedData(dataset, top_k, {**stats, "cache": str(target), "cache_hit": False})


def _teacher_width(rows: Dataset, settings: TokenizeSettings) -> int:
    """k of the candidate arrays: the most candidates any teacher position has, capped by loss.top_k."""
    column = rows.data.column("teacher_top_tokens")
    per_position = pc.list_flatten(column)
    if len(per_position) == 0:
        return 0
    widest = pc.max(pc.list_value_length(per_position)).as_py() or 0
    return min(widest, settings.top_k) if settings.top_k is not None else widest


class _Encoder:
    """The batched map function (a class, so `datasets` can pickle it for num_proc > 1)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: TokenizeSettings, top_k: int):
        self.tokenizer = tokenizer
        self.settings = settings
        self.top_k = top_k
        self._vocab = None

    @property
    def vocab(self):
        if self._vocab is None:
            from ..align import Vocab

            self._vocab = Vocab.from_tokenizer(self.tokenizer)
        return self._vocab

    def _text(self, text: str) -> str:
        # Same rule as LoadedModel.prepare_prompt, which evaluation applies to prompts.
        return text if self.settings.keeps_newlines else text.replace("\n", " ")

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        tok, s = self.tokenizer, self.settings
        prompts = [self._text(p) for p in batch["prompt"]]
        targets = [self._text(t) for t in batch["target"]]
        if s.is_seq2seq:
            prompt_ids = tok(prompts)["input_ids"]
            # The decoder target as T5-style tokenizers make a label: EOS appended by the tokenizer.
            target_ids = tok(targets)["input_ids"]
        else:
            prompt_ids = [self._without_eos(ids) for ids in tok(prompts)["input_ids"]]
            target_ids = self._continuations(prompts, targets, prompt_ids)
        out: dict[str, list] = {name: [] for name in FEATURES}
        out["too_long"] = []
        for i, (p_ids, t_ids) in enumerate(zip(prompt_ids, target_ids)):
            out["format"].append(batch["format"][i])
            out["prompt_ids"].append(p_ids)
            out["target_ids"].append(t_ids)
            out["length"].append(len(p_ids) + len(t_ids))
            longest = max(len(p_ids), len(t_ids)) if s.is_seq2seq else len(p_ids) + len(t_ids)
            out["too_long"].append(longest > s.max_length)
            if self.top_k and batch["has_logprobs"][i] and longest <= s.max_length:
                aligned = self._align(batch, i, t_ids)
                out["soft"].append(aligned.soft.tolist())
                out["cand_ids"].append(aligned.cand_ids.reshape(-1).tolist())
                out["cand_logprobs"].append(aligned.cand_logprobs.reshape(-1).tolist())
            else:
                out["soft"].append([])
                out["cand_ids"].append([])
                out["cand_logprobs"].append([])
        return out

    def _continuations(self, prompts: list[str], targets: list[str], prompt_ids: list[list[int]]) -> list[list[int]]:
        """Target ids of a decoder-only row, EOS appended.

        Taken from the tokenization of prompt + target, so they are the tokens the student would write
        after reading exactly `prompt_ids` (what generation gives it). Where the two texts merge into one
        token at the seam (the prompt's tokens are not a prefix of the joint ones), the target is
        tokenized on its own instead.
        """
        tok = self.tokenizer
        joint = [self._without_eos(ids) for ids in tok([p + t for p, t in zip(prompts, targets)])["input_ids"]]
        alone = None
        eos = tok.eos_token_id
        result = []
        for i, (p_ids, j_ids) in enumerate(zip(prompt_ids, joint)):
            if j_ids[: len(p_ids)] == p_ids:
                ids = j_ids[len(p_ids) :]
            else:
                if alone is None:
                    alone = tok(targets, add_special_tokens=False)["input_ids"]
                ids = alone[i]
            result.append(list(ids) + ([eos] if eos is not None else []))
        return result

    def _without_eos(self, ids: list[int]) -> list[int]:
        # Some decoder-only tokenizers append EOS to every text; a prompt must not end the sequence.
        eos = self.tokenizer.eos_token_id
        return ids[:-1] if eos is not None and ids and ids[-1] == eos else ids

    def _align(self, batch: dict[str, list], i: int, target_ids: list[int]):
        from ..align import align_chain

        return align_chain(
            batch["teacher_tokens"][i],
            batch["teacher_top_tokens"][i],
            batch["teacher_top_logprobs"][i],
            target_ids,  # EOS and other specials become one-hot positions
            self.vocab,
            k=self.top_k,
        )


def _stats(table: pa.Table, too_long: np.ndarray, settings: TokenizeSettings) -> dict[str, Any]:
    formats = table.column("format").to_pylist()
    dropped = Counter(f for f, drop in zip(formats, too_long) if drop)
    kept = table.filter(pa.array(~too_long))
    target_tokens = pc.sum(pc.list_value_length(kept.column("target_ids"))).as_py() or 0
    soft_column = pc.list_flatten(kept.column("soft"))  # one entry per target token of rows with teacher top-k
    tokens_of_teacher_rows = len(soft_column)
    soft = (pc.sum(soft_column.cast("int32")).as_py() or 0) if tokens_of_teacher_rows else 0
    if dropped:
        logger.warning(
            "dropped %d of %d rows longer than data.max_length=%d tokens (%s)",
            int(too_long.sum()), len(formats), settings.max_length,
            ", ".join(f"{name}: {count}" for name, count in sorted(dropped.items())),
        )
    return {
        "rows": kept.num_rows,
        "rows_per_format": dict(sorted(Counter(kept.column("format").to_pylist()).items())),
        "dropped_too_long": dict(sorted(dropped.items())),
        "target_tokens": int(target_tokens),
        "target_tokens_with_teacher_rows": int(tokens_of_teacher_rows),
        "soft_target_tokens": int(soft),
        "soft_coverage": round(soft / tokens_of_teacher_rows, 4) if tokens_of_teacher_rows else None,
    }


def _save(dataset: Dataset, target: Path, meta: dict) -> None:
    """Write next to `target` and rename into place: readers never see a half-written cache entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with quiet_datasets_bars():
            dataset.save_to_disk(str(staging / "data"))
        # save_to_disk wants an empty directory of its own; the entry is that directory plus our meta.
        for item in (staging / "data").iterdir():
            os.replace(item, staging / item.name)
        (staging / "data").rmdir()
        (staging / "tokenized.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "tokenized.json").is_file():
                raise
            # Another process of the same run finished first; its entry is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
