"""The consumer side of a local generate: each lane's UTF-8-safe decoding, its think parsing, and
the LaneResult it accumulates (the generate thread only picks and times tokens)."""

from __future__ import annotations

from collections.abc import Iterator

from playground.lanes import LaneResult, LaneUpdate, add_text, add_token
from playground.prompting.prompts import LanePrompt
from playground.prompting.reasoning import ThinkParser


class Decoder:
    """UTF-8-safe incremental decoding: re-decode a short window, emit only the new suffix, and hold
    back text ending in U+FFFD (a multi-byte character split across tokens). O(window) per token."""

    def __init__(self, tokenizer, skip_ids: set[int]):
        self.tok = tokenizer
        self.skip = skip_ids
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def push(self, token_id: int) -> str:
        if token_id in self.skip:
            return ""
        self.ids.append(token_id)
        prefix_text = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=False)
        new_text = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=False)
        if new_text.endswith("\ufffd") or len(new_text) <= len(prefix_text):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return new_text[len(prefix_text):]

    def flush(self) -> str:
        prefix_text = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=False)
        new_text = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=False)
        self.prefix = self.read = len(self.ids)
        return new_text[len(prefix_text):]


class LocalLane:
    """Consumer-side state of one lane: decoding, think parsing and the accumulating result."""

    def __init__(self, result: LaneResult, prompt: LanePrompt, tokenizer, skip_ids: set[int]):
        self.result = result
        self.key = result.lane  # the row's key in this generate; a scheduler may rename result.lane
        self.decoder = Decoder(tokenizer, skip_ids)
        self.parser = ThinkParser(prompt.starts_in_reasoning)

    def on_token(self, token_id: int, t: float, forced: bool) -> LaneUpdate:
        r = self.result
        was_reasoning = self.parser.in_reasoning
        text = self.decoder.push(token_id)
        delta = self.parser.feed(text) if text else None
        kind = "reasoning" if (was_reasoning or self.parser.in_reasoning
                               or (delta and delta.reasoning and not delta.answer)) else "answer"
        add_token(r, token_id, t, kind, forced)
        return self._apply(text, delta, t, token_ids=(token_id,), forced=forced, token_kind=kind)

    def _apply(self, text, delta, t, **kw) -> LaneUpdate:
        rd = delta.reasoning if delta else ""
        ad = delta.answer if delta else ""
        add_text(self.result, text, rd, ad, t)
        return LaneUpdate(self.key, "token", t, text=text, reasoning=rd, answer=ad, **kw)

    def finish(self, status: str, reason: str, t: float, error: str | None = None) -> Iterator[LaneUpdate]:
        r = self.result
        if r.status != "running":
            return
        tail = self.decoder.flush()
        delta = self.parser.feed(tail) if tail else None
        last = self.parser.finish()
        if tail or last.reasoning or last.answer:
            merged = type(last)((delta.reasoning if delta else "") + last.reasoning,
                                (delta.answer if delta else "") + last.answer)
            yield self._apply(tail, merged, t)
        r.end(status, reason, t, error)
        yield LaneUpdate(self.key, "error" if status == "error" else "done", t, finish_reason=reason, error=error)
