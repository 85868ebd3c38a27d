"""A follow-up's prompt, per family: each lane continues ITS OWN conversation (the user prompts and that
lane's earlier answers), earlier reasoning dropped by default and kept when the cell says so.

The templates in tests/templates/ follow each family's documented multi-turn logic (Hermes 4 rewrites
earlier assistant turns when thinking is on unless keep_cots, and fails on a turn without '</think>';
Qwen3 and R1 keep only what follows an earlier turn's '</think>'); they are set on copies of the real
embedded tokenizer, so no download is needed.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from playground.errors import InvalidInput
from playground.prompting.conversation import MAX_HISTORY_TURNS, Turn, assistant_content
from playground.prompting.families import GENERIC_THINKING_PROMPT, HERMES_THINKING_PROMPT
from playground.prompting.prompts import build_pair, build_prompt, render_chat

TEMPLATES = Path(__file__).parent / "templates"
SYSTEM = "Answer in French."
PROMPTS = ("What is 17 * 23?", "And times two?", "Now subtract 100.")
# (style, template file; None keeps the embedded model's own ChatML template)
FAMILIES = [
    ("hermes", "hermes4_chatml"),  # Hermes 4 14B
    ("hermes", "hermes4_llama3"),  # Hermes 4 70B / 405B
    ("qwen3", "qwen3"),
    ("r1", "deepseek_r1"),
    ("r1", "deepseek_r1_distill_old"),
    ("generic", None),
]
IDS = [f"{style}-{name or 'smollm2'}" for style, name in FAMILIES]


@pytest.fixture(scope="module")
def smol(models_dir):
    from transformers import AutoTokenizer

    from playground.models.embedded import checkpoint_dir

    return AutoTokenizer.from_pretrained(checkpoint_dir(models_dir), local_files_only=True)


@pytest.fixture(scope="module")
def tokenizers(smol):
    out = {}
    for _style, name in FAMILIES:
        tok = copy.deepcopy(smol)
        if name:
            tok.chat_template = (TEMPLATES / f"{name}.jinja").read_text()
        out[name] = tok
    return out


def histories(turns: int) -> dict[str, tuple[Turn, ...]]:
    """Each lane's own earlier turns: distinct, recognisable answers and traces per lane and turn."""
    return {"standard": tuple(Turn(PROMPTS[i], f"STD-ANSWER-{i}") for i in range(turns - 1)),
            "reasoning": tuple(Turn(PROMPTS[i], f"RSN-ANSWER-{i}", f"RSN-TRACE-{i} carry the 1")
                               for i in range(turns - 1))}


def in_order(text: str, parts) -> bool:
    at = 0
    for p in parts:
        at = text.find(p, at)
        if at == -1:
            return False
        at += len(p)
    return True


@pytest.mark.parametrize("keep", [False, True], ids=["dropped", "kept"])
@pytest.mark.parametrize("system", [None, SYSTEM], ids=["no-system", "system"])
@pytest.mark.parametrize("turns", [1, 2, 3])
@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_each_lane_continues_its_own_conversation(tokenizers, family, turns, system, keep):
    style, name = family
    tok = tokenizers[name]
    hist = histories(turns)
    prompt = PROMPTS[turns - 1]
    std, rea = build_pair(tok, style, prompt, system, hist, keep)
    single_std, single_rea = build_pair(tok, style, prompt, system)
    for lane, own, other in ((std, "STD", "RSN"), (rea, "RSN", "STD")):
        assert lane.input_ids == tok(lane.text, add_special_tokens=False)["input_ids"]
        # Every user turn, in order, each followed by this lane's own answer; never the other lane's.
        expected = [p for i in range(turns - 1) for p in (PROMPTS[i], f"{own}-ANSWER-{i}")] + [prompt]
        assert in_order(lane.text, expected), (lane.lane, lane.text)
        assert f"{other}-ANSWER" not in lane.text and (other != "RSN" or "RSN-TRACE" not in lane.text)
        # The new turn opens exactly as a first turn would: same generation prompt, same parse state.
        single = single_std if lane is std else single_rea
        assert lane.text.endswith(single.text[single.text.rindex(prompt):])
        assert (lane.starts_in_reasoning, lane.close_text) == (single.starts_in_reasoning, single.close_text)
        if system:
            assert lane.text.count(SYSTEM) == 1  # the system text once, never repeated per turn
    for i in range(turns - 1):
        assert (f"RSN-TRACE-{i}" in rea.text) is keep, rea.text
    if style in ("hermes", "generic"):
        thinking = HERMES_THINKING_PROMPT if style == "hermes" else GENERIC_THINKING_PROMPT
        assert rea.text.count(thinking) == 1 and thinking not in std.text


