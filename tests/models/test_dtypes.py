"""--dtype / --device resolution."""

from __future__ import annotations

import pytest
import torch

from cotspec.errors import CotspecError
from cotspec.models import dtypes


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cpu_is_bfloat16_only_with_native_bf16_instructions(monkeypatch, native_bf16, expected):
    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda: native_bf16)
    assert dtypes.resolve_dtype("auto", torch.device("cpu")) is expected


def test_cpu_capability_probe_agrees_with_torch():
    capabilities = torch.cpu.get_capabilities()
    assert dtypes.cpu_has_native_bf16() == bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


@pytest.mark.parametrize(
    ("name", "expected"), [("bf16", torch.bfloat16), ("float32", torch.float32), ("fp16", torch.float16)]
)
def test_explicit_dtypes(name, expected):
    assert dtypes.resolve_dtype(name, torch.device("cpu")) is expected


def test_unknown_dtype_names_the_flag_and_the_choices():
    with pytest.raises(CotspecError, match="^dtype: must be one of auto, float32, bfloat16, float16; got 'int4'$"):
        dtypes.resolve_dtype("int4", torch.device("cpu"))


def test_device_defaults_and_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dtypes.resolve_device(None) == torch.device("cpu")
    with pytest.raises(CotspecError, match="^device: cuda: no CUDA GPU"):
        dtypes.resolve_device("cuda")
    with pytest.raises(CotspecError, match="^device: 'gpu0' is not a device"):
        dtypes.resolve_device("gpu0")
