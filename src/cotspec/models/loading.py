"""`load_model(reference)`: one entry point for presets, GGUF files, local directories and hub ids.

Resolution order for a reference:

1. a preset name (`cotspec.models.presets.PRESETS`): weights inside an installed pip package;
2. an existing ``.gguf`` file: transformers dequantizes it to float;
3. an existing ``save_pretrained`` directory (has ``config.json``);
4. anything else is tried as a Hugging Face hub id (needs network or the local hub cache).

A local reference that cannot be a model (not a GGUF file, a config.json that is not JSON or names an
unknown architecture, no weights, no tokenizer) is refused by `check_model_reference` before anything
is read in earnest, with one line naming the path and what is wrong; whatever else transformers cannot
read in a local model becomes such a line too.

Local references are loaded with ``local_files_only=True``, the per-call form of ``HF_HUB_OFFLINE=1``
(the environment variable is read once when huggingface_hub is imported, so setting it here would be
too late): a local model never waits on the network.

Dequantizing a GGUF file costs ~15-20 s per load on 2 CPU cores (135M parameters) against ~0.3 s for
reading safetensors, so the first load writes a float32 ``save_pretrained`` copy to the user cache
(``$COTSPEC_CACHE_DIR`` or the platform cache dir, ~540 MB for the default model) keyed by the file's
path, size, modification time and the transformers version; later loads read that copy. float32
because the dequantized Q4_1 values are exact in float32 and would be rounded in 16-bit formats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import transformers
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..errors import CotspecError
from ..progress import progress_mode, quiet_transformers_bars
from .dtypes import resolve_device, resolve_dtype
from .presets import PRESETS, preset_path

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# A save_pretrained directory's weights: single-file or sharded safetensors / PyTorch, or PEFT adapters.
WEIGHT_FILES = (
    "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "*.bin.index.json", "adapter_model*.bin"
)
# Any one of these lets AutoTokenizer build the tokenizer (save_pretrained always writes the first).
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "*.model", "vocab.json", "vocab.txt")
# What transformers, tokenizers, safetensors and gguf raise on local files they cannot make sense of.
UNREADABLE_MODEL_ERRORS = (OSError, ValueError, KeyError, struct.error, SafetensorError)


@dataclass
class LoadedModel:
    """A model ready for generation or training, with its tokenizer configured for batching."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    """pad token set (eos when the model has none); padding on the left for decoder-only models."""
    is_seq2seq: bool
    """Encoder-decoder (T5 family) rather than decoder-only; decided by ``config.is_encoder_decoder``."""
    reference: str
    """What the user asked for (preset name, path or hub id)."""
    source: str
    """What was actually read: a file, a directory (possibly the dequantized cache) or a hub id."""
    keeps_newlines: bool = field(init=False)
    """Whether the tokenizer round-trips ``\\n`` (T5's sentencepiece tokenizer does not, ByT5's does)."""

    def __post_init__(self) -> None:
        self.keeps_newlines = tokenizer_keeps_newlines(self.tokenizer)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def prepare_prompt(self, text: str) -> str:
        """The prompt text as the model should see it.

        A tokenizer that cannot represent newlines (T5's sentencepiece vocabulary normalizes them away)
        would silently glue the last word of one line to the first of the next; mapping ``\\n`` to a
        space keeps word boundaries, which is what Fu et al. do for Flan-T5. Tokenizers that keep
        newlines (every byte-level BPE, ByT5) get the text unchanged.
        """
        return text if self.keeps_newlines else text.replace("\n", " ")


def tokenizer_keeps_newlines(tokenizer: PreTrainedTokenizerBase) -> bool:
    ids = tokenizer("a\nb", add_special_tokens=False)["input_ids"]
    return "\n" in tokenizer.decode(ids, skip_special_tokens=True)


def load_model(
    reference: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    device: str | None = None,
    cache_dequantized: bool = True,
) -> LoadedModel:
    """Load a model and its tokenizer from a preset name, a ``.gguf`` file, a directory or a hub id.

    Args:
        reference: preset name (``smollm2-135m-instruct``), path to a ``.gguf`` file, path to a
            ``save_pretrained`` directory, or a Hugging Face hub id (``google/flan-t5-base``).
        dtype: ``auto`` (see `resolve_dtype`), ``float32``, ``bfloat16`` or ``float16``.
        trust_remote_code: allow model code shipped with the weights to run (off unless asked).
        device: ``cpu``, ``cuda``, ``cuda:1``...; None picks CUDA when available.
        cache_dequantized: keep a dequantized copy of GGUF files in the user cache (see module doc).

    Raises:
        CotspecError: unknown reference, missing preset package, or a local file or directory that is not
            a model (see `check_model_reference`) or that transformers cannot read.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    local = {"trust_remote_code": trust_remote_code, "local_files_only": True}

    gguf_path = _local_gguf(reference)
    cached = None
    if gguf_path is not None and cache_dequantized:
        try:
            cached = dequantized_copy(gguf_path, trust_remote_code=trust_remote_code)
        except OSError as exc:  # full disk, read-only cache: slower, not fatal
            logger.warning("cannot cache a dequantized copy of %s (%s); loading the GGUF file directly", gguf_path, exc)
    if cached is not None:
        source = str(cached)
        with _readable(f"the dequantized copy {cached} of {gguf_path} (delete it to have it made again)"):
            model, tokenizer = _load_pretrained(source, torch_dtype, local)
    elif gguf_path is not None:
        source = str(gguf_path)
        with _readable(f"model file {gguf_path}"):
            options = {**local, "gguf_file": gguf_path.name}
            model, tokenizer = _load_pretrained(str(gguf_path.parent), torch_dtype, options)
    elif (directory := _local_directory(reference)) is not None:
        source = str(directory)
        with _readable(f"model directory {directory}"):
            model, tokenizer = _load_pretrained(source, torch_dtype, local)
    else:
        source = reference
        model, tokenizer = _load_from_hub(reference, torch_dtype, trust_remote_code)

    is_seq2seq = bool(model.config.is_encoder_decoder)
    _forget_gguf_quantization(model)
    _configure_tokenizer(tokenizer, model, is_seq2seq)
    model.to(torch_device).eval()
    return LoadedModel(model, tokenizer, is_seq2seq, reference=reference, source=source)


def save_model(loaded: LoadedModel, out_dir: str | Path) -> Path:
    """Write model and tokenizer as a ``save_pretrained`` directory that plain transformers can load.

    A model loaded from GGUF still carries the GGUF "quantizer" although its weights are already
    dequantized floats; transformers refuses to save such a model, so that marker is dropped first.
    """
    out = Path(out_dir)
    _forget_gguf_quantization(loaded.model)
    loaded.model.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out


def dequantized_copy(gguf_path: Path, *, trust_remote_code: bool = False) -> Path:
    """The cached float32 ``save_pretrained`` copy of `gguf_path`, created on first use."""
    stat = gguf_path.stat()
    identity = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    target = cache_dir() / "dequantized" / f"{gguf_path.stem}-{key}"
    if (target / "config.json").is_file():
        return target

    logger.info("dequantizing %s once (cached in %s)", gguf_path.name, target)
    files = {"local_files_only": True, "gguf_file": gguf_path.name, "trust_remote_code": trust_remote_code}
    with _readable(f"model file {gguf_path}"):  # an OSError escaping is the cache's, not the file's
        model, tokenizer = _load_pretrained(str(gguf_path.parent), torch.float32, files)
    source = str(gguf_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target and renamed into place: a crash or a concurrent first load never
    # leaves a half-written copy behind under the final name.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        save_model(LoadedModel(model, tokenizer, bool(model.config.is_encoder_decoder), source, source), staging)
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        # Another process finished first; its copy is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def cache_dir() -> Path:
    """``$COTSPEC_CACHE_DIR`` or the platform's user cache directory for cotspec."""
    override = os.environ.get("COTSPEC_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("cotspec"))


def check_model_reference(reference: str) -> None:
    """Refuse a local reference that cannot be a model, without loading it (cheap: a few small reads).

    Raises CotspecError naming the path and what is wrong: a missing path, a ``.gguf`` file that is not
    GGUF, a directory whose config.json is not JSON or names an architecture transformers does not know,
    or that has no weights or no tokenizer; a preset whose package is not installed. Hub ids pass.
    """
    if _local_gguf(reference) is None:
        _local_directory(reference)


def _local_gguf(reference: str) -> Path | None:
    if reference in PRESETS:
        path = preset_path(PRESETS[reference])
    elif reference.endswith(".gguf"):
        path = Path(reference).expanduser()
        if not path.is_file():
            raise CotspecError(f"model file {reference} does not exist")
    else:
        return None
    _check_gguf_file(path)
    return path


def _check_gguf_file(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise CotspecError(
                f"model file {path} is not a GGUF file (it does not start with the GGUF magic bytes); "
                "replace it with a complete download, or give a save_pretrained directory"
            )


def _local_directory(reference: str) -> Path | None:
    path = Path(reference).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            _check_model_directory(path)
            return path
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; to load a GGUF file pass its path, e.g. {ggufs[0]}" if ggufs else ""
        raise CotspecError(f"model directory {reference} has no config.json (not a save_pretrained directory){hint}")
    if reference.startswith(("/", "./", "../", "~")) or path.is_file():
        raise CotspecError(
            f"model path {reference} is not a .gguf file or a save_pretrained directory"
            if path.exists()
            else f"model path {reference} does not exist"
        )
    return None


def _check_model_directory(path: Path) -> None:
    """The checks of `check_model_reference` on a directory that has a config.json."""
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise CotspecError(
            f"{config_file} cannot be read as text ({_first_line(err)}); restore it from the model's source"
        ) from None
    except json.JSONDecodeError as err:
        raise CotspecError(
            f"{config_file} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
            "restore it from the model's source"
        ) from None
    if not isinstance(config, dict):
        raise CotspecError(f"{config_file} is not a JSON object; restore it from the model's source")
    model_type = config.get("model_type")
    if model_type is not None and not _known_model_type(model_type) and "auto_map" not in config:
        raise CotspecError(
            f"{config_file}: model_type {model_type!r} is not an architecture transformers "
            f"{transformers.__version__} knows; fix model_type or upgrade transformers"
        )
    if not _has_any(path, WEIGHT_FILES):
        raise CotspecError(
            f"model directory {path} has no weights (no model.safetensors, pytorch_model.bin or sharded index); "
            "save the model there with save_pretrained, or point at a complete model"
        )
    if not _has_any(path, TOKENIZER_FILES):
        raise CotspecError(
            f"model directory {path} has no tokenizer (no tokenizer_config.json or tokenizer.json); "
            "save the tokenizer there with tokenizer.save_pretrained"
        )


def _known_model_type(model_type: object) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def _has_any(directory: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(directory.glob(pattern), None) is not None for pattern in patterns)


@contextmanager
def _readable(what: str) -> Iterator[None]:
    """What transformers cannot read in a local model becomes one line naming `what`, not a traceback."""
    try:
        yield
    except UNREADABLE_MODEL_ERRORS as exc:
        raise CotspecError(f"{what} cannot be loaded: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _load_from_hub(reference: str, dtype: torch.dtype, trust_remote_code: bool) -> tuple:
    try:
        return _load_pretrained(reference, dtype, {"trust_remote_code": trust_remote_code})
    except (OSError, ValueError) as exc:
        reason = _first_line(exc)
        presets = ", ".join(PRESETS)
        raise CotspecError(
            f"unknown model '{reference}': not a preset ({presets}), not an existing .gguf file or "
            f"directory, and the Hugging Face hub could not provide it ({reason})"
        ) from None


def _load_pretrained(location: str, dtype: torch.dtype, options: dict) -> tuple:
    """(model, tokenizer) from a directory, a directory + ``gguf_file``, or a hub id."""
    config = AutoConfig.from_pretrained(location, **options)
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(location, **options)
    # transformers' "Loading weights" bar redraws with carriage returns: a terminal shows it, a log
    # file (a `cotspec run` in the background) gets one garbled line per model loaded.
    quiet = quiet_transformers_bars() if progress_mode() != "rich" else nullcontext()
    with quiet:
        model = model_class.from_pretrained(location, dtype=dtype, **options)
    return model, tokenizer


def _forget_gguf_quantization(model: PreTrainedModel) -> None:
    if getattr(model.config, "quantization_config", None) is None:
        return
    config = model.config.quantization_config
    method = config.get("quant_method") if isinstance(config, dict) else getattr(config, "quant_method", None)
    if method == "gguf":  # plain str in a loaded config, a str Enum otherwise
        model.hf_quantizer = None
        del model.config.quantization_config


def _configure_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, is_seq2seq: bool) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Decoder-only batches are padded on the left so every row's next token sits in the last column.
    tokenizer.padding_side = "right" if is_seq2seq else "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
