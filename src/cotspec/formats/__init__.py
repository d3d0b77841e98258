"""Distillation training data in the paper's four formats, built from teacher chains or GSM8K's own.

    cotspec build --gold --out data/gold
"""

from __future__ import annotations

from .build import MANIFEST, build_training_data, load_training_data
from .config import BuildConfig, parse_formats, parse_weights
from .leakcheck import DevLeakError, assert_no_dev_questions
from .rows import COLUMNS, DATASET_LAYOUT, FEATURES
from .templates import FORMATS

__all__ = [
    "COLUMNS",
    "DATASET_LAYOUT",
    "FEATURES",
    "FORMATS",
    "MANIFEST",
    "BuildConfig",
    "DevLeakError",
    "assert_no_dev_questions",
    "build_training_data",
    "load_training_data",
    "parse_formats",
    "parse_weights",
]
