"""A lane's earlier turns, as chat messages: the user prompts and THAT lane's own answers.

A follow-up continues each lane's own conversation: the standard lane sees its own earlier answers
and the reasoning lane its own, never the other lane's. What an earlier assistant turn carries:
- reasoning dropped (the default, as the Hermes 4, Qwen3 and R1 templates do): the answer alone;
- reasoning kept (the cell's switch): the earlier trace in a closed ``<think>`` block, then the
  answer. A trace cut by its token limit (no closer, no answer) is closed here, so every kept turn
  is well formed.
``empty_think`` is what a family's template puts in place of a dropped trace (Hermes 4's
``'<think> </think>'``): writing it ourselves makes every assistant turn contain a closer, which is
the guard for the Hermes pitfall (with thinking on, its template splits each earlier assistant
turn on ``</think>`` and fails on one without). Pure: no tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from playground.errors import InvalidInput

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# A follow-up's history is bounded by the model's context long before this; the cap keeps a
# malformed request from building a list of a million messages first.
MAX_HISTORY_TURNS = 200


@dataclass(frozen=True)
class Turn:
    """One earlier turn of one lane: what the user asked, and what this lane thought and answered."""

    prompt: str
    answer: str = ""
    reasoning: str = ""


def kept_block(reasoning: str) -> str:
    """An earlier trace as a closed think block (the trace may have been cut before its closer)."""
    return f"{THINK_OPEN}\n{reasoning.strip()}\n{THINK_CLOSE}\n\n"


def assistant_content(turn: Turn, keep_reasoning: bool, empty_think: str = "") -> str:
    """The assistant message of an earlier turn (see the module docstring)."""
    answer = turn.answer.strip()
    if keep_reasoning and turn.reasoning.strip():
        return kept_block(turn.reasoning) + answer
    return empty_think + answer


def check_history(history) -> tuple[Turn, ...]:
    """The history as a tuple of Turns; InvalidInput names what is malformed."""
    turns = tuple(history or ())
    if len(turns) > MAX_HISTORY_TURNS:
        raise InvalidInput(f"The conversation has {len(turns)} earlier turns, over the limit of {MAX_HISTORY_TURNS} "
                           "(MAX_HISTORY_TURNS): start a new cell.")
    for t in turns:
        if not isinstance(t, Turn) or not all(isinstance(x, str) for x in (t.prompt, t.answer, t.reasoning)):
            raise InvalidInput("Each earlier turn must be a Turn of text (prompt, answer, reasoning).")
    return turns


def history_messages(history: tuple[Turn, ...], keep_reasoning: bool, empty_think: str = "",
                     first_prefix: str = "", suffix: str = "") -> list[dict[str, str]]:
    """user/assistant messages of the earlier turns, oldest first. ``first_prefix`` leads the first
    user turn (R1's system text, which has no system message); ``suffix`` follows every user turn
    (Qwen3's soft switch, which each earlier request carried too)."""
    out: list[dict[str, str]] = []
    for i, t in enumerate(history):
        prompt = (first_prefix + t.prompt if i == 0 else t.prompt) + suffix
        out += [{"role": "user", "content": prompt},
                {"role": "assistant", "content": assistant_content(t, keep_reasoning, empty_think)}]
    return out
