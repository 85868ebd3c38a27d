"""Named API endpoints for gradio_client: the page's main actions without the page.

Each takes and returns plain JSON values. A client that sends the page's owner cookie acts as
that visitor; one without it gets an identity of its own connection (see common.owner_of).
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from playground.errors import InvalidInput

from .cells import lane_settings
from .common import GPU_POOL, guarded, owner_of, run_key
from .views import LaneShown, answer_md, reasoning_html, status_line

SCRATCH = "scratch"


def _lanes_json(views) -> dict:
    return {lane: {"status": v.status, "reasoning": v.reasoning, "answer": v.answer, "text": v.text,
                   "metrics": v.metrics} for lane, v in views.items()}


def _session_json(session) -> dict:
    cells = []
    for c in session.cells:
        ex = c.latest
        cells.append({"id": c.id, "kind": c.kind, "position": c.position, "prompt": c.prompt,
                      "system_prompt": c.system_prompt, "note": c.note, "settings": c.settings,
                      "executions": len(c.executions), "turns": _turns_json(c),
                      "latest": {lane: {"status": r.status, "reasoning": r.reasoning_text, "answer": r.answer_text,
                                        "metrics": r.metrics, "tokens": r.generated_tokens}
                                 for lane, r in ex.runs.items()} if ex else None})
    return {"id": session.id, "title": session.title, "cells": cells}


def _turns_json(cell) -> list[dict]:
    """The latest execution's conversation, turn by turn: what was asked, each lane's answer and tokens."""
    return [{"turn": ex.turn, "execution": ex.number, "prompt": ex.prompt(cell.prompt),
             "lanes": {lane: {"status": r.status, "reasoning": r.reasoning_text, "answer": r.answer_text,
                              "prompt_tokens": r.prompt_tokens, "tokens": r.generated_tokens, "metrics": r.metrics}
                       for lane, r in ex.runs.items()}} for ex in cell.turns]


def _register_follow_up(nb, secret: bytes) -> None:
    def follow_up(cell_id: str, prompt: str, standard: dict, reasoning: dict, request: gr.Request) -> Iterator[dict]:
        """Ask the next turn of a cell that ran: both lanes continue their own conversations (each its
        own answers; earlier reasoning dropped unless the reasoning settings say "keep_reasoning": true);
        streams what /run_cell streams and persists everything as it goes."""
        reasoning = dict(reasoning or {})
        keep = reasoning.pop("keep_reasoning", False)
        if not isinstance(keep, bool):
            raise InvalidInput("keep_reasoning must be true or false.")
        lanes = {"standard": lane_settings("standard", standard or {}),
                 "reasoning": lane_settings("reasoning", reasoning)}
        for views, _run in nb.follow_up(owner_of(request, secret), cell_id, run_key(request, cell_id), prompt, lanes,
                                        keep_reasoning=keep):
            yield _lanes_json(views)

    gr.api(guarded(follow_up), api_name="follow_up", concurrency_id=GPU_POOL)


def register_api(pg, nb, store, secret: bytes) -> None:
    _register_follow_up(nb, secret)

    def run(prompt: str, system: str, s_max_new_tokens: float, s_temperature: float, s_top_p: float,
            s_top_k: float, s_seed: float, r_max_new_tokens: float, r_temperature: float, r_top_p: float,
            r_top_k: float, r_seed: float, r_thinking_budget: float | None,
            request: gr.Request) -> Iterator[tuple[str, str, str, str, str]]:
        """A one-off paired run that is not saved: (standard status, standard answer, reasoning status,
        reasoning trace as HTML, reasoning answer), streamed."""
        lanes = {"standard": lane_settings("standard", dict(
            max_new_tokens=s_max_new_tokens, temperature=s_temperature, top_p=s_top_p, top_k=s_top_k,
            seed=s_seed)), "reasoning": lane_settings("reasoning", dict(
                max_new_tokens=r_max_new_tokens, temperature=r_temperature, top_p=r_top_p, top_k=r_top_k,
                seed=r_seed, thinking_budget=r_thinking_budget))}
        key = run_key(request, SCRATCH)
        run_ = pg.start_run(key, prompt, system, lanes, owner=owner_of(request, secret))
        queued = LaneShown("queued", "", "", None)
        yield (status_line("standard", queued), "", status_line("reasoning", queued), "", "")
        for views in pg.stream_views(key, run_):
            s, r = views["standard"], views["reasoning"]
            yield (status_line("standard", LaneShown(s.status, s.reasoning, s.answer, s.metrics)), answer_md(s.answer),
                   status_line("reasoning", LaneShown(r.status, r.reasoning, r.answer, r.metrics)),
                   reasoning_html(r.reasoning), answer_md(r.answer))

    gr.api(guarded(run), api_name="run", concurrency_id=GPU_POOL)

    def stop(request: gr.Request) -> str:
        """Stop every run of this client (scratch runs and cell runs)."""
        prefix = run_key(request, "")
        return "stopping" if pg.stop_prefix(prefix) else "nothing to stop"

    gr.api(guarded(stop), api_name="stop", concurrency_limit=None)

    def sessions(query: str, request: gr.Request) -> list[dict]:
        """This visitor's sessions, most recent first, filtered by title or prompt text."""
        return [{"id": s.id, "title": s.title, "updated_at": s.updated_at.isoformat()}
                for s in store.list_sessions(owner_of(request, secret), query or "")]

    gr.api(guarded(sessions), api_name="sessions", concurrency_limit=None)

    def new_session(title: str, request: gr.Request) -> dict:
        s = store.create_session(owner_of(request, secret), title or "Untitled")
        return {"id": s.id, "title": s.title}

    gr.api(guarded(new_session), api_name="new_session", concurrency_limit=None)

    def get_session(session_id: str, request: gr.Request) -> dict:
        return _session_json(store.get_session(owner_of(request, secret), session_id))

    gr.api(guarded(get_session), api_name="get_session", concurrency_limit=None)

    def add_cell(session_id: str, prompt: str, system: str, request: gr.Request) -> dict:
        c = store.add_cell(owner_of(request, secret), session_id, prompt=prompt or "", system_prompt=system or None)
        return {"id": c.id, "position": c.position}

    gr.api(guarded(add_cell), api_name="add_cell", concurrency_limit=None)

    def run_cell(cell_id: str, prompt: str, system: str, standard: dict, reasoning: dict,
                 request: gr.Request) -> Iterator[dict]:
        """Run a saved cell (saving its prompt and settings first); streams {lane: {status, reasoning,
        answer, text, metrics}} and persists everything as it goes."""
        owner = owner_of(request, secret)
        lanes = {"standard": lane_settings("standard", standard or {}),
                 "reasoning": lane_settings("reasoning", reasoning or {})}
        for views, _run in nb.run_cell(owner, cell_id, run_key(request, cell_id), prompt, system, lanes):
            yield _lanes_json(views)

    gr.api(guarded(run_cell), api_name="run_cell", concurrency_id=GPU_POOL)

    def stop_cell(cell_id: str, request: gr.Request) -> str:
        return "stopping" if pg.stop(run_key(request, cell_id)) else "nothing to stop"

    gr.api(guarded(stop_cell), api_name="stop_cell", concurrency_limit=None)