@pytest.mark.parametrize("name", ["hermes4_chatml", "hermes4_llama3"])
def test_hermes_pitfall_turns_without_a_closer_render(tokenizers, name):
    # The template itself fails on an earlier assistant turn with no '</think>' when thinking is on:
    tok = tokenizers[name]
    raw = [{"role": "user", "content": PROMPTS[0]}, {"role": "assistant", "content": "391"},
           {"role": "user", "content": PROMPTS[1]}]
    with pytest.raises(InvalidInput, match="chat template"):
        render_chat(tok, raw, thinking=True)
    # ...which a standard-lane answer and a reasoning lane cut by its token limit both are.
    cut = Turn(PROMPTS[0], answer="", reasoning="17 * 23: 17 * 20 = 340, and 17 * 3 =")
    answered = Turn(PROMPTS[0], answer="391")
    for history in ((cut,), (answered,), (answered, cut)):
        for keep in (False, True):
            rea = build_prompt(tok, "hermes", "reasoning", PROMPTS[len(history)], None, history, keep)
            assert rea.text.count(HERMES_THINKING_PROMPT) == 1
            if keep and history[-1] is cut:
                assert "17 * 20 = 340, and 17 * 3 =\n</think>" in rea.text  # kept, and closed here
            else:
                assert "<think> </think>" in rea.text  # the template's own form of a dropped trace


@pytest.mark.parametrize("name", ["hermes4_chatml", "hermes4_llama3"])
def test_hermes_dropped_reasoning_matches_the_template_and_keep_cots_keeps_it(tokenizers, name):
    tok = tokenizers[name]
    turn = Turn(PROMPTS[0], answer="391", reasoning="17 * 23 = 391")
    dropped = build_prompt(tok, "hermes", "reasoning", PROMPTS[1], None, (turn,))
    # What the template makes of the model's full text is what we send: the trace is gone.
    full = [{"role": "user", "content": PROMPTS[0]},
            {"role": "assistant", "content": "<think>\n17 * 23 = 391\n</think>\n391"},
            {"role": "user", "content": PROMPTS[1]}]
    assert render_chat(tok, full, thinking=True)[0].replace("<think> </think>\n391", "<think> </think>391") \
        == dropped.text
    kept = build_prompt(tok, "hermes", "reasoning", PROMPTS[1], None, (turn,), keep_reasoning=True)
    assert "<think>\n17 * 23 = 391\n</think>\n\n391" in kept.text
    # The standard lane (thinking off) is never rewritten by the template: its answer as it was.
    std = build_prompt(tok, "hermes", "standard", PROMPTS[1], None, (Turn(PROMPTS[0], "391"),))
    assert "<think>" not in std.text and in_order(std.text, [PROMPTS[0], "391", PROMPTS[1]])


