"""What a training-data build is: one dataclass, checked on construction, recorded in build.json.

`BuildSettings` is the one home of the build settings: `BuildConfig` (`cotspec build`) adds where the
build is written, `cotspec.distill.config.DataConfig` (the ``data:`` section of a training or pipeline
config) adds the tokenization settings and builds into ``<out>/data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .templates import FORMATS, IN_CONTEXT_FORMATS


@dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """Which chains, in which formats and mixture: the settings a build is made from (its build.json)."""

    store: Path | None = None
    """Sample store (.db) of teacher chains: its correct chains are used, exact duplicates dropped."""
    gold: bool = False
    """Also use GSM8K's human-written solutions as chains (no teacher needed; they carry no logprobs)."""
    formats: tuple[str, ...] = FORMATS
    """Data formats to build, comma-separated (or `all`): zero_shot_answer, zero_shot_cot,
    in_context_answer, in_context_cot."""
    weights: tuple[float, ...] | None = None
    """Mixture weights, comma-separated, one per format in `formats` order: format f gets w_f / sum(w) of
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
    """Benchmark files; default $COTSPEC_DATA_DIR, else the user cache dir."""

    def __post_init__(self) -> None:
        if self.formats == ("all",):
            object.__setattr__(self, "formats", FORMATS)
        if not self.formats:
            raise ConfigError("formats", f"is empty: name at least one of {', '.join(FORMATS)}")
        for name in self.formats:
            if name not in FORMATS:
                raise ConfigError("formats", f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ConfigError("formats", f"names a format twice: {','.join(self.formats)}")
        if self.weights is not None:
            if len(self.weights) != len(self.formats):
                raise ConfigError(
                    "weights",
                    f"has {len(self.weights)} values but `formats` names {len(self.formats)} formats "
                    f"({','.join(self.formats)}); give one weight per format, in the same order",
                )
            for fmt, weight in zip(self.formats, self.weights):
                if not (math.isfinite(weight) and weight > 0):
                    raise ConfigError(
                        "weights",
                        f"the weight of {fmt} must be a positive number, got {weight}; drop the format from "
                        "`formats` instead of weighting it 0",
                    )
        if self.shots < 1 and IN_CONTEXT_FORMATS & set(self.formats):
            raise ConfigError("shots", f"must be >= 1 for the in-context formats, got {self.shots}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", f"must be >= 1, got {self.limit}")
        if self.max_per_question is not None and self.max_per_question < 1:
            raise ConfigError("max_per_question", f"must be >= 1, got {self.max_per_question}")

    def check_sources(self) -> None:
        """ConfigError unless there is something to build from (checked when a build is about to run)."""
        if self.store is None and not self.gold:
            raise ConfigError("store", "nothing to build from: give `store` (a sample store of teacher chains) and/or `gold` (GSM8K's own solutions)")
        if self.store is not None:
            store = Path(self.store)
            if not store.exists():
                raise ConfigError("store", f"{store}: no such file; give the .db file `cotspec sample` wrote")
            if store.is_dir():
                raise ConfigError("store", f"{store}: is a directory; give the sample store's .db file")
        if self.max_per_question is not None and self.store is None:
            raise ConfigError("max_per_question", "limits store chains; it needs `store`")

    def build_settings(self) -> dict[str, Any]:
        """The `BuildSettings` fields of this config, as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(BuildSettings)}

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


@dataclass(frozen=True, kw_only=True)
class BuildConfig(BuildSettings):
    """Settings of `cotspec build`: the build settings and where the build goes."""

    out: Path
    """Output directory: the dataset (`datasets.load_from_disk`) and its build.json manifest. A previous
    build there is replaced; a directory holding anything else (a training or eval run, other files) is
    refused, so nothing the build did not write is ever deleted."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_sources()


def parse_formats(text: str) -> tuple[str, ...]:
    """`"zero_shot_cot,in_context_cot"` -> a tuple of names (checked by BuildConfig). `all` is every format."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return FORMATS if names == ("all",) else names


def parse_weights(text: str) -> tuple[float, ...]:
    """`"1,1,2,2"` -> floats; ConfigError on `weights` for anything that is not a number."""
    from ..config import coerce

    return coerce(text, tuple[float, ...], "weights")
