"""The consumer side of one remote lane: splitting reasoning from the answer, and reconciling counts.

A server may send the reasoning in its own field (`reasoning_content` / `reasoning`, a server-side
reasoning parser) or as <think> text in the content; both end up split the same way, and the raw
text keeps the tags either way. Servers send chunks, not token ids: each chunk is one timing entry
until the lane ends, when the entries are made to number the tokens (`reconcile_counts`).
"""

from __future__ import annotations

from collections.abc import Iterator

from playground.lanes import LaneResult, LaneUpdate, add_text, add_token
from playground.prompting.reasoning import ThinkParser

CHARS_PER_TOKEN_ESTIMATE = 4  # prompt size without any tokenizer: a rough English average


class RemoteLane:
    """Consumer-side state of one remote lane: the reasoning/answer split and the accumulating result."""

    def __init__(self, result: LaneResult, starts_in_reasoning: bool):
        self.result = result
        self.parser = ThinkParser(starts_in_reasoning)
        self.server_split = False  # the server sends reasoning in its own field: content is all answer
        self.in_server_reasoning = False
        self.chunk_lens: list[int] = []
        self.usage: dict | None = None

    def on_delta(self, reasoning: str, content: str, t: float) -> LaneUpdate:
        r = self.result
        rd = ad = raw = ""
        if reasoning:
            if not self.server_split:
                raw += "<think>\n"  # raw text keeps tags, so parse_text(raw) gives the same split as here
            self.server_split = self.in_server_reasoning = True
            rd = reasoning.lstrip() if not r.reasoning else reasoning
            raw += reasoning
        if content:
            if self.server_split:
                if self.in_server_reasoning:
                    raw += "\n</think>\n\n"
                    self.in_server_reasoning = False
                ad = content.lstrip() if not r.answer else content
            else:
                d = self.parser.feed(content)
                rd, ad = rd + d.reasoning, d.answer
            raw += content
        # A chunk that holds both (the closing tag inside it) counts as reasoning, as the engine counts it.
        if rd or ad:
            kind = "reasoning" if rd else "answer"
        else:  # text held back by the parser (a possible tag): the state it was received in
            kind = "reasoning" if self.in_server_reasoning or (not self.server_split and self.parser.in_reasoning) \
                else "answer"
        add_token(r, -1, t, kind)  # a chunk, not a token id: servers do not send ids
        self.chunk_lens.append(len(reasoning) + len(content))
        return self._apply(raw, rd, ad, t)

    def _apply(self, raw: str, rd: str, ad: str, t: float) -> LaneUpdate:
        add_text(self.result, raw, rd, ad, t)
        return LaneUpdate(self.result.lane, "token", t, text=raw, reasoning=rd, answer=ad)

    def finish(self, status: str, reason: str, t: float, error: str | None) -> Iterator[LaneUpdate]:
        r = self.result
        if r.status != "running":
            return
        last = self.parser.finish()
        if last.reasoning or last.answer:
            yield self._apply("", last.reasoning, last.answer, t)
        r.end(status, reason, t, error)
        yield LaneUpdate(r.lane, "error" if status == "error" else "done", t, finish_reason=reason, error=error)

    def reconcile_counts(self, tok) -> str:
        """Make the timing entries number the tokens: the usage report's count, else the tokenizer's, else
        one per chunk. Extra entries go to the chunks in proportion to their text and keep their chunk's
        receipt time. Returns where the count came from: "usage" | "tokenizer" | "estimate"."""
        r = self.result
        usage = self.usage or {}
        if isinstance(usage.get("prompt_tokens"), int) and usage["prompt_tokens"] > 0:
            r.prompt_tokens = usage["prompt_tokens"]
        n, source = usage.get("completion_tokens"), "usage"
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            n, source = None, "estimate"
            if tok is not None:
                try:
                    n = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in (r.reasoning, r.answer) if x)
                    source = "tokenizer"
                except Exception:
                    n = None
        if n is None or not self.chunk_lens:
            return source if n is not None else "estimate"
        counts = spread(self.chunk_lens, n)
        ids, times, kinds, forced = [], [], [], []
        for c, t, k in zip(counts, r.token_times, r.token_kinds):
            ids += [-1] * c
            times += [t] * c
            kinds += [k] * c
            forced += [False] * c
        r.token_ids, r.token_times, r.token_kinds, r.forced = ids, times, kinds, forced
        return source


def spread(lengths: list[int], n: int) -> list[int]:
    """n tokens over chunks: each chunk gets one when n allows, the rest by text length (largest remainder)."""
    m = len(lengths)
    base = [1] * m if n >= m else [0] * m
    extra = n - sum(base)
    weights = lengths if sum(lengths) > 0 else [1] * m
    total = sum(weights)
    quotas = [extra * w / total for w in weights]
    counts = [b + int(q) for b, q in zip(base, quotas)]
    left = n - sum(counts)
    for i in sorted(range(m), key=lambda i: quotas[i] - int(quotas[i]), reverse=True)[:left]:
        counts[i] += 1
    return counts
