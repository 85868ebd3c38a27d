"""Streaming think-tag parser: splits a model's text stream into reasoning and answer.

Contract:
- Feed text deltas to ``ThinkParser.feed``; each call returns a ``ParseDelta`` with only the reasoning
  and answer text newly decided by that delta. Call ``finish()`` once at end of stream to flush.
- Concatenating every reasoning delta (feed + finish) gives ``.reasoning``; likewise for ``.answer``.
  The result never depends on how the text was chunked: ``parse_text(text)`` is the reference.
- Reasoning is the text inside the FIRST block delimited by one of ``REASONING_TAGS`` (tags removed,
  leading whitespace stripped). Everything else is answer, except what is dropped: whitespace before
  the opening tag at the very start of the stream, whitespace between a closing tag and the first
  answer character, a redundant opener right after a prefilled one, and a stray closing tag.
- Between deltas the parser holds back only a suffix that could still become a tag (under
  ``MAX_TAG_LEN`` chars) and leading whitespace whose fate depends on what follows it.
- Tags are exact and case-sensitive. ``feed`` is O(len(delta)) amortized.
"""

from __future__ import annotations

from dataclasses import dataclass

REASONING_TAGS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("<seed:think>", "</seed:think>"),
)
OPEN_TAGS: tuple[str, ...] = tuple(o for o, _ in REASONING_TAGS)
CLOSE_TAGS: tuple[str, ...] = tuple(c for _, c in REASONING_TAGS)
MAX_TAG_LEN: int = max(len(t) for pair in REASONING_TAGS for t in pair)

BEFORE, REASONING, ANSWER = "before", "reasoning", "answer"


@dataclass(frozen=True)
class ParseDelta:
    reasoning: str = ""
    answer: str = ""


@dataclass(frozen=True)
class ParsedText:
    reasoning: str
    answer: str
    state: str
    closed: bool


class ThinkParser:
    def __init__(self, starts_in_reasoning: bool = False):
        self._state = REASONING if starts_in_reasoning else BEFORE
        self._implied = starts_in_reasoning
        # A prefilled block has no known variant, so any closer may end it.
        self._close_tags: tuple[str, ...] = CLOSE_TAGS if starts_in_reasoning else ()
        self._closed = False
        self._held = ""
        self._lead_ws: list[str] = []
        self._strip_answer = False
        self._reasoning: list[str] = []
        self._answer: list[str] = []
        self._new_reasoning: list[str] = []
        self._new_answer: list[str] = []

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    @property
    def answer(self) -> str:
        return "".join(self._answer)

    @property
    def state(self) -> str:
        return self._state

    @property
    def in_reasoning(self) -> bool:
        return self._state == REASONING

    @property
    def reasoning_closed(self) -> bool:
        return self._closed

    def feed(self, delta: str) -> ParseDelta:
        self._drain(self._held + delta, final=False)
        return self._take()

    def finish(self) -> ParseDelta:
        self._drain(self._held, final=True)
        if self._lead_ws:  # the stream was only whitespace: nothing to drop it in favour of
            text = "".join(self._lead_ws)
            self._lead_ws.clear()
            self._state = ANSWER
            self._answer.append(text)
            self._new_answer.append(text)
        return self._take()

    def _take(self) -> ParseDelta:
        out = ParseDelta("".join(self._new_reasoning), "".join(self._new_answer))
        self._new_reasoning.clear()
        self._new_answer.clear()
        return out

    def _tags(self) -> tuple[str, ...]:
        # Only the first block is reasoning: models quote tags in answers (e.g. explaining the
        # format), and re-entering reasoning there would silently hide answer text.
        if self._closed:
            return ()
        if self._state == REASONING:
            if self._implied and not self._reasoning:
                return self._close_tags + OPEN_TAGS
            return self._close_tags
        return OPEN_TAGS + CLOSE_TAGS

    def _drain(self, buf: str, final: bool) -> None:
        i, n = 0, len(buf)
        while i < n:
            j = buf.find("<", i) if self._tags() else -1
            if j == -1:
                self._emit(buf[i:])
                i = n
                break
            self._emit(buf[i:j])
            tags = self._tags()  # emitting text can end the window for a redundant opener
            tag = next((t for t in tags if buf.startswith(t, j)), None)
            if tag is not None:
                self._on_tag(tag)
                i = j + len(tag)
                continue
            rest = buf[j:] if n - j < MAX_TAG_LEN else ""
            if rest and not final and any(t.startswith(rest) for t in tags):
                i = j  # may still complete into a tag: hold it
                break
            self._emit("<")
            i = j + 1
        self._held = buf[i:]

    def _on_tag(self, tag: str) -> None:
        if self._state == REASONING:
            if tag in OPEN_TAGS:
                # Some templates prefill "<think>" and the model repeats it; showing it is noise.
                return
            self._close()
        elif tag in OPEN_TAGS:
            self._lead_ws.clear()
            self._state = REASONING
            self._close_tags = (CLOSE_TAGS[OPEN_TAGS.index(tag)],)
        else:
            # Bare closer with no opener: the text before it was really reasoning, but it has
            # already been streamed as answer and cannot be taken back, so we just drop the tag
            # and treat the (implied) block as closed. Use starts_in_reasoning=True to avoid this.
            self._lead_ws.clear()
            self._close()

    def _close(self) -> None:
        self._state = ANSWER
        self._closed = True
        self._strip_answer = not self._answer

    def _emit(self, text: str) -> None:
        if not text:
            return
        if self._state == REASONING:
            if not self._reasoning:
                text = text.lstrip()
                if not text:
                    return
            self._reasoning.append(text)
            self._new_reasoning.append(text)
            return
        if self._state == BEFORE:
            if text.isspace():  # dropped if an opener follows, answer text otherwise
                self._lead_ws.append(text)
                return
            text = "".join(self._lead_ws) + text
            self._lead_ws.clear()
            self._state = ANSWER
        elif self._strip_answer:
            text = text.lstrip()
            if not text:
                return
            self._strip_answer = False
        self._answer.append(text)
        self._new_answer.append(text)


def parse_text(text: str, starts_in_reasoning: bool = False) -> ParsedText:
    parser = ThinkParser(starts_in_reasoning)
    parser.feed(text)
    parser.finish()
    return ParsedText(parser.reasoning, parser.answer, parser.state, parser.reasoning_closed)
