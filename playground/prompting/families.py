"""The per-family prompt rules, one table for both backends: what each lane sends to turn reasoning on or off.

The local backend renders these messages with the model's own chat template (prompts.build_prompt);
the remote backend sends them to a server that renders them itself (backends.remote.requests). Both
call ``lane_messages``, so a rule changed here changes both.

The three ways a family turns reasoning on (``switch``, named as the remote backend's switches):
- "template_kwargs": a chat-template flag (Hermes ``thinking``, Qwen3 ``enable_thinking``);
- "system_prompt": a thinking system prompt in the reasoning lane, FIRST, before the user's system text;
- "always": nothing; the model always reasons, and takes no system prompt (R1): the user's system
  text leads the (first) user turn.

A follow-up's earlier turns (conversation.py) go between the system message and the new user turn,
each lane with its own answers; ``empty_think`` and ``keep_flag`` say how a family's template treats
earlier reasoning, so that dropping it (the default) or keeping it renders as the family expects.
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.lanes import LANES, REASONING
from playground.prompting.conversation import Turn, check_history, history_messages

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


@dataclass(frozen=True)
class Family:
    """One reasoning style's rules."""

    switch: str  # how the family's own template turns reasoning on (see the module docstring)
    thinking_prompt: str = GENERIC_THINKING_PROMPT  # the system text that asks for reasoning
    flag: str | None = None  # the chat-template kwarg that turns reasoning on
    flag_off_too: bool = False  # the standard lane passes flag=False (the template reasons by default)
    # The flag works by writing thinking_prompt as the system message (Hermes): so the template ignores
    # it whenever a system message is present (the prompt then goes first instead), and a render without
    # the prompt in it shows a template that does not know the flag.
    flag_writes_prompt: bool = False
    prefill_lanes: tuple[str, ...] = ()  # lanes whose assistant turn opens with THINK_PREFILL
    budget_nudge: str = ""  # said before the closer when a thinking budget runs out
    # What the reasoning lane's earlier assistant turns carry in place of a dropped trace. Hermes 4's
    # template, with thinking on, rewrites each as '<think> </think>' + the text after '</think>', and
    # fails on a turn without one (an answer cut by max tokens): writing the block ourselves is the guard.
    empty_think: str = ""
    keep_flag: str | None = None  # the chat-template kwarg that keeps earlier reasoning (Hermes keep_cots)


FAMILIES: dict[str, Family] = {
    "hermes": Family("template_kwargs", HERMES_THINKING_PROMPT, flag="thinking", flag_writes_prompt=True,
                     empty_think="<think> </think>", keep_flag="keep_cots"),
    "qwen3": Family("template_kwargs", flag="enable_thinking", flag_off_too=True, budget_nudge=QWEN3_BUDGET_NUDGE),
    # R1 distill templates that predate the prefill need the opener in both lanes; the standard lane
    # closes it right away (an empty block is what tells R1-style models to answer directly).
    "r1": Family("always", prefill_lanes=LANES),
    # Generic models rarely open <think> unprompted: the reasoning lane's turn is opened for them.
    "generic": Family("system_prompt", prefill_lanes=("reasoning",)),
}
# Every template flag any family reads: a server whose template is unknown gets them all (a template
# ignores keys it does not use).
THINKING_FLAGS: tuple[str, ...] = tuple(dict.fromkeys(f.flag for f in FAMILIES.values() if f.flag))


@dataclass(frozen=True)
class LaneMessages:
    """What one lane sends: chat messages, the chat-template kwargs, and the text that opens the
    assistant turn ("" for none; only the local backend can prefill)."""

    messages: list[dict[str, str]]
    template_kwargs: dict[str, bool]
    prefill: str


def join_parts(*parts: str | None) -> str:
    """Non-empty parts, a blank line apart: how a thinking prompt and the user's system text combine."""
    return "\n\n".join(p for p in parts if p)


def chat_messages(system: str | None, prompt: str, history: list[dict[str, str]] | None = None
                  ) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + (history or []) + \
        [{"role": "user", "content": prompt}]


def lane_messages(style: str, lane: str, prompt: str, system: str | None = None,
                  switch: str | None = None, history: tuple[Turn, ...] = (), keep_reasoning: bool = False,
                  suffix: str = "") -> LaneMessages:
    """The messages `lane` sends for a model of `style`, reasoning switched the family's own way, or by
    `switch` ("template_kwargs" | "system_prompt" | "always"; any other leaves the messages plain).
    `history` is THIS lane's earlier turns (conversation.Turn), oldest first; `keep_reasoning` keeps
    their traces. `suffix` follows every user turn (Qwen3's soft switch). A blank `system` means none.
    Raises KeyError for an unknown style (callers check it first)."""
    family = FAMILIES[style]
    switch = switch or family.switch
    on = lane == REASONING
    history = check_history(history)
    system = system if system and system.strip() else None
    kwargs: dict[str, bool] = {}
    if switch == "template_kwargs":
        if family.flag and (on or family.flag_off_too):
            kwargs = {family.flag: on}
        if on and family.flag_writes_prompt and system:
            # The flag would be ignored: the thinking prompt goes first, the user's text after it. The
            # flag is not also passed: a template that did honour it here would write the prompt twice.
            system, kwargs = join_parts(family.thinking_prompt, system), {}
    elif switch == "system_prompt" and on:
        system = join_parts(family.thinking_prompt, system)
    first_prefix = ""
    if switch == "always":  # no system message: its text leads the first user turn, as join_parts joins
        if history:
            first_prefix = system + "\n\n" if system else ""
        else:
            prompt = join_parts(system, prompt)
        system = None
    if history and keep_reasoning and family.keep_flag and switch == "template_kwargs":
        kwargs[family.keep_flag] = True
    earlier = history_messages(history, keep_reasoning, family.empty_think if on else "", first_prefix, suffix)
    prefill = THINK_PREFILL if lane in family.prefill_lanes else ""
    return LaneMessages(chat_messages(system, prompt + suffix, earlier), kwargs, prefill)
