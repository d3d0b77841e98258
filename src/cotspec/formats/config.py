"""What a training-data build is: one dataclass, checked on construction, recorded in build.json."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CotspecError
from .templates import FORMATS, IN_CONTEXT_FORMATS


@dataclass(frozen=True)
class BuildConfig:
    """Settings of `cotspec build`. Each field is one flag; the checks name the flag."""

    out: Path
    """Output directory: the dataset (`datasets.load_from_disk`) and its build.json manifest. A previous
    build there is replaced; a directory holding anything else (a training or eval run, other files) is
    refused, so nothing the build did not write is ever deleted."""
    store: Path | None = None
    """Sample store (.db) of teacher chains: its correct chains are used, exact duplicates dropped."""
    gold: bool = False
    """Also use GSM8K's human-written solutions as chains (no teacher needed; they carry no logprobs)."""
    formats: tuple[str, ...] = FORMATS
    """Data formats to build, comma-separated (or `all`): zero_shot_answer, zero_shot_cot,
    in_context_answer, in_context_cot."""
    weights: tuple[float, ...] | None = None
    """Mixture weights, comma-separated, one per format in --formats order: format f gets w_f / sum(w) of
    the rows (the total stays the unweighted total; rows are repeated or subsampled, seeded). Default:
    every row once."""
    shots: int = 4
    """In-context exemplars per prompt, drawn at random from the GSM8K training questions."""
    seed: int = 0
    """Seed of the exemplar draws and of the mixture's repeats/subsamples."""
    limit: int | None = None
    """Use only the first N usable training questions (GSM8K file order), for quick runs."""
    max_per_question: int | None = None
    """Keep at most N store chains per question (the first N by sample index, after dropping duplicates)."""
    data_dir: Path | None = field(default=None, compare=False)
    """Benchmark files (GSM8K train set, dev split); default $COTSPEC_DATA_DIR, else the user cache dir."""

    def __post_init__(self) -> None:
        if self.store is None and not self.gold:
            raise CotspecError("nothing to build from: pass --store run.db (teacher chains) and/or --gold (GSM8K's own solutions)")
        if self.store is not None:
            store = Path(self.store)
            if not store.exists():
                raise CotspecError(f"--store {store}: no such file; pass the .db file `cotspec sample --store` wrote")
            if store.is_dir():
                raise CotspecError(f"--store {store}: is a directory; pass the sample store's .db file")
        if not self.formats:
            raise CotspecError(f"--formats is empty: name at least one of {', '.join(FORMATS)}")
        for name in self.formats:
            if name not in FORMATS:
                raise CotspecError(f"--formats: unknown format {name!r}; choose from {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise CotspecError(f"--formats names a format twice: {','.join(self.formats)}")
        if self.weights is not None:
            if len(self.weights) != len(self.formats):
                raise CotspecError(
                    f"--weights has {len(self.weights)} values but --formats names {len(self.formats)} formats "
                    f"({','.join(self.formats)}); give one weight per format, in the same order"
                )
            for fmt, weight in zip(self.formats, self.weights):
                if not (math.isfinite(weight) and weight > 0):
                    raise CotspecError(f"--weights: the weight of {fmt} must be a positive number, got {weight}; drop the format from --formats instead of weighting it 0")
        if self.shots < 1 and IN_CONTEXT_FORMATS & set(self.formats):
            raise CotspecError(f"--shots must be >= 1 for the in-context formats, got {self.shots}")
        if self.limit is not None and self.limit < 1:
            raise CotspecError(f"--limit must be >= 1, got {self.limit}")
        if self.max_per_question is not None:
            if self.max_per_question < 1:
                raise CotspecError(f"--max-per-question must be >= 1, got {self.max_per_question}")
            if self.store is None:
                raise CotspecError("--max-per-question limits store chains; it needs --store")

    @property
    def weight_of(self) -> dict[str, float] | None:
        return None if self.weights is None else dict(zip(self.formats, self.weights))

    def to_json(self) -> dict[str, object]:
        """The settings as recorded in build.json (paths as given)."""
        return {
            "store": None if self.store is None else str(self.store),
            "gold": self.gold,
            "formats": list(self.formats),
            "weights": None if self.weights is None else list(self.weights),
            "shots": self.shots,
            "seed": self.seed,
            "limit": self.limit,
            "max_per_question": self.max_per_question,
        }


def parse_formats(text: str) -> tuple[str, ...]:
    """`"zero_shot_cot,in_context_cot"` -> a tuple of names (checked by BuildConfig). `all` is every format."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return FORMATS if names == ("all",) else names


def parse_weights(text: str) -> tuple[float, ...]:
    """`"1,1,2,2"` -> floats; CotspecError naming --weights for anything that is not a number."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            values.append(float(part))
        except ValueError:
            raise CotspecError(f"--weights must be comma-separated numbers, one per format (e.g. 1,1,2,2); got {part!r} in {text!r}") from None
    return tuple(values)
