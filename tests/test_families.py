"""One table of per-family prompt rules for both backends: for every family, the local prompt and the
remote request of each lane say the same thing (the system text, where it goes, the user turn).

Each family's template (tests/templates/, set on the real embedded model's tokenizer) is saved in a folder
named after the family's preset, and a RemoteBackend is pointed at that folder as its model: it
picks the family by name and renders its requests' messages with the template, as the server will.
No request leaves this machine (nothing is iterated). What only the local backend can do, open the
assistant turn itself, is the one difference allowed.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from playground.backends.remote import RemoteBackend, RemoteConfig
from playground.lanes import LANES, LaneSettings
from playground.prompting.catalog import REASONING_STYLES
from playground.prompting.families import FAMILIES, THINK_PREFILL, lane_messages
from playground.prompting.prompts import build_prompt

TEMPLATES = Path(__file__).parent / "templates"
PROMPT = "What is 17 * 23?"
SYSTEM = "Answer in French."
# (style, the folder's name: the family's preset, its template; None keeps the embedded model's own)
FAMILY_MODELS = [
    ("hermes", "Hermes-4-14B", "hermes4_chatml"),
    ("hermes", "Hermes-4-70B", "hermes4_llama3"),
    ("qwen3", "Qwen3-8B", "qwen3"),
    ("r1", "DeepSeek-R1-Distill-Qwen-7B", "deepseek_r1"),
    ("r1", "DeepSeek-R1-Distill-Llama-8B", "deepseek_r1_distill_old"),
    ("generic", "SmolLM2-135M-Instruct", None),
]
# The local backend's own additions after the generation prompt: its prefill, and the standard lane
# closing a block the template (or the prefill) opened.
LOCAL_ONLY_TAILS = ("", THINK_PREFILL, THINK_PREFILL + "</think>\n\n", "</think>\n\n")


@pytest.fixture(scope="module")
def family_folders(models_dir, tmp_path_factory):
    """name -> (folder, tokenizer) per family: the embedded model's tokenizer (from the session's
    converted checkpoint, which loads much faster than the GGUF) with the family's template."""
    from transformers import AutoTokenizer

    from playground.models.embedded import checkpoint_dir

    smol = AutoTokenizer.from_pretrained(checkpoint_dir(models_dir), local_files_only=True)
    root = tmp_path_factory.mktemp("families")
    out = {}
    for _style, name, template in FAMILY_MODELS:
        tok = copy.deepcopy(smol)
        if template:
            tok.chat_template = (TEMPLATES / f"{template}.jinja").read_text()
        tok.save_pretrained(root / name)
        out[name] = (str(root / name), tok)
    return out


def test_the_table_covers_every_style_and_the_tests_every_family():
    assert tuple(FAMILIES) == REASONING_STYLES
    assert {style for style, _, _ in FAMILY_MODELS} == set(FAMILIES)


# Each family's own switch ("auto"), and the template flag where the family has one.
CASES = [(style, name, template, switch) for style, name, template in FAMILY_MODELS
         for switch in ("auto", "template_kwargs") if switch == "auto" or FAMILIES[style].flag]


@pytest.mark.parametrize(("style", "name", "template", "switch"), CASES, ids=[f"{c[1]}-{c[3]}" for c in CASES])
def test_local_prompt_and_remote_request_agree_on_every_lane(family_folders, style, name, template, switch):
    folder, tok = family_folders[name]
    backend = RemoteBackend(RemoteConfig("http://127.0.0.1:9/v1", model=folder, switch=switch))
    assert backend.style == style
    for system in (None, SYSTEM):
        run = backend.start(PROMPT, system, {lane: LaneSettings() for lane in LANES})
        for lane in LANES:
            local = build_prompt(tok, style, lane, PROMPT, system)
            remote = run.prompts[lane]
            assert remote.input_ids, "the remote backend rendered with the family's template"
            # The same text up to the end of the generation prompt: the same system text, placed the
            # same way, and the same user turn.
            assert local.text.startswith(remote.text), (lane, system, local.text, remote.text)
            assert local.text[len(remote.text):] in LOCAL_ONLY_TAILS, (lane, system, local.text[len(remote.text):])
            # And in the request itself, the user's words go where the family puts them.
            messages = run.requests[lane]["messages"]
            user = messages[-1]["content"]
            assert messages[-1]["role"] == "user" and user.endswith(PROMPT)
            if system and style == "r1":
                assert [m["role"] for m in messages] == ["user"] and user.startswith(SYSTEM)
            elif system:
                assert messages[0]["role"] == "system" and messages[0]["content"].endswith(SYSTEM)


@pytest.mark.parametrize("style", REASONING_STYLES)
def test_the_reasoning_lane_differs_from_the_standard_lane(style):
    for system in (None, SYSTEM):
        std = lane_messages(style, "standard", PROMPT, system)
        rsn = lane_messages(style, "reasoning", PROMPT, system)
        assert std != rsn or FAMILIES[style].switch == "always", style
        assert rsn.prefill == (THINK_PREFILL if "reasoning" in FAMILIES[style].prefill_lanes else "")


def test_a_thinking_prompt_goes_before_the_users_system_text():
    # Hermes templates ignore thinking=True beside a system message: the prompt must lead the system text.
    for style in ("hermes", "generic"):
        lm = lane_messages(style, "reasoning", PROMPT, SYSTEM)
        assert lm.messages[0] == {"role": "system", "content": FAMILIES[style].thinking_prompt + "\n\n" + SYSTEM}
        assert lm.template_kwargs == {}
    assert lane_messages("hermes", "reasoning", PROMPT, None).template_kwargs == {"thinking": True}
    assert lane_messages("hermes", "standard", PROMPT, SYSTEM).messages[0]["content"] == SYSTEM
