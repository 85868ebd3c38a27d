"""Build the standard lane's and the reasoning lane's prompt with the model's own chat template.

Contract:
- ``build_prompt(tokenizer, style, lane, prompt, system)`` returns a ``LanePrompt`` for one lane;
  ``build_pair`` returns ``(standard, reasoning)`` for the same prompt. Pure: no torch, no model;
  ``tokenizer`` is anything with ``apply_chat_template`` and ``__call__`` (a transformers tokenizer).
- ``style`` is a preset's ``reasoning_style``: "hermes", "qwen3", "r1" or "generic"; anything else
  raises ValueError, as does a lane other than "standard" / "reasoning".
- ``text`` is the rendered prompt (``tokenize=False, add_generation_prompt=True``) plus any
  assistant prefill we add. ``input_ids`` is exactly ``tokenizer(text, add_special_tokens=False)``:
  templates write BOS themselves, so letting the tokenizer add one too would give two.
- ``starts_in_reasoning`` is True when the generation prompt (including our prefill) ends inside an
  open think tag, detected from the text, never assumed per style: feed it to ``ThinkParser``.
  The standard lane never starts in reasoning: if its template prefills an opener we close it.
- ``close_text`` is what to append to end reasoning when the thinking budget runs out: the family's
  nudge (Qwen3 only) + the closer + a blank line; "" for the standard lane.
- A blank ``system`` ("" or whitespace, as a UI textbox sends) means no system prompt.
- What each lane renders (system placement, the thinking prompt, template flags, the prefill) is the
  per-family table in ``families.py``, which the remote backend's requests use too.
- ``history`` (a follow-up) is THIS lane's earlier turns (``conversation.Turn``), oldest first: the
  user prompts and the lane's own answers. Their reasoning is dropped unless ``keep_reasoning``;
  kept reasoning stays in the rendered text even where the model's template strips earlier traces
  (Qwen3, R1): the cell asked for it, and the stored prompt shows what the model saw.
- A template that fails to render raises InvalidInput naming the template's error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from playground.errors import InvalidInput
from playground.lanes import LANES
from playground.prompting.catalog import REASONING_STYLES
from playground.prompting.conversation import THINK_CLOSE, Turn
from playground.prompting.families import FAMILIES, LaneMessages, lane_messages
from playground.prompting.reasoning import REASONING_TAGS

log = logging.getLogger(__name__)

# Stands in for a kept earlier turn while a template that strips earlier traces renders the rest.
KEPT_TURN_MARK = "[[playground: kept turn {i}]]"


@dataclass(frozen=True)
class LanePrompt:
    lane: str  # "standard" | "reasoning"
    text: str  # the fully rendered prompt, including any assistant prefill
    input_ids: list[int]  # tokenized with add_special_tokens=False
    starts_in_reasoning: bool  # the prompt ends inside an open think tag
    close_text: str  # forced text that ends reasoning under a budget; "" for the standard lane


def _last_tag(text: str) -> tuple[int, str, bool] | None:
    """(position, tag, is_opener) of the last think-tag occurrence in text, any variant."""
    best: tuple[int, str, bool] | None = None
    for opener, closer in REASONING_TAGS:
        for tag, is_opener in ((opener, True), (closer, False)):
            pos = text.rfind(tag)
            if pos != -1 and (best is None or pos > best[0]):
                best = (pos, tag, is_opener)
    return best


def ends_inside_think(text: str) -> bool:
    """True when the last think tag in text (any variant in REASONING_TAGS) is an opener."""
    last = _last_tag(text)
    return last is not None and last[2]


def _closer_for(text: str) -> str:
    """The closer matching the open tag text ends inside; "</think>" when none is open."""
    last = _last_tag(text)
    if last is not None and last[2]:
        return dict(REASONING_TAGS)[last[1]]
    return THINK_CLOSE


def render_chat(tokenizer, messages: list[dict[str, str]], **kwargs) -> tuple[str, str]:
    """Render with the generation prompt; return (text, the generation-prompt suffix).

    Think-tag detection looks at the suffix only: a user prompt that merely mentions "<think>"
    must not make the lane start in reasoning. The suffix is what add_generation_prompt=True adds;
    if a template renders the history differently with and without it, fall back to what follows
    the last occurrence of the user's text.
    """
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
        bare = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False, **kwargs)
    except Exception as exc:  # jinja's errors, or a template's own raise_exception(...)
        raise InvalidInput(f"The model's chat template cannot render this prompt ({type(exc).__name__}: {exc}): "
                           "check the template, or start a new cell.") from None
    if text.startswith(bare):
        return text, text[len(bare):]
    content = messages[-1]["content"]
    at = text.rfind(content) if content else -1
    return text, (text[at + len(content):] if at != -1 else text)


def _render_lane(tokenizer, style: str, lane: str, prompt: str, system: str | None, history: tuple[Turn, ...],
                 keep: bool) -> tuple[str, str, str]:
    """(text, generation-prompt suffix, prefill) of one lane, its messages rendered by the model's template."""
    lm = lane_messages(style, lane, prompt, system, history=history, keep_reasoning=keep)
    text, suffix = render_chat(tokenizer, lm.messages, **lm.template_kwargs)
    family = FAMILIES[style]
    if family.flag_writes_prompt and family.flag in lm.template_kwargs and family.thinking_prompt not in text:
        # The template does not know the thinking flag (jinja ignores unknown kwargs silently): fall
        # back to the explicit system prompt, the other documented switch.
        lm = lane_messages(style, lane, prompt, system, switch="system_prompt", history=history, keep_reasoning=keep)
        text, suffix = render_chat(tokenizer, lm.messages, **lm.template_kwargs)
    if keep and history:
        text, suffix = _with_kept_turns(tokenizer, lm, text, suffix)
    return text, suffix, lm.prefill


