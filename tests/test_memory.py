"""Memory plans from config numbers alone (meta device, no weights): sizes, hardware specs, the KV budget,
the balanced split over GPUs, and what the plan advises when a model does not fit."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.models.memory import (
    CPU_RESERVE_BYTES,
    CUDA_CONTEXT_BYTES,
    GB,
    GPU0_EXTRA_BYTES,
    PROMPT_TOKENS_RESERVED,
    QUANT_MODES,
    GiB,
    ModelSize,
    RunBudget,
    choose_auto_quant,
    parse_hardware,
    plan_placement,
    rows_that_fit,
    size_model,
    tokens_per_row_that_fit,
)
from playground.prompting.catalog import PRESETS

KiB = 1024
HERMES = ("hermes-4-14b", "hermes-4-70b", "hermes-4-405b")
# Both lanes at 16k new tokens: a Hermes 4 reasoning trace of ~16k tokens beside a standard lane as long.
BOTH_AT_16K = RunBudget((16384, 16384))
SMALL = RunBudget((256, 256))
# The cards behind "24/48/80/141 GB": RTX 4090, A6000, H100 80GB, H200 (GPU_MEMORY_GIB has their sizes).
CARDS = ("4090", "A6000", "H100", "H200")


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
    # Every plan carries the same weights, whatever the hardware.
    assert plan_placement(key, size, "nf4", parse_hardware("2×H200"), SMALL).weight_bytes == nf4


@pytest.mark.parametrize("key", HERMES)
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
    modules = {u.name: u.modules for u in size.units}
    # Each unit names the modules a device_map gives it: a whole decoder layer is one entry.
    assert modules["layers.7"] == ("model.layers.7",)
    assert modules["embeddings"] == ("model.embed_tokens",)
    assert modules["lm_head"] == ("lm_head",)
    assert "model.norm" in modules["norm"] and "model.rotary_emb" in modules["norm"]


def test_tied_embeddings_are_counted_once_and_the_head_rides_with_them():
    size = sized("embedded")  # SmolLM2-135M ties its head to the embeddings
    assert "lm_head" not in names(size)
    assert size.num_params == pytest.approx(134.5e6, rel=0.01)
    [emb] = [u for u in size.units if u.name == "embeddings"]
    assert set(emb.modules) == {"model.embed_tokens", "lm_head"}  # one tensor, one device


def test_a_plans_device_map_covers_every_tensor_of_the_model():
    from accelerate import init_empty_weights
    from accelerate.utils import check_device_map
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = PRESETS["hermes-4-14b"].shape
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(shape.model_type, **shape.to_config_kwargs()))
    plan = plan_placement("14B", sized("hermes-4-14b"), "nf4", parse_hardware("4×A10G"), BOTH_AT_16K)
    check_device_map(model, plan.device_map)  # raises naming any tensor the map leaves out
    assert set(plan.device_map.values()) == {0, 1, 2, 3}


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
        ("H100:40 + 2×H100", [("H100#0", 40 * GiB), ("H100#1", int(79.6 * GiB)), ("H100#2", int(79.6 * GiB))]),
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


# --- the run budget -------------------------------------------------------------------------------


def test_a_budget_reserves_every_row_as_long_as_the_longest_lane():
    b = RunBudget((2048, 16384), runs=3, prompt_tokens=500)
    # One batched generate grows every row to the longest: the standard lane's row costs as much.
    assert b.rows == 6 and b.tokens_per_row == 500 + 16384 and b.kv_tokens == 6 * 16884
    assert "6 rows (3 runs × 2 lanes)" in b.describe() and "16,384 new" in b.describe()
    assert RunBudget((8, 8)).prompt_tokens == PROMPT_TOKENS_RESERVED


@pytest.mark.parametrize("kw", [dict(new_tokens=()), dict(new_tokens=(5, -1)), dict(new_tokens=(5,), runs=0),
                                dict(new_tokens=(5,), prompt_tokens=-1)])
def test_a_budget_refuses_impossible_numbers(kw):
    with pytest.raises(ValueError, match="run budget"):
        RunBudget(**kw)


def test_the_kv_reserve_follows_the_budget():
    size, hw = sized("hermes-4-405b"), parse_hardware("2×H200")
    for budget in (SMALL, BOTH_AT_16K, RunBudget((2048, 16384), runs=2)):
        plan = plan_placement("405B", size, "nf4", hw, budget)
        assert plan.fits and plan.kv_tokens == budget.kv_tokens
        assert sum(d.kv_bytes for d in plan.devices) == size.kv_bytes_per_token * budget.kv_tokens
    huge = plan_placement("405B", size, "nf4", hw, RunBudget((100_000, 100_000)))  # ~103 GB of KV cache
    assert not huge.fits and huge.shortfall_bytes > 0


# --- the split for 14B / 70B / 405B on 1, 2, 4 and 8 GPUs of 24 / 48 / 80 / 141 GB -------------------


def check_plan(plan, size: ModelSize) -> None:
    """What every plan promises: no device overfilled; a fitting plan holds every unit once, in model
    order, as contiguous ranges, and reserves its KV share where its layers are."""
    cost = {u.name: u.bytes_by_quant[plan.quant] for u in size.units}
    kv_per_layer = size.kv_bytes_per_token // len(size.layer_units) * plan.kv_tokens
    for d in plan.devices:
        assert d.headroom_bytes >= 0, d
        assert d.assigned_bytes == sum(cost[u] for u in d.units)
        assert d.kv_bytes == kv_per_layer * d.layers
        assert (d.workspace_bytes > 0) == (d.layers > 0)
    placed = [u for d in plan.devices for u in d.units]
    assert placed == names(size)[: len(placed)]
    assert plan.fits == (len(placed) == len(size.units))


def check_balanced(plan, size: ModelSize) -> None:
    """D'Hondt's condition: no layer would sit better on another GPU. With f the memory a GPU has for its
    layers, f_i / (n_i + 1) ≤ f_j / n_j for any two GPUs; so headroom follows the KV each GPU holds."""
    kv_per_layer = size.kv_bytes_per_token // len(size.layer_units) * plan.kv_tokens
    per_layer = size.layer_units[0].bytes_by_quant[plan.quant] + kv_per_layer
    gpus = [d for d in plan.devices if d.is_gpu and d.layers]
    room = {d.name: d.headroom_bytes + d.layers * per_layer for d in gpus}
    for a in gpus:
        for b in gpus:
            if a is not b:
                assert room[a.name] / (a.layers + 1) <= room[b.name] / b.layers + 1, (a, b)
    all_gpus = [d for d in plan.devices if d.is_gpu]
    assert all_gpus[0].units[0] == "embeddings" and all_gpus[-1].units[-1] == "lm_head"


@pytest.mark.parametrize("key", HERMES)
@pytest.mark.parametrize("card", CARDS)
@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_the_split_on_every_common_gpu_setup(key, card, count):
    size = sized(key)
    hw = parse_hardware(f"{count}×{card}")
    plan = plan_placement(key, size, "nf4", hw, BOTH_AT_16K)
    check_plan(plan, size)
    if plan.fits:
        assert plan.strategy == "balanced", "a GPU-only plan that fits is always the balanced split"
        check_balanced(plan, size)
        assert plan.advice == []
        assert rows_that_fit(plan, BOTH_AT_16K.tokens_per_row) >= BOTH_AT_16K.rows
    else:
        assert plan.strategy == "sequential" and plan.advice
        # What no plan can hold: weights + the KV reserve beyond every GPU's usable memory.
        need = size.weight_bytes("nf4") + size.kv_bytes_per_token * BOTH_AT_16K.kv_tokens
        assert plan.shortfall_bytes > 0 and need > sum(d.usable_bytes for d in plan.devices) - count * 4 * GiB


@pytest.mark.parametrize(("key", "hardware", "fits"), [
    ("hermes-4-14b", "1×4090", True), ("hermes-4-70b", "1×A6000", False), ("hermes-4-70b", "2×A6000", True),
    ("hermes-4-70b", "1×H100", True), ("hermes-4-405b", "2×H100", False), ("hermes-4-405b", "4×H100", True),
    ("hermes-4-405b", "1×H200", False), ("hermes-4-405b", "2×H200", True), ("hermes-4-405b", "8×A6000", True),
])
def test_which_setups_hold_both_lanes_at_16k(key, hardware, fits):
    assert plan_placement(key, sized(key), "nf4", parse_hardware(hardware), BOTH_AT_16K).fits == fits


def test_goal_405b_on_two_h200_leaves_each_gpu_20_gb_beyond_weights_and_kv():
    plan = plan_placement("405B", sized("hermes-4-405b"), "nf4", parse_hardware("2×H200"), BOTH_AT_16K)
    assert plan.fits and plan.strategy == "balanced"
    for d in plan.devices:
        # headroom_bytes also leaves out the dequantization scratch and prefill activations.
        assert d.usable_bytes - d.assigned_bytes - d.kv_bytes >= d.headroom_bytes >= 20 * GB, d
    gpu0, gpu1 = plan.devices
    # The split the issue found (layers 0–82 on GPU 0, 1.3 GB left) is gone: the layers are shared out.
    assert abs(gpu0.layers - gpu1.layers) <= 1
    assert gpu0.kv_bytes + gpu1.kv_bytes == 504 * KiB * BOTH_AT_16K.kv_tokens


def test_goal_70b_on_one_80_gb_gpu_holds_two_16k_lanes():
    plan = plan_placement("70B", sized("hermes-4-70b"), "nf4", parse_hardware("1×H100"), BOTH_AT_16K)
    assert plan.fits
    assert rows_that_fit(plan, PROMPT_TOKENS_RESERVED + 16384) >= 2
    assert tokens_per_row_that_fit(plan, 2) >= PROMPT_TOKENS_RESERVED + 16384


def test_gpu0_keeps_an_extra_reserve_and_the_embeddings():
    plan = plan_placement("405B", sized("hermes-4-405b"), "nf4", parse_hardware("2×H200"), SMALL)
    gpu0, gpu1 = plan.devices
    assert gpu0.capacity_bytes == gpu1.capacity_bytes
    assert gpu1.usable_bytes - gpu0.usable_bytes == GPU0_EXTRA_BYTES
    assert gpu1.usable_bytes == gpu1.capacity_bytes - CUDA_CONTEXT_BYTES
    assert "embeddings" in gpu0.units and "lm_head" in gpu1.units


def test_unequal_gpus_get_layers_in_proportion_to_their_room():
    size = sized("hermes-4-14b")
    plan = plan_placement("14B", size, "nf4", parse_hardware("1×L40S + 1×T4"), BOTH_AT_16K)
    big, small = plan.devices
    assert plan.fits and plan.strategy == "balanced"
    assert big.layers > 2 * small.layers > 0
    check_balanced(plan, size)
    # Headroom per byte of KV comes out about equal: within what one layer moved would change.
    ratios = [d.headroom_bytes / d.kv_bytes for d in plan.devices]
    assert max(ratios) / min(ratios) < 1.5, ratios


def test_a_cpu_takes_only_what_the_gpus_cannot_hold():
    size = sized("hermes-4-14b")
    fits_gpu = plan_placement("14B", size, "nf4", parse_hardware("1×T4 + cpu:64"), SMALL)
    assert fits_gpu.strategy == "balanced" and fits_gpu.devices[1].units == []
    assert set(fits_gpu.device_map.values()) == {0}
    spill = plan_placement("14B", size, "none", parse_hardware("1×T4 + cpu:64"), SMALL)  # 29.5 GB in bf16
    assert spill.fits and spill.strategy == "sequential"
    t4, cpu = spill.devices
    assert t4.units[0] == "embeddings" and cpu.units[-1] == "lm_head" and t4.layers and cpu.layers
    assert set(spill.device_map.values()) == {0, "cpu"}
    assert cpu.usable_bytes == 64 * GiB - CPU_RESERVE_BYTES


def test_405b_nf4_does_not_fit_one_h200_and_says_what_would():
    size = sized("hermes-4-405b")
    plan = plan_placement("Hermes 4 405B", size, "nf4", parse_hardware("1×H200"), SMALL)
    [gpu] = plan.devices
    assert not plan.fits
    assert plan.weight_bytes - gpu.usable_bytes < plan.shortfall_bytes
    assert gpu.headroom_bytes >= 0
    assert "does NOT fit" in plan.summary() and f"{plan.shortfall_bytes / GB:.1f} GB" in plan.summary()
    assert plan.advice == ["more GPUs: 2×H200 fit"]


def test_a_plan_with_no_room_places_nothing():
    plan = plan_placement("embedded", sized("embedded"), "nf4", parse_hardware("cpu:0.05"), SMALL)
    assert not plan.fits
    assert plan.devices[0].usable_bytes == 0 and plan.devices[0].units == []
    assert plan.shortfall_bytes >= plan.weight_bytes
    [advice] = plan.advice
    gib = int(advice.split("cpu:")[1].split(")")[0])
    assert plan_placement("embedded", sized("embedded"), "nf4", parse_hardware(f"cpu:{gib}"), SMALL).fits
    assert not plan_placement("embedded", sized("embedded"), "nf4", parse_hardware(f"cpu:{gib - 1}"), SMALL).fits


def test_unknown_quantization_is_refused():
    with pytest.raises(ValueError, match="nf4"):
        plan_placement("x", sized("embedded"), "fp3", parse_hardware("cpu:64"), SMALL)


# --- advice: each suggestion is true, and the one just past it is not ----------------------------------


def number_after(text: str, marker: str) -> int:
    return int(text.split(marker, 1)[1].split()[0].replace(",", "").split("×")[0])


@pytest.mark.parametrize(("key", "quant", "hardware", "budget"), [
    ("hermes-4-70b", "nf4", "2×4090", BOTH_AT_16K),
    ("hermes-4-70b", "nf4", "1×A6000", RunBudget((2048, 8192), runs=4)),
    ("hermes-4-14b", "none", "1×A10G", SMALL),
    ("hermes-4-405b", "nf4", "3×H100", replace(BOTH_AT_16K, runs=4)),
    ("hermes-4-405b", "int8", "2×H200", BOTH_AT_16K),
])
def test_every_piece_of_advice_is_true(key, quant, hardware, budget):
    size, hw = sized(key), parse_hardware(hardware)
    plan = plan_placement(key, size, quant, hw, budget)
    assert not plan.fits and plan.advice

    def fits(b=budget, q=quant, h=hw):
        return plan_placement(key, size, q, h, b).fits

    for advice in plan.advice:
        if advice.startswith("fewer rows"):
            runs = number_after(advice, "fewer rows: ")
            assert fits(replace(budget, runs=runs)) and not fits(replace(budget, runs=runs + 1))
        elif advice.startswith("a smaller budget"):
            cap = number_after(advice, "at most ")
            capped = lambda t: replace(budget, new_tokens=tuple(min(n, t) for n in budget.new_tokens))  # noqa: E731
            assert fits(capped(cap)) and not fits(capped(cap + 1))
        elif advice.startswith("another quantization"):
            assert fits(q=advice.split(": ")[1].split()[0])
        elif advice.startswith("more GPUs"):
            n = number_after(advice, "more GPUs: ")
            card = hardware.split("×")[1]
            assert fits(h=parse_hardware(f"{n}×{card}")) and not fits(h=parse_hardware(f"{n - 1}×{card}"))
        else:
            pytest.fail(f"advice of an unknown kind: {advice}")
    kinds = {a.split(":")[0] for a in plan.advice}
    if budget.runs > 1:
        assert "fewer rows" in kinds


# --- admission: how many rows fit beside a placed model --------------------------------------------


@pytest.mark.parametrize(("key", "hardware"), [("hermes-4-14b", "1×A10G"), ("hermes-4-70b", "1×H100"),
                                               ("hermes-4-405b", "2×H200"), ("hermes-4-405b", "4×H100")])
def test_rows_that_fit_are_rows_a_plan_can_reserve(key, hardware):
    size, hw = sized(key), parse_hardware(hardware)
    plan = plan_placement(key, size, "nf4", hw, SMALL)
    counts = [rows_that_fit(plan, t) for t in (2_000, 8_000, 32_000, 128_000)]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0  # longer rows, fewer of them
    assert rows_that_fit(plan, SMALL.tokens_per_row) >= SMALL.rows
    for tokens, rows in zip((2_000, 8_000, 32_000, 128_000), counts):
        if rows:  # a budget of that many one-lane rows gets a plan of its own that fits
            assert plan_placement(key, size, "nf4", hw, RunBudget((tokens - SMALL.prompt_tokens,), runs=rows)).fits
    per_row = tokens_per_row_that_fit(plan, 2)
    assert plan_placement(key, size, "nf4", hw, RunBudget((per_row - SMALL.prompt_tokens,), runs=2)).fits
    assert rows_that_fit(plan, per_row) >= 2
    assert rows_that_fit(plan, 2 * per_row + 2) <= 1


def test_nothing_fits_beside_a_model_that_does_not_fit():
    plan = plan_placement("405B", sized("hermes-4-405b"), "nf4", parse_hardware("1×H200"), SMALL)
    assert rows_that_fit(plan, 1000) == 0 and tokens_per_row_that_fit(plan, 2) == 0


# --- automatic quantization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hardware", "quant"),
    [("H100:40", "none"), ("H100:24", "int8"), ("H100:16", "nf4"), ("2×H100:12", "int8")],
)
def test_choose_auto_quant_takes_the_least_lossy_mode_that_fits(hardware, quant):
    size = sized("hermes-4-14b")  # 29.5 GB in bf16, 16.3 GB int8, 9.9 GB nf4
    hw = parse_hardware(hardware)
    chosen, reason = choose_auto_quant("Hermes 4 14B", size, hw, SMALL)
    assert chosen == quant
    assert reason.startswith(quant)
    assert plan_placement("14B", size, chosen, hw, SMALL).fits
    for lossless in QUANT_MODES[: QUANT_MODES.index(chosen)]:
        assert not plan_placement("14B", size, lossless, hw, SMALL).fits
    assert ("less lossy modes do not fit" in reason) == (quant != "none")


def test_choose_auto_quant_falls_back_to_nf4_when_nothing_fits():
    chosen, reason = choose_auto_quant("Hermes 4 14B", sized("hermes-4-14b"), parse_hardware("H100:12"), SMALL)
    assert chosen == "nf4"
    assert "nothing fits" in reason


# --- property: placement never overfills a device and keeps model order --------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caps_gib=st.lists(st.floats(min_value=0, max_value=40, allow_nan=False), min_size=1, max_size=6),
    with_cpu=st.booleans(),
    quant=st.sampled_from(QUANT_MODES),
    lane_tokens=st.integers(min_value=0, max_value=100_000),
)
def test_placement_never_overfills_and_keeps_model_order(caps_gib, with_cpu, quant, lane_tokens):
    size = sized("hermes-4-14b")
    hw = [(f"GPU#{i}", int(c * GiB)) for i, c in enumerate(caps_gib)]
    if with_cpu:
        hw.append(("cpu", int(caps_gib[-1] * GiB)))
    budget = RunBudget((lane_tokens, lane_tokens))
    plan = plan_placement("14B", size, quant, hw, budget)
    assert len(plan.devices) == len(hw)
    check_plan(plan, size)
    if plan.strategy == "balanced":
        assert plan.fits
        check_balanced(plan, size)
    else:
        # In order: what did not land is every unit after the last one placed, weights and KV.
        by_name = {u.name: u.bytes_by_quant[quant] for u in size.units}
        kv_per_layer = size.kv_bytes_per_token // len(size.layer_units) * budget.kv_tokens
        placed = sum(len(d.units) for d in plan.devices)
        assert plan.shortfall_bytes == sum(by_name[u] + (kv_per_layer if u.startswith("layers.") else 0)
                                           for u in names(size)[placed:])
    assert set(plan.device_map) == {m for u in size.units if any(u.name in d.units for d in plan.devices)
                                    for m in u.modules}
