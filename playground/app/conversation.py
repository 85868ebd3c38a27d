"""A follow-up turn: each lane's own history from the store, its prompts, and the context check (no gradio).

A cell's conversation is a chain of executions (store: turn, parent, turn_prompt). Turn N runs both
lanes in one batched pass, each lane given the user prompts of the turns before it and ITS OWN
answers (conversation.Turn), so the standard lane never sees what the reasoning lane thought. The
rendered prompt of each lane is counted before anything starts: a conversation that would outgrow
the model's context (its max positions, or PLAYGROUND_MAX_CONTEXT_TOKENS if lower) is refused.
"""

from __future__ import annotations

from playground.backends.base import Backend, RunLike
from playground.errors import InvalidInput
from playground.lanes import LaneSettings
from playground.prompting.conversation import Turn
from playground.prompting.prompts import build_prompt

NEVER_RAN = "This cell has not run yet: run it first, then ask a follow-up."


def lane_histories(cell, parent: int | None = None) -> tuple[int, dict[str, tuple[Turn, ...]]]:
    """(the execution the follow-up continues, lane -> that lane's earlier turns) for a stored cell
    (store CellFull). `parent` picks an earlier execution (a branch); default the latest."""
    if not cell.executions:
        raise InvalidInput(NEVER_RAN)
    chain = cell.conversation(parent)
    if not chain:
        raise InvalidInput(f"Execution {parent!r} is not one of this cell's runs: pick one it has.")
    histories: dict[str, list[Turn]] = {}
    for ex in chain:
        for lane, run in ex.runs.items():
            histories.setdefault(lane, []).append(Turn(ex.prompt(cell.prompt), run.answer_text, run.reasoning_text))
    return chain[-1].number, {lane: tuple(turns) for lane, turns in histories.items()}


def context_limit(backend: Backend, max_context_tokens: int) -> tuple[int, str]:
    """(the most tokens one lane's row may hold, where that limit comes from); 0 when nothing is known."""
    loaded = getattr(backend, "loaded", None)
    config = getattr(getattr(loaded, "model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", 0) or 0
    if max_context_tokens and (not positions or max_context_tokens < positions):
        return max_context_tokens, "PLAYGROUND_MAX_CONTEXT_TOKENS"
    return positions, "the model's max positions"


def check_context(prompt_tokens: dict[str, int], lanes: dict[str, LaneSettings], limit: int, source: str) -> None:
    """Refuse a lane whose prompt plus its max new tokens would outgrow the context."""
    for lane, n in prompt_tokens.items():
        need = n + lanes[lane].max_new_tokens
        if limit and need > limit:
            raise InvalidInput(f"The conversation is too long for the model: the {lane} lane's prompt has {n:,} "
                               f"tokens, plus up to {lanes[lane].max_new_tokens:,} new ones is {need:,}, over the "
                               f"context limit of {limit:,} tokens ({source}). Lower max new tokens, or start a "
                               "new cell.")


def start_conversation(backend: Backend, max_context_tokens: int, prompt: str, system: str | None,
                       lanes: dict[str, LaneSettings], histories: dict[str, tuple[Turn, ...]],
                       keep_reasoning: bool) -> RunLike:
    """A run of the next turn, every lane with its own history; refused (InvalidInput) before it
    starts when a lane would outgrow the context."""
    limit, source = context_limit(backend, max_context_tokens)
    if backend.kind == "remote":
        run = backend.start(prompt, system, lanes, history=histories, keep_reasoning=keep_reasoning)
        counted = {lane: len(p.input_ids) for lane, p in run.prompts.items() if p.input_ids}
        check_context(counted, lanes, limit, source)  # RemoteRun sends nothing before it is iterated
        return run
    if not hasattr(backend, "start_prompts"):
        raise InvalidInput(f"Follow-ups need the local model or a remote endpoint; the {backend.kind} backend "
                           "cannot continue a conversation.")
    prompts = {lane: build_prompt(backend.tokenizer, backend.style, lane, prompt, system, histories.get(lane, ()),
                                  keep_reasoning) for lane in lanes}
    check_context({lane: len(p.input_ids) for lane, p in prompts.items()}, lanes, limit, source)
    return backend.start_prompts(prompts, lanes)