@pytest.mark.parametrize("name", ["qwen3", "deepseek_r1", "deepseek_r1_distill_old"])
def test_templates_that_strip_earlier_traces_still_keep_them_when_asked(tokenizers, name):
    style = "qwen3" if name == "qwen3" else "r1"
    tok = tokenizers[name]
    history = (Turn(PROMPTS[0], "391", "seventeen times twenty-three"),)
    raw = [{"role": "user", "content": PROMPTS[0]},
           {"role": "assistant", "content": assistant_content(history[0], keep_reasoning=True)},
           {"role": "user", "content": PROMPTS[1]}]
    assert "seventeen" not in render_chat(tok, raw)[0]  # the template alone would drop it
    for lane in ("standard", "reasoning"):
        kept = build_prompt(tok, style, lane, PROMPTS[1], SYSTEM, history, keep_reasoning=True)
        assert "<think>\nseventeen times twenty-three\n</think>\n\n391" in kept.text
        assert "[[playground" not in kept.text
        assert kept.input_ids == tok(kept.text, add_special_tokens=False)["input_ids"]
        dropped = build_prompt(tok, style, lane, PROMPTS[1], SYSTEM, history)
        assert "seventeen" not in dropped.text and "391" in dropped.text


def test_r1_system_text_leads_only_the_first_user_turn(tokenizers):
    tok = tokenizers["deepseek_r1"]
    history = (Turn(PROMPTS[0], "391"), Turn(PROMPTS[1], "782"))
    for lane in build_pair(tok, "r1", PROMPTS[2], SYSTEM, {"standard": history, "reasoning": history}):
        assert lane.text.startswith(tok.bos_token + "<｜User｜>" + SYSTEM + "\n\n" + PROMPTS[0] + "<｜Assistant｜>")
        assert "<｜User｜>" + PROMPTS[2] + "<｜Assistant｜>" in lane.text


def test_a_template_that_cannot_keep_reasoning_renders_its_own_way(smol):
    # Strips earlier traces AND fails on a turn without a closer: the mark cannot stand in, so the
    # template's own render is what the lane gets (nothing raised).
    tok = copy.deepcopy(smol)
    tok.chat_template = ("{% for m in messages %}{% if m.role == 'assistant' %}"
                         "{{ 'A: ' + m.content.split('</think>')[1] }}"
                         "{% else %}{{ 'U: ' + m.content }}{% endif %}\n{% endfor %}"
                         "{% if add_generation_prompt %}A: {% endif %}")
    history = (Turn(PROMPTS[0], "391", "a trace"),)
    rea = build_prompt(tok, "generic", "standard", PROMPTS[1], None, history, keep_reasoning=True)
    assert "a trace" not in rea.text and "391" in rea.text


def test_history_is_checked(smol):
    with pytest.raises(InvalidInput, match="Turn"):
        build_prompt(smol, "generic", "standard", "hi", None, ({"prompt": "x"},))
    with pytest.raises(InvalidInput, match="MAX_HISTORY_TURNS"):
        build_prompt(smol, "generic", "standard", "hi", None, (Turn("a", "b"),) * (MAX_HISTORY_TURNS + 1))


@pytest.mark.parametrize("switch", ["template_kwargs", "system_prompt", "soft_switch", "always"])
def test_remote_history_goes_as_messages_reasoning_only_when_kept(switch):
    from playground.backends.remote.requests import SOFT_SWITCHES, lane_request

    history = (Turn(PROMPTS[0], "RSN-ANSWER-0", "RSN-TRACE-0"),)
    for keep in (False, True):
        messages, kwargs = lane_request("hermes", switch, "reasoning", PROMPTS[1], SYSTEM, history, keep)
        users = [m["content"] for m in messages if m["role"] == "user"]
        [assistant] = [m["content"] for m in messages if m["role"] == "assistant"]
        assert users[-1].endswith(PROMPTS[1] + (f" {SOFT_SWITCHES['reasoning']}" if switch == "soft_switch" else ""))
        assert PROMPTS[0] in users[0] and "RSN-ANSWER-0" in assistant
        assert ("RSN-TRACE-0" in assistant) is keep  # a server that splits reasoning gets it back only if kept
        if switch == "soft_switch":
            assert all(u.endswith(SOFT_SWITCHES["reasoning"]) for u in users)
        assert kwargs.get("keep_cots", False) is (keep and switch == "template_kwargs")
