"""Memory plans from config numbers alone (meta device, no weights): sizes, hardware specs, placement."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.models.memory import (
    CPU_RESERVE_BYTES,
    CUDA_CONTEXT_BYTES,
    GB,
    GPU0_EXTRA_BYTES,
    QUANT_MODES,
    GiB,
    ModelSize,
    choose_auto_quant,
    parse_hardware,
    plan_placement,
    size_model,
)
from playground.prompting.catalog import PRESETS

KiB = 1024


@cache
def sized(key: str) -> ModelSize:
    from transformers import AutoConfig

    shape = PRESETS[key].shape
    return size_model(AutoConfig.for_model(shape.model_type, **shape.to_config_kwargs()))


def names(size: ModelSize) -> list[str]:
    return [u.name for u in size.units]


# --- sizes against the published Hermes 4 numbers ---------------------------------------------


@pytest.mark.parametrize(
    ("key", "nf4_gb", "kv_kib"),
    [("hermes-4-14b", 9.9, 160), ("hermes-4-70b", 39.5, 320), ("hermes-4-405b", 216, 504)],
)
def test_hermes_nf4_weights_and_kv_per_token_match_published_sizes(key, nf4_gb, kv_kib):
    size = sized(key)
    nf4 = size.weight_bytes("nf4")
    assert abs(nf4 / GB - nf4_gb) / nf4_gb < 0.10, f"{key}: {nf4 / GB:.1f} GB vs published {nf4_gb} GB"
    assert size.kv_bytes_per_token == kv_kib * KiB


@pytest.mark.parametrize("key", ["hermes-4-14b", "hermes-4-70b", "hermes-4-405b"])
def test_quantization_shrinks_weights_in_the_expected_ratios(key):
    size = sized(key)
    none, int8, nf4 = (size.weight_bytes(q) for q in ("none", "int8", "nf4"))
    # bf16 is 2 bytes per parameter; int8 roughly halves it, nf4 roughly quarters the linear layers.
    assert none == pytest.approx(2 * size.num_params, rel=1e-9)
    assert nf4 < int8 < none
    assert 0.45 < int8 / none < 0.60
    assert 0.25 < nf4 / none < 0.36


def test_units_are_embeddings_then_every_layer_in_order_then_the_head():
    size = sized("hermes-4-70b")
    assert names(size) == ["embeddings", *(f"layers.{i}" for i in range(80)), "norm", "lm_head"]


def test_tied_embeddings_are_counted_once():
    size = sized("embedded")  # SmolLM2-135M ties its head to the embeddings
    assert "lm_head" not in names(size)
    assert size.num_params == pytest.approx(134.5e6, rel=0.01)


# --- hardware specs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2×H200", [("H200#0", 140 * GiB), ("H200#1", 140 * GiB)]),
        ("2xH200", [("H200#0", 140 * GiB), ("H200#1", 140 * GiB)]),
        ("2 x h200", [("H200#0", 140 * GiB), ("H200#1", 140 * GiB)]),
        ("4×A100-80GB", [(f"A100-80GB#{i}", int(79.2 * GiB)) for i in range(4)]),
        ("1×L40S + 1×T4", [("L40S#0", 45 * GiB), ("T4#0", 15 * GiB)]),
        ("H100:80", [("H100#0", 80 * GiB)]),
        ("cpu:64", [("cpu", 64 * GiB)]),
    ],
)
def test_parse_hardware(spec, expected):
    assert parse_hardware(spec) == expected


def test_parse_hardware_cpu_without_size_uses_available_memory():
    [(name, cap)] = parse_hardware("cpu")
    assert name == "cpu" and cap > 0


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("2×Z80", ["unknown GPU 'Z80'", "H200", "NAME:GiB"]),
        ("3×RTX9999", ["unknown GPU", "A100-80GB"]),
        ("!!! what", ["cannot read hardware", "2×H200"]),
        ("2×H200 & more", ["cannot read hardware", "2×H200"]),
        ("", ["no hardware given", "2×H200"]),
        ("   ", ["no hardware given"]),
        (" + ", ["no hardware given"]),
        ("0×H200", ["out of range"]),
        ("65×H100", ["out of range"]),
    ],
)
def test_parse_hardware_rejects_with_a_message_that_says_what_to_write(spec, says):
    with pytest.raises(ValueError) as exc_info:
        parse_hardware(spec)
    for part in says:
        assert part in str(exc_info.value)


# --- placement ------------------------------------------------------------------------------------


def test_405b_nf4_does_not_fit_one_h200():
    size = sized("hermes-4-405b")
    plan = plan_placement("Hermes 4 405B", size, "nf4", parse_hardware("1×H200"))
    [gpu] = plan.devices
    assert not plan.fits
    weights, kv_total = plan.weight_bytes, plan.kv_bytes_per_token * plan.kv_tokens
    biggest_unit = max(u.bytes_by_quant["nf4"] for u in size.units) + kv_total // 126
    # The shortfall is what did not land: weights + KV reservation beyond the usable memory,
    # plus at most the one whole unit that stopped the fill.
    assert weights - gpu.usable_bytes < plan.shortfall_bytes
    assert plan.shortfall_bytes <= weights + kv_total - gpu.usable_bytes + biggest_unit
    assert gpu.assigned_bytes + gpu.kv_bytes <= gpu.usable_bytes
    assert "does NOT fit" in plan.summary()
    assert f"{plan.shortfall_bytes / GB:.1f} GB" in plan.summary()


def test_405b_nf4_fits_two_h200_split_across_both_in_order():
    size = sized("hermes-4-405b")
    plan = plan_placement("Hermes 4 405B", size, "nf4", parse_hardware("2×H200"))
    gpu0, gpu1 = plan.devices
    assert plan.fits and plan.shortfall_bytes == 0
    assert "fits" in plan.summary() and "NOT" not in plan.summary()
    # Every unit exactly once, in model order, split into a head part on GPU 0 and a tail on GPU 1.
    assert gpu0.units + gpu1.units == names(size)
    layers0 = [u for u in gpu0.units if u.startswith("layers.")]
    layers1 = [u for u in gpu1.units if u.startswith("layers.")]
    assert layers0 and layers1
    assert gpu0.units[0] == "embeddings" and gpu1.units[-1] == "lm_head"
    last0 = int(layers0[-1].split(".")[1])
    assert gpu0.layer_range == f"layers 0–{last0}, embeddings"
    assert gpu1.layer_range == f"layers {last0 + 1}–125, norm, lm_head"
    for d in plan.devices:
        assert d.assigned_bytes == sum(u.bytes_by_quant["nf4"] for u in size.units if u.name in d.units)
        assert d.assigned_bytes + d.kv_bytes <= d.usable_bytes
    assert gpu0.assigned_bytes + gpu1.assigned_bytes == plan.weight_bytes
    assert gpu0.kv_bytes + gpu1.kv_bytes == pytest.approx(plan.kv_bytes_per_token * plan.kv_tokens, abs=126)


def test_gpu0_keeps_an_extra_reserve():
    plan = plan_placement("Hermes 4 405B", sized("hermes-4-405b"), "nf4", parse_hardware("2×H200"))
    gpu0, gpu1 = plan.devices
    assert gpu0.capacity_bytes == gpu1.capacity_bytes
    assert gpu0.usable_bytes < gpu1.usable_bytes
    assert gpu1.usable_bytes - gpu0.usable_bytes == GPU0_EXTRA_BYTES
    assert gpu1.usable_bytes == gpu1.capacity_bytes - CUDA_CONTEXT_BYTES


def test_kv_reservation_shrinks_what_fits():
    size = sized("hermes-4-405b")
    hw = parse_hardware("2×H200")
    assert plan_placement("405B", size, "nf4", hw).fits
    huge = plan_placement("405B", size, "nf4", hw, kv_tokens=200_000)  # ~103 GB of KV cache
    assert not huge.fits
    assert huge.shortfall_bytes > 0
    small = plan_placement("405B", size, "nf4", hw, kv_tokens=0)
    assert small.fits and sum(d.kv_bytes for d in small.devices) == 0


def test_a_plan_with_no_room_places_nothing():
    size = sized("embedded")
    plan = plan_placement("embedded", size, "nf4", parse_hardware("cpu:0.05"))
    assert not plan.fits
    assert plan.devices[0].usable_bytes == 0 and plan.devices[0].units == []
    assert plan.shortfall_bytes >= plan.weight_bytes


def test_unknown_quantization_is_refused():
    with pytest.raises(ValueError, match="nf4"):
        plan_placement("x", sized("embedded"), "fp3", parse_hardware("cpu:64"))


# --- automatic quantization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hardware", "quant"),
    [("H100:40", "none"), ("H100:24", "int8"), ("H100:16", "nf4"), ("2×H100:12", "int8")],
)
def test_choose_auto_quant_takes_the_least_lossy_mode_that_fits(hardware, quant):
    size = sized("hermes-4-14b")  # 29.5 GB in bf16, 16.3 GB int8, 9.9 GB nf4 (+2.7 GB KV)
    hw = parse_hardware(hardware)
    chosen, reason = choose_auto_quant("Hermes 4 14B", size, hw)
    assert chosen == quant
    assert reason.startswith(quant)
    assert plan_placement("14B", size, chosen, hw).fits
    for lossless in QUANT_MODES[: QUANT_MODES.index(chosen)]:
        assert not plan_placement("14B", size, lossless, hw).fits
    assert ("less lossy modes do not fit" in reason) == (quant != "none")


def test_choose_auto_quant_falls_back_to_nf4_when_nothing_fits():
    chosen, reason = choose_auto_quant("Hermes 4 14B", sized("hermes-4-14b"), parse_hardware("H100:12"))
    assert chosen == "nf4"
    assert "nothing fits" in reason


# --- max_memory ------------------------------------------------------------------------------------


def test_max_memory_has_one_entry_per_device():
    size = sized("hermes-4-70b")
    plan = plan_placement("70B", size, "nf4", parse_hardware("4×A100-80GB"))
    assert plan.fits
    assert set(plan.max_memory) == {0, 1, 2, 3}
    for i, d in enumerate(plan.devices):
        # The limit handed to from_pretrained leaves the KV reservation free and holds the planned weights.
        assert plan.max_memory[i] == d.usable_bytes - d.kv_bytes
        assert plan.max_memory[i] >= d.assigned_bytes


def test_max_memory_names_the_cpu_by_its_key():
    plan = plan_placement("14B", sized("hermes-4-14b"), "nf4", parse_hardware("1×T4 + cpu:64"))
    assert set(plan.max_memory) == {0, "cpu"}
    assert plan.devices[1].usable_bytes == 64 * GiB - CPU_RESERVE_BYTES


# --- property: placement never overfills a device and keeps model order --------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caps_gib=st.lists(st.floats(min_value=0, max_value=40, allow_nan=False), min_size=1, max_size=6),
    with_cpu=st.booleans(),
    quant=st.sampled_from(QUANT_MODES),
    kv_tokens=st.integers(min_value=0, max_value=200_000),
)
def test_placement_never_overfills_and_keeps_model_order(caps_gib, with_cpu, quant, kv_tokens):
    size = sized("hermes-4-14b")
    hw = [(f"GPU#{i}", int(c * GiB)) for i, c in enumerate(caps_gib)]
    if with_cpu:
        hw.append(("cpu", int(caps_gib[-1] * GiB)))
    plan = plan_placement("14B", size, quant, hw, kv_tokens=kv_tokens)
    by_name = {u.name: u.bytes_by_quant[quant] for u in size.units}
    n_layers = sum(1 for u in size.units if u.name.startswith("layers."))
    kv_per_layer = size.kv_bytes_per_token * kv_tokens // n_layers

    assert len(plan.devices) == len(hw)
    for d in plan.devices:
        weights = sum(by_name[u] for u in d.units)
        kv = kv_per_layer * sum(1 for u in d.units if u.startswith("layers."))
        assert weights == d.assigned_bytes and kv == d.kv_bytes
        assert weights + kv <= d.usable_bytes <= d.capacity_bytes
    placed = [u for d in plan.devices for u in d.units]
    all_units = names(size)
    # Units land in model order, each once: the placed ones are a prefix of the model's units.
    assert placed == all_units[: len(placed)]
    assert plan.fits == (len(placed) == len(all_units))
    unplaced = all_units[len(placed):]
    assert plan.shortfall_bytes == sum(by_name[u] + (kv_per_layer if u.startswith("layers.") else 0)
                                       for u in unplaced)
