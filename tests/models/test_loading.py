"""load_model / save_model on every kind of reference: the real embedded preset, a GGUF file written in
the test, save_pretrained directories of tiny random Llama and T5 models, and references that fail."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from support.tiny_models import (  # noqa: F401  (single_torch_thread is a fixture)
    ascii_tokenizer,
    single_torch_thread,
    tiny_llama,
    tiny_t5,
    write_tiny_llama_gguf,
)
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, ByT5Tokenizer, PreTrainedTokenizerFast

from cotspec.errors import CotspecError
from cotspec.models import LoadedModel, check_model_reference, load_model, resolve_dtype, save_model
from models.broken_models import BROKEN_MODELS

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Dequantized copies of test files go to a per-test cache, not the user's."""
    monkeypatch.setenv("COTSPEC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def logits(loaded_or_model, tokenizer, text: str = "Q: a b\nA:") -> torch.Tensor:
    model = loaded_or_model.model if isinstance(loaded_or_model, LoadedModel) else loaded_or_model
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            start = torch.tensor([[model.config.decoder_start_token_id]])
            return model(**encoded, decoder_input_ids=start).logits.float()
        return model(**encoded).logits.float()


def test_save_pretrained_directory_of_a_decoder_only_model(tmp_path):
    tokenizer = ByT5Tokenizer()  # builds offline; its missing pad/bos handling is what we configure
    model = tiny_llama(tokenizer)
    model.save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")

    loaded = load_model(str(tmp_path / "llama"), dtype="float32", device="cpu")
    assert not loaded.is_seq2seq
    assert isinstance(loaded.model, type(model))
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token is not None
    assert loaded.source == str(tmp_path / "llama")
    torch.testing.assert_close(logits(loaded, loaded.tokenizer), logits(model, tokenizer))


def test_save_pretrained_directory_of_a_t5_model_is_detected_as_seq2seq(tmp_path):
    tokenizer = ByT5Tokenizer()
    model = tiny_t5(tokenizer)
    model.save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")

    loaded = load_model(str(tmp_path / "t5"), dtype="float32", device="cpu")
    assert loaded.is_seq2seq
    assert isinstance(loaded.model, AutoModelForSeq2SeqLM._model_mapping[type(model.config)])
    assert loaded.tokenizer.padding_side == "right"
    assert loaded.keeps_newlines  # ByT5 works on bytes: "\n" survives
    torch.testing.assert_close(logits(loaded, loaded.tokenizer), logits(model, tokenizer))


def test_bfloat16_request_is_honoured(tmp_path):
    tokenizer = ascii_tokenizer()
    tiny_llama(tokenizer).save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    assert load_model(str(tmp_path / "llama"), dtype="bfloat16", device="cpu").dtype == torch.bfloat16


def test_gguf_file_is_dequantized_once_into_the_cache(tmp_path, private_cache):
    gguf_path = write_tiny_llama_gguf(tmp_path / "tiny.gguf")

    direct = load_model(str(gguf_path), dtype="float32", device="cpu", cache_dequantized=False)
    first = load_model(str(gguf_path), dtype="float32", device="cpu")
    copies = list((private_cache / "dequantized").iterdir())
    assert [c.name.startswith("tiny-") for c in copies] == [True]
    assert first.source == str(copies[0])
    assert "quantization_config" not in json.loads((copies[0] / "config.json").read_text())

    again = load_model(str(gguf_path), dtype="float32", device="cpu")
    assert again.source == first.source
    expected = logits(direct, direct.tokenizer)
    torch.testing.assert_close(logits(first, first.tokenizer), expected, rtol=0, atol=0)
    torch.testing.assert_close(logits(again, again.tokenizer), expected, rtol=0, atol=0)
    assert again.tokenizer("Q: a b\n")["input_ids"] == direct.tokenizer("Q: a b\n")["input_ids"]

    # A rewritten file (new mtime) gets a fresh copy instead of the stale one.
    os.utime(gguf_path, ns=(0, 0))
    assert load_model(str(gguf_path), dtype="float32", device="cpu").source != first.source


def test_unwritable_cache_falls_back_to_loading_the_gguf_directly(tmp_path, monkeypatch):
    gguf_path = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "not-a-directory").write_text("")
    monkeypatch.setenv("COTSPEC_CACHE_DIR", str(tmp_path / "not-a-directory" / "cache"))
    loaded = load_model(str(gguf_path), dtype="float32", device="cpu")
    assert loaded.source == str(gguf_path)


def test_save_model_turns_a_gguf_load_into_a_plain_transformers_directory(tmp_path, private_cache):
    gguf_path = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    loaded = load_model(str(gguf_path), dtype="float32", device="cpu", cache_dequantized=False)

    out = save_model(loaded, tmp_path / "saved")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    plain = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(logits(plain, loaded.tokenizer), logits(loaded, loaded.tokenizer))


