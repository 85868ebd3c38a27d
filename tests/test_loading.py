"""Loading real models on the CPU: every quantization, plan vs measured memory, and every user-facing error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from playground.errors import (
    CorruptModelFolder,
    DoesNotFit,
    ModelNotFound,
    OfflineNoWeights,
    QuantizationUnsupported,
)
from playground.models.embedded import CHECKPOINT_NAME, COMPLETE_MARKER
from playground.models.loading import load_model
from playground.models.memory import parse_hardware

QUANTS = ("nf4", "int8", "none")
WEIGHT_FILES = {"config.json", "generation_config.json", "model.safetensors", COMPLETE_MARKER}


def linear_class(quant: str) -> type:
    import bitsandbytes as bnb

    return {"nf4": bnb.nn.Linear4bit, "int8": bnb.nn.Linear8bitLt, "none": torch.nn.Linear}[quant]


def decoder_linears(model) -> list[torch.nn.Module]:
    return [m for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".layers." in f".{name}"]


def greedy_tokens(loaded, prompt: str = "The capital of France is", n: int = 4) -> torch.Tensor:
    tok = loaded.tokenizer
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = loaded.model(**enc).logits
        assert torch.isfinite(logits).all()
        out = loaded.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                    pad_token_id=tok.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:]
    assert new.shape == (n,)
    assert int(new.max()) < loaded.model.config.vocab_size
    return new


def assert_plan_matches_measured(loaded) -> None:
    measured, planned = loaded.placement.footprint_bytes, loaded.plan.weight_bytes
    assert abs(measured - planned) / planned < 0.10, f"measured {measured} vs planned {planned}"
    assert loaded.placement.predicted_bytes == planned


# --- the embedded model in every quantization ------------------------------------------------------


@pytest.fixture(scope="module")
def loaded_int8(models_dir):
    return load_model("embedded", "int8", models_dir=models_dir)


@pytest.fixture(scope="module")
def loaded_none(models_dir):
    return load_model("embedded", "none", models_dir=models_dir)


@pytest.fixture(params=QUANTS)
def loaded(request):
    return request.getfixturevalue(f"loaded_{request.param}")


def test_embedded_loads_in_the_asked_quantization(loaded):
    q = loaded.plan.quant
    assert loaded.quant == q == loaded.placement.quant
    assert loaded.quant_reason == f"{q} was asked for"
    assert loaded.source.kind == "preset" and loaded.source.ref == "embedded"
    assert Path(loaded.path).name == CHECKPOINT_NAME
    assert loaded.device.value == "cpu"


def test_embedded_plan_matches_measured_footprint(loaded):
    assert_plan_matches_measured(loaded)


def test_embedded_linear_layers_have_the_quantized_class(loaded):
    expected = linear_class(loaded.quant)
    linears = decoder_linears(loaded.model)
    assert len(linears) == 30 * 7  # q, k, v, o, gate, up, down in each of the 30 layers
    for m in linears:
        if loaded.quant == "none":
            assert type(m) is torch.nn.Linear
        else:
            assert isinstance(m, expected), type(m)


def test_embedded_placement_report_names_the_cpu_and_every_layer(loaded):
    [dev] = loaded.placement.devices
    assert dev.device == "cpu"
    assert dev.modules.startswith("layers 0–29")
    assert "embeddings" in dev.modules
    assert dev.bytes == pytest.approx(loaded.placement.footprint_bytes, rel=0.01)
    md = loaded.placement.to_markdown()
    assert f"Quantization **{loaded.quant}**" in md
    assert "| cpu | layers 0–29" in md
    d = loaded.placement.to_dict()
    assert d["quant"] == loaded.quant and d["devices"][0]["device"] == "cpu"


def test_embedded_generates_greedy_tokens(loaded):
    new = greedy_tokens(loaded, n=3)
    assert loaded.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_quantizations_are_ordered_by_measured_memory(loaded_nf4, loaded_int8, loaded_none):
    sizes = [m.placement.footprint_bytes for m in (loaded_nf4, loaded_int8, loaded_none)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_auto_picks_none_on_this_machine_with_a_reason(models_dir):
    loaded = load_model("embedded", "auto", models_dir=models_dir)
    assert loaded.quant == "none" == loaded.plan.quant
    assert "none" in loaded.quant_reason and "fits" in loaded.quant_reason
    assert type(decoder_linears(loaded.model)[0]) is torch.nn.Linear


# --- a model built from a config, random weights, loaded by folder path ------------------------------


def copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in WEIGHT_FILES:
            shutil.copy(f, dst / f.name)


@pytest.fixture(scope="module")
def tiny_folder(models_dir, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = models_dir / CHECKPOINT_NAME
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    vocab = len(AutoTokenizer.from_pretrained(src))
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=vocab, max_position_embeddings=512)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    copy_tokenizer(src, folder)
    return folder


@pytest.mark.parametrize("quant", ["nf4", "none"])
def test_random_weights_model_loads_from_its_folder(tiny_folder, models_dir, quant):
    loaded = load_model(str(tiny_folder), quant, models_dir=models_dir)
    assert loaded.source.kind == "local"
    assert loaded.path == str(tiny_folder.resolve())
    assert loaded.quant == quant
    linears = decoder_linears(loaded.model)
    assert len(linears) == 2 * 7
    for m in linears:
        assert type(m) is linear_class(quant)
    [dev] = loaded.placement.devices
    assert dev.device == "cpu" and dev.modules.startswith("layers 0–1")
    assert_plan_matches_measured(loaded)
    greedy_tokens(loaded, n=3)


# --- errors: the right class, a message that says what to do -------------------------------------------


def test_missing_folder_is_model_not_found(models_dir, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFound) as exc_info:
        load_model(str(missing), "nf4", models_dir=models_dir)
    assert str(missing) in str(exc_info.value)
    assert "check the path" in str(exc_info.value)


def test_folder_without_config_is_corrupt(models_dir, tmp_path):
    folder = tmp_path / "no-config"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(CorruptModelFolder) as exc_info:
        load_model(str(folder), "none", models_dir=models_dir)
    assert "no config.json" in str(exc_info.value)
    assert "save_pretrained" in str(exc_info.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_safetensors_is_corrupt(models_dir, tiny_folder, tmp_path, damage):
    folder = tmp_path / f"{damage}-weights"
    copy_tokenizer(tiny_folder, folder)
    shutil.copy(tiny_folder / "config.json", folder / "config.json")
    good = (tiny_folder / "model.safetensors").read_bytes()
    bad = good[: len(good) // 2] if damage == "truncated" else os.urandom(4096)
    (folder / "model.safetensors").write_bytes(bad)
    with pytest.raises(CorruptModelFolder) as exc_info:
        load_model(str(folder), "none", models_dir=models_dir)
    msg = str(exc_info.value)
    assert str(folder) in msg
    assert "download it again" in msg or "convert" in msg


@pytest.mark.parametrize("ref", ["NousResearch/Hermes-4-14B", "someone-else/never-downloaded-model"])
def test_hub_id_while_offline_is_offline_no_weights(models_dir, ref):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(OfflineNoWeights) as exc_info:
        load_model(ref, "nf4", models_dir=models_dir)
    msg = str(exc_info.value)
    assert ref in msg
    assert "download it once with network access" in msg


@pytest.mark.parametrize("ref", ["not a model!!", "a/b/c/d", "owner/"])
def test_nonsense_ref_is_model_not_found(models_dir, ref):
    with pytest.raises(ModelNotFound) as exc_info:
        load_model(ref, "nf4", models_dir=models_dir)
    assert "pick a preset or check the spelling" in str(exc_info.value)


@pytest.mark.parametrize("ref", ["", "   "])
def test_empty_ref_is_model_not_found(models_dir, ref):
    with pytest.raises(ModelNotFound):
        load_model(ref, "nf4", models_dir=models_dir)


def test_too_small_hardware_does_not_fit(models_dir):
    with pytest.raises(DoesNotFit) as exc_info:
        load_model("embedded", "nf4", models_dir=models_dir, hardware=parse_hardware("cpu:0.05"))
    plan = exc_info.value.plan
    assert plan is not None and not plan.fits
    assert plan.shortfall_bytes >= plan.weight_bytes > 0
    msg = str(exc_info.value)
    assert "does NOT fit" in msg and "Try nf4, more GPUs, or a smaller model" in msg


def test_unknown_quantization_is_unsupported(models_dir):
    with pytest.raises(QuantizationUnsupported) as exc_info:
        load_model("embedded", "fp3", models_dir=models_dir)
    assert "'fp3'" in str(exc_info.value)
    assert "use nf4, int8, none or auto" in str(exc_info.value)


def test_without_bitsandbytes_quantized_loads_are_refused_but_none_loads(models_dir, monkeypatch):
    import playground.models.loading

    monkeypatch.setattr(playground.models.loading, "bitsandbytes_problem",
                        lambda device: "bitsandbytes cannot be imported (simulated)")
    for quant in ("nf4", "int8"):
        with pytest.raises(QuantizationUnsupported) as exc_info:
            load_model("embedded", quant, models_dir=models_dir)
        msg = str(exc_info.value)
        assert f"Cannot load in {quant}" in msg and "simulated" in msg
        assert "Use quantization 'none'" in msg
    loaded = load_model("embedded", "none", models_dir=models_dir)
    assert loaded.quant == "none"
    greedy_tokens(loaded, n=2)


def test_loading_still_works_after_every_error(models_dir):
    # Runs last in this file: every failure above left the process able to load and run a model.
    loaded = load_model("embedded", "none", models_dir=models_dir)
    assert loaded.quant == "none"
    assert_plan_matches_measured(loaded)
    greedy_tokens(loaded, n=2)


def test_unwritable_home_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "models"
    blocker.write_text("a file where the models folder should be")
    with pytest.raises(CorruptModelFolder) as exc_info:
        load_model("embedded", "nf4", models_dir=blocker)
    assert "PLAYGROUND_HOME" in str(exc_info.value)


def test_int8_cast_warning_is_logged_once(models_dir, caplog):
    import logging

    lm = load_model("embedded", "int8", models_dir=models_dir)
    ids = lm.tokenizer("Hello", return_tensors="pt")
    with caplog.at_level(logging.WARNING, logger="bitsandbytes"):
        lm.model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert sum("MatMul8bitLt" in r.getMessage() for r in caplog.records) <= 1
