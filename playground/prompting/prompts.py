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
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.lanes import LANES
from playground.prompting.catalog import REASONING_STYLES
from playground.prompting.reasoning import REASONING_TAGS

HERMES_THINKING_PROMPT = (
    "You are a deep thinking AI, you may use extremely long chains of thought to deeply consider the "
    "problem and deliberate with yourself via systematic reasoning processes to help come to a correct "
    "solution prior to answering. You should enclose your thoughts and internal monologue inside "
    "<think> </think> tags, and then provide your solution or response to the problem."
)
GENERIC_THINKING_PROMPT = (
    "Before answering, think step by step. Write your reasoning inside <think></think> tags, "
    "then give your final answer after the closing tag."
)
QWEN3_BUDGET_NUDGE = (
    "Considering the limited time by the user, I have to give the solution based on the thinking "
    "directly now.\n"
)


THINK_PREFILL = "<think>\n"
THINK_CLOSE = "</think>"


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


def _join(*parts: str | None) -> str:
    return "\n\n".join(p for p in parts if p)


def _messages(system: str | None, prompt: str) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": prompt}]


def _render(tokenizer, messages: list[dict[str, str]], **kwargs) -> tuple[str, str]:
    """Render with the generation prompt; return (text, the generation-prompt suffix).

    Think-tag detection looks at the suffix only: a user prompt that merely mentions "<think>"
    must not make the lane start in reasoning. The suffix is what add_generation_prompt=True adds;
    if a template renders the history differently with and without it, fall back to what follows
    the last occurrence of the user's text.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    bare = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False, **kwargs)
    if text.startswith(bare):
        return text, text[len(bare):]
    content = messages[-1]["content"]
    at = text.rfind(content) if content else -1
    return text, (text[at + len(content):] if at != -1 else text)


def _hermes_reasoning(tokenizer, prompt: str, system: str | None) -> tuple[str, str]:
    if not system:
        text, suffix = _render(tokenizer, _messages(None, prompt), thinking=True)
        if HERMES_THINKING_PROMPT in text:
            return text, suffix
        # The template does not know the thinking flag (jinja ignores unknown kwargs silently):
        # fall back to the explicit system prompt, the other documented switch.
    # With any system message Hermes templates ignore thinking=True, so the thinking prompt must be
    # the system text itself, first, with the user's instructions after it. We do not also pass
    # thinking=True: a template that did honour it alongside a system message would insert it twice.
    return _render(tokenizer, _messages(_join(HERMES_THINKING_PROMPT, system), prompt))


def build_prompt(tokenizer, style: str, lane: str, prompt: str, system: str | None = None) -> LanePrompt:
    if style not in REASONING_STYLES:
        raise ValueError(f"unknown reasoning style {style!r}; expected one of {', '.join(REASONING_STYLES)}")
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}; expected one of {', '.join(LANES)}")
    system = system if system and system.strip() else None
    reasoning = lane == "reasoning"
    # Prefill the assistant turn with an opener when the template does not: for R1 in both lanes
    # (distill templates that predate the prefill; the standard lane closes it right away) and for
    # generic models' reasoning lane, as they rarely open <think> unprompted.
    prefill_opener = style == "r1" or (style == "generic" and reasoning)
    nudge = ""

    if style == "hermes":
        if reasoning:
            text, suffix = _hermes_reasoning(tokenizer, prompt, system)
        else:
            # No flag at all: reasoning is off by default, and the user's system text goes as-is.
            text, suffix = _render(tokenizer, _messages(system, prompt))
    elif style == "qwen3":
        text, suffix = _render(tokenizer, _messages(system, prompt), enable_thinking=reasoning)
        nudge = QWEN3_BUDGET_NUDGE
    elif style == "r1":
        # DeepSeek recommends no system prompt: instructions belong in the user turn.
        text, suffix = _render(tokenizer, _messages(None, _join(system, prompt)))
    else:
        sys_text = _join(GENERIC_THINKING_PROMPT, system) if reasoning else system
        text, suffix = _render(tokenizer, _messages(sys_text, prompt))

    # R1's standard lane needs the opener too: the empty block "<think>\n</think>\n\n" is what
    # tells R1-style models to answer directly.
    if prefill_opener and not ends_inside_think(suffix):
        text += THINK_PREFILL
        suffix += THINK_PREFILL

    if reasoning:
        starts = ends_inside_think(suffix)
        close_text = nudge + _closer_for(suffix if starts else "") + "\n\n"
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
    tokenizer, style: str, prompt: str, system: str | None = None
) -> tuple[LanePrompt, LanePrompt]:
    """(standard, reasoning) prompts for the same user prompt and system text."""
    return (
        build_prompt(tokenizer, style, "standard", prompt, system),
        build_prompt(tokenizer, style, "reasoning", prompt, system),
    )
