"""What each lane asks the server for: the reasoning switches, the family's messages, the request body.

The messages come from the per-family table (playground.prompting.families), the same one the local
backend renders; this room adds only what a request can carry and a chat template cannot: Qwen3's
soft switch in the text, every known template flag at once, the OpenRouter-style reasoning field.
"""

from __future__ import annotations

import logging

from playground.config import RemoteSwitch
from playground.lanes import LaneSettings
from playground.prompting.catalog import PRESETS, Preset, guess_style
from playground.prompting.conversation import Turn
from playground.prompting.families import FAMILIES, THINKING_FLAGS, lane_messages
from playground.prompting.prompts import LanePrompt, ends_inside_think, render_chat

log = logging.getLogger(__name__)

# How the reasoning lane switches reasoning on (and the standard lane keeps it off).
SWITCHES: dict[RemoteSwitch, str] = {
    "auto": "pick by the model's family",
    "template_kwargs": "chat_template_kwargs thinking / enable_thinking (vLLM, SGLang, transformers serve)",
    "system_prompt": "a thinking system prompt in the reasoning lane (works on any server)",
    "soft_switch": "Qwen3's /think and /no_think appended to the prompt",
    "reasoning_field": "the request's reasoning.enabled (OpenRouter-style hosted APIs)",
    "always": "none: the model always reasons (DeepSeek-R1), both lanes reason",
}
# What `auto` picks: the family's own switch, except Hermes, whose thinking system prompt works on any
# server (its template flag needs a server that passes chat_template_kwargs through).
AUTO_SWITCH: dict[str, str] = {style: f.switch for style, f in FAMILIES.items()} | {"hermes": "system_prompt"}
SOFT_SWITCHES = {"standard": "/no_think", "reasoning": "/think"}  # Qwen3's, appended to the user's text
# Sent when set; a server that rejects one by name (HTTP 400/422) gets the request again without it.
OPTIONAL_FIELDS = ("top_k", "min_tokens", "seed", "stream_options")


def preset_for_model(name: str) -> Preset | None:
    """A preset whose repo id or key the served model's name contains (e.g. '…/Hermes-4-405B-FP8')."""
    low = name.lower()
    for p in sorted(PRESETS.values(), key=lambda p: -len(p.repo_id)):
        if p.key == "embedded":
            continue
        if low == p.key or p.repo_id.lower() in low or p.repo_id.split("/")[-1].lower() in low:
            return p
    return None


def style_for_model(name: str) -> str:
    p = preset_for_model(name)
    return p.reasoning_style if p else guess_style(name)[1]


def lane_request(style: str, switch: str, lane: str, prompt: str, system: str | None,
                 history: tuple[Turn, ...] = (), keep_reasoning: bool = False) -> tuple[list[dict], dict]:
    """(messages, chat_template_kwargs) for one lane under a resolved switch (not "auto"); the
    reasoning field goes on the body (request_body). `history` is THIS lane's earlier turns: they go
    as messages, each earlier trace sent back (as its think block) only when `keep_reasoning`, so a
    server that splits reasoning out (reasoning_content) never sees a dropped one."""
    on = lane == "reasoning"
    # Every user turn carried the soft switch when it was asked: the history says it again.
    suffix = f" {SOFT_SWITCHES[lane]}" if switch == "soft_switch" else ""
    # The server's template is not known for sure here: send every family's flag.
    kwargs = {flag: on for flag in THINKING_FLAGS} if switch == "template_kwargs" else {}
    lm = lane_messages(style, lane, prompt, system, switch, history=history, keep_reasoning=keep_reasoning,
                       suffix=suffix)
    return lm.messages, {**kwargs, **{k: v for k, v in lm.template_kwargs.items() if k not in kwargs and v}}


def request_body(model: str, switch: str, lane: str, messages: list[dict], kwargs: dict, s: LaneSettings,
                 dropped: set[str]) -> dict:
    """The /chat/completions body of one lane, without the optional fields this server rejected before."""
    body = {"model": model, "messages": messages, "stream": True, "max_tokens": s.max_new_tokens,
            "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
            "stream_options": {"include_usage": True}}
    if s.top_k:
        body["top_k"] = s.top_k
    if s.min_new_tokens:
        body["min_tokens"] = s.min_new_tokens
    if kwargs:
        body["chat_template_kwargs"] = kwargs
    for f in dropped:
        body.pop(f, None)
    if switch == "reasoning_field":
        body["reasoning"] = {"enabled": lane == "reasoning"}
    return body


def lane_prompt(tok, lane: str, messages: list[dict], kwargs: dict, switch: str, model: str) -> LanePrompt:
    """The prompt as the server will render it, where the template is here to render it; whether it
    ends inside <think> decides how the stream is parsed (an R1-style template opens the block)."""
    if tok is not None and getattr(tok, "chat_template", None):
        try:
            text, suffix = render_chat(tok, messages, **kwargs)
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
            return LanePrompt(lane, text, ids, ends_inside_think(suffix), "")
        except Exception as exc:  # a template that fails here may still work on the server
            log.info("could not render %s's template locally: %s", model, exc)
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return LanePrompt(lane, text, [], switch == "always", "")