# The real preset uses the user's cache like any real run: the first run dequantizes (~20 s), later
# runs read the cached copy.
@pytest.mark.real_model
def test_embedded_preset_loads_and_knows_a_capital():
    loaded = load_model("smollm2-135m-instruct", device="cpu")
    assert not loaded.is_seq2seq and loaded.keeps_newlines
    assert loaded.dtype == resolve_dtype("auto", torch.device("cpu"))
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token_id is not None
    next_token = logits(loaded, loaded.tokenizer, "The capital of France is")[0, -1].argmax()
    assert loaded.tokenizer.decode(next_token) == " Paris"


@pytest.mark.real_model
def test_embedded_preset_round_trips_through_save_model(tmp_path):
    loaded = load_model("smollm2-135m-instruct", dtype="float32", device="cpu")
    out = save_model(loaded, tmp_path / "smollm2")
    plain = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(logits(plain, loaded.tokenizer), logits(loaded, loaded.tokenizer))


def test_unknown_reference_says_what_was_tried():
    with pytest.raises(CotspecError) as error:
        load_model("no-such-model-anywhere", device="cpu")
    message = str(error.value)
    assert "\n" not in message
    assert "not a preset (smollm2-135m-instruct)" in message
    assert "Hugging Face hub" in message


@pytest.mark.parametrize(
    ("make_reference", "expected"),
    [
        (lambda tmp: str(tmp / "missing.gguf"), "model file .*missing.gguf does not exist"),
        (lambda tmp: str(tmp / "nowhere"), "model path .*nowhere does not exist"),
        (lambda tmp: str(tmp), "has no config.json"),
    ],
)
def test_bad_local_references_name_the_path(tmp_path, make_reference, expected):
    with pytest.raises(CotspecError, match=expected):
        load_model(make_reference(tmp_path), device="cpu")


def test_directory_holding_a_gguf_points_at_the_file(tmp_path, private_cache):
    write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(CotspecError, match=r"pass its path, e\.g\. .*tiny\.gguf"):
        load_model(str(tmp_path), device="cpu")


@pytest.fixture(scope="module")
def good_model_dir(tmp_path_factory):
    tokenizer = ascii_tokenizer()
    path = tmp_path_factory.mktemp("good-model")
    tiny_llama(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("name", BROKEN_MODELS)
def test_broken_local_model_is_one_line_naming_the_path(name, good_model_dir, tmp_path, private_cache):
    broken = BROKEN_MODELS[name]
    reference = str(broken.build(tmp_path, good_model_dir))
    with pytest.raises(CotspecError) as error:
        load_model(reference, dtype="float32", device="cpu")
    message = str(error.value)
    assert reference in message
    for fragment in broken.says:
        assert fragment in message, message
    # The cheap checks `cotspec train` runs before writing anything catch the same cases.
    if broken.found_before_loading:
        with pytest.raises(CotspecError, match="^" + re.escape(message) + "$"):
            check_model_reference(reference)
    else:
        check_model_reference(reference)


def test_check_model_reference_accepts_good_references_without_loading(good_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("cotspec.models.loading._load_pretrained", lambda *a, **k: pytest.fail("loaded"))
    check_model_reference(str(good_model_dir))
    check_model_reference(str(write_tiny_llama_gguf(tmp_path / "tiny.gguf")))
    check_model_reference("some-org/some-model")  # a hub id: left to loading


def newline_dropping_tokenizer() -> PreTrainedTokenizerFast:
    """Splits on whitespace and joins with spaces: "\\n" cannot survive, like T5's sentencepiece."""
    words = ["<unk>", "<pad>", "</s>", "a", "b", "Q:"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers import decoders

    backend.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def test_prompts_lose_newlines_only_for_tokenizers_that_cannot_keep_them():
    model = tiny_llama(ascii_tokenizer())
    dropping = LoadedModel(model, newline_dropping_tokenizer(), is_seq2seq=True, reference="t", source="t")
    keeping = LoadedModel(model, ascii_tokenizer(), is_seq2seq=False, reference="t", source="t")
    assert not dropping.keeps_newlines
    assert dropping.prepare_prompt("Q: a\nb\n") == "Q: a b "
    assert keeping.keeps_newlines
    assert keeping.prepare_prompt("Q: a\nb\n") == "Q: a\nb\n"


@pytest.mark.parametrize("mode, shown", [("plain", False), ("rich", True)])
def test_the_weight_loading_bar_stays_out_of_logs(tmp_path, monkeypatch, capfd, mode, shown):
    """A log file (plain progress) must not collect transformers' carriage-return bar at every load."""
    tokenizer = ascii_tokenizer()
    tiny_llama(tokenizer).save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    monkeypatch.setenv("COTSPEC_PROGRESS", mode)
    capfd.readouterr()
    load_model(str(tmp_path / "llama"), dtype="float32", device="cpu")
    assert ("Loading weights" in capfd.readouterr().err) == shown
