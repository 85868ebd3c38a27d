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
from playground.models.loading import load_model, run_budget
from playground.models.memory import RunBudget, parse_hardware
from playground.models.placement import module_of, torch_device_map

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
    assert "does NOT fit" in msg and "Change one of: more memory:" in msg and "GiB available (cpu:" in msg


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


# --- placement: the plan's device_map is the one transformers gets --------------------------------------

# Two fake GPUs with a few MB each beyond the CUDA context (and GPU 0's extra reserve): the tiny model's
# KV reserve decides the split, as a large model's would on real GPUs.
FAKE_GPUS = "H100:2.53 + H100:1.55"
LANES_BUDGET = RunBudget((2048, 8192))


@pytest.fixture(scope="module")
def hermes_shaped_folder(models_dir, tmp_path_factory) -> Path:
    """Hermes 4 14B's architecture (Qwen3: q/k norms, separate head) at sizes a CPU test can afford."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    src = models_dir / CHECKPOINT_NAME
    folder = tmp_path_factory.mktemp("hermes-shaped") / "hermes-4-14b-tiny"
    cfg = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, vocab_size=len(AutoTokenizer.from_pretrained(src)),
                      max_position_embeddings=512, tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen3ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    copy_tokenizer(src, folder)
    return folder


@pytest.fixture(scope="module")
def split_load(hermes_shaped_folder, models_dir):
    """A load planned for two fake GPUs on this CPU, with what from_pretrained was really handed."""
    from transformers import AutoModelForCausalLM

    handed: list[dict] = []
    real = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        handed.append(kwargs)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AutoModelForCausalLM, "from_pretrained", spy)
        loaded = load_model(str(hermes_shaped_folder), "nf4", models_dir=models_dir,
                            hardware=parse_hardware(FAKE_GPUS), budget=LANES_BUDGET)
    [kwargs] = handed
    return loaded, kwargs


def test_the_plan_for_two_gpus_is_a_balanced_split(split_load):
    loaded, _ = split_load
    plan = loaded.plan
    gpu0, gpu1 = plan.devices
    assert plan.fits and plan.strategy == "balanced" and plan.budget == LANES_BUDGET
    assert 0 < gpu0.layers < gpu1.layers and gpu0.layers + gpu1.layers == 8  # GPU 0 has less room
    assert gpu0.units[0] == "embeddings" and gpu1.units[-2:] == ["norm", "lm_head"]


def test_the_loader_hands_from_pretrained_the_plans_own_device_map(split_load):
    loaded, kwargs = split_load
    planned = loaded.plan.device_map
    assert set(planned.values()) == {0, 1}
    # On this CPU the map keeps every module of the plan, each on the one device there is.
    assert kwargs["device_map"] == dict.fromkeys(planned, "cpu") == loaded.device_map
    assert "max_memory" not in kwargs
    names = [n for n, _ in loaded.model.named_parameters()]
    assert all(module_of(n, planned) is not None for n in names)
    assert all(str(p.device) == "cpu" for p in loaded.model.parameters())
    greedy_tokens(loaded, n=3)


def test_on_two_gpus_transformers_would_put_every_tensor_where_the_plan_says(split_load):
    from accelerate.utils import check_device_map
    from transformers.integrations.accelerate import expand_device_map

    loaded, _ = split_load
    plan = loaded.plan
    on_two = torch_device_map(plan, cuda_count=2)
    check_device_map(loaded.model, on_two)  # every tensor of the real model is covered
    # transformers reads each tensor's device from the map with this function while loading (and
    # accelerate's dispatch_model follows the same map for buffers, such as the rotary frequencies).
    tensors = [n for n, _ in loaded.model.named_parameters()] + [n for n, _ in loaded.model.named_buffers()]
    where = expand_device_map(on_two, tensors)
    for gpu, d in enumerate(plan.devices):
        for unit in d.units:
            for module in plan.unit_modules[unit]:
                tensors = [n for n in where if n.startswith(module + ".")]
                assert tensors and {where[n] for n in tensors} == {gpu}, (unit, module)


def test_the_placement_report_shows_weights_kv_and_headroom_per_planned_gpu(split_load):
    loaded, _ = split_load
    rows = loaded.placement.devices
    assert [r.plan_device for r in rows] == ["H100#0", "H100#1"]
    for row, d in zip(rows, loaded.plan.devices):
        assert row.device == "cpu"
        assert row.modules.startswith(d.layer_range.split(",")[0])  # the same layers as the plan's
        assert abs(row.bytes - d.assigned_bytes) / d.assigned_bytes < 0.10, (row, d)  # measured vs planned
        assert (row.planned_bytes, row.kv_bytes, row.headroom_bytes) == (d.assigned_bytes, d.kv_bytes, d.headroom_bytes)
    record = loaded.placement.to_dict()
    assert record["strategy"] == "balanced" and "2 rows" in record["budget"]
    assert [r["kv_bytes"] for r in record["devices"]] == [d.kv_bytes for d in loaded.plan.devices]
    md = loaded.placement.to_markdown()
    assert "| H100#0 | cpu | layers 0–" in md and "KV reserve" in md and "headroom" in md


def test_a_plan_for_more_gpus_than_there_are_is_refused(split_load):
    plan = split_load[0].plan
    with pytest.raises(DoesNotFit) as exc_info:
        torch_device_map(plan, cuda_count=1)
    msg = str(exc_info.value)
    assert "2 GPUs" in msg and "has 1" in msg and "leave the hardware empty" in msg
    assert torch_device_map(plan, cuda_count=4) == plan.device_map


def test_the_run_budget_follows_the_preset_and_the_servers_limits():
    from playground.config import Settings
    from playground.models.loading import resolve

    st = Settings(max_new_tokens=8192, max_concurrent_runs=3)
    hermes = run_budget(resolve("hermes-4-14b"), st)  # the preset recommends 2,048 + 16,384
    assert hermes.new_tokens == (2048, 8192) and hermes.runs == 3 and hermes.rows == 6
    assert run_budget(resolve("someone/some-model"), st).new_tokens == (8192, 8192)  # no recommendation
    assert run_budget(resolve("embedded"), st).new_tokens == (128, 256)


def test_the_servers_plan_reserves_for_its_concurrent_runs(home):
    from playground.app.service import Playground, plan_markdown
    from playground.config import Settings

    one = Playground(Settings(max_concurrent_runs=1)).plan("hermes-4-405b", "nf4", "2×H200")
    four = Playground(Settings(max_concurrent_runs=4)).plan("hermes-4-405b", "nf4", "2×H200")
    assert four.kv_tokens == 4 * one.kv_tokens and four.budget.rows == 8
    md = plan_markdown(four)
    assert "8 rows (4 runs × 2 lanes)" in md and "tokens of reasoning" in md and "headroom" in md
