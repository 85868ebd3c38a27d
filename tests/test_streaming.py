"""What a streamed update sends. gradio sends each update of a streaming handler as a diff against
the one before; a lane's text that only grows at its end then costs an append of the new characters,
so late updates in a long run cost what early ones do. A value with anything after the text (a
closing tag) would be re-sent whole on every update."""

from __future__ import annotations

import html

from gradio.utils import diff
from hypothesis import given
from hypothesis import strategies as st

from playground.ui.views import reasoning_html

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@given(texts, st.lists(st.integers(1, 60), min_size=1, max_size=20))
def test_a_growing_reasoning_trace_is_sent_as_appends(text, steps):
    shown, sent = "", reasoning_html("")
    pos = 0
    for step in steps * (len(text) // max(1, sum(steps)) + 1):
        if pos >= len(text):
            break
        new_pos = min(len(text), pos + step)
        value = reasoning_html(text[:new_pos])
        if shown:
            assert diff(sent, value) in ([], [["append", [], html.escape(text[pos:new_pos])]])
        shown, sent, pos = text[:new_pos], value, new_pos
    assert html.unescape(sent) == text or not text