def _with_kept_turns(tokenizer, lm: LaneMessages, text: str, suffix: str) -> tuple[str, str]:
    """The render with every kept earlier trace in it. Qwen3's and R1's templates cut each earlier
    assistant turn to what follows its last '</think>': render those turns as marks instead, then put
    the turns back in their place. Where that cannot work (a template that changes the mark, or fails
    on it), the template's own render stands."""
    kept = {i: m["content"] for i, m in enumerate(lm.messages)
            if m["role"] == "assistant" and THINK_CLOSE in m["content"]}
    if all(content in text for content in kept.values()):
        return text, suffix
    marks = {i: KEPT_TURN_MARK.format(i=i) for i in kept}
    messages = [{**m, "content": marks[i]} if i in marks else m for i, m in enumerate(lm.messages)]
    try:
        marked, marked_suffix = render_chat(tokenizer, messages, **lm.template_kwargs)
    except InvalidInput:
        marked = ""
    if not all(marked.count(mark) == 1 for mark in marks.values()):
        log.info("this template strips earlier reasoning and it could not be kept: the template's render stands")
        return text, suffix
    for i, mark in marks.items():
        marked = marked.replace(mark, kept[i])
    return marked, marked_suffix


def build_prompt(tokenizer, style: str, lane: str, prompt: str, system: str | None = None,
                 history: tuple[Turn, ...] = (), keep_reasoning: bool = False) -> LanePrompt:
    if style not in REASONING_STYLES:
        raise ValueError(f"unknown reasoning style {style!r}; expected one of {', '.join(REASONING_STYLES)}")
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}; expected one of {', '.join(LANES)}")
    reasoning = lane == "reasoning"
    text, suffix, prefill = _render_lane(tokenizer, style, lane, prompt, system, tuple(history), keep_reasoning)
    # Our prefill only where the template did not open the block already.
    if prefill and not ends_inside_think(suffix):
        text += prefill
        suffix += prefill

    if reasoning:
        starts = ends_inside_think(suffix)
        close_text = FAMILIES[style].budget_nudge + _closer_for(suffix if starts else "") + "\n\n"
    else:
        # Whatever the template prefilled (R1, thinking-only templates), the standard lane answers
        # directly: close the open block so the model sees an empty one.
        if ends_inside_think(suffix):
            closer = _closer_for(suffix) + "\n\n"
            text += closer
            suffix += closer
        starts = False
        close_text = ""

    input_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return LanePrompt(lane, text, input_ids, starts, close_text)


def build_pair(
    tokenizer, style: str, prompt: str, system: str | None = None,
    histories: dict[str, tuple[Turn, ...]] | None = None, keep_reasoning: bool = False,
) -> tuple[LanePrompt, LanePrompt]:
    """(standard, reasoning) prompts for the same user prompt and system text, each lane continuing
    its own history (`histories`: lane -> its earlier turns)."""
    histories = histories or {}
    return tuple(build_prompt(tokenizer, style, lane, prompt, system, histories.get(lane, ()), keep_reasoning)
                 for lane in LANES)
