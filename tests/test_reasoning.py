from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from playground.prompting.reasoning import (
    MAX_TAG_LEN,
    REASONING_TAGS,
    ParseDelta,
    ParsedText,
    ThinkParser,
    parse_text,
)


def stream(chunks: list[str], starts_in_reasoning: bool = False) -> tuple[ThinkParser, str, str]:
    parser = ThinkParser(starts_in_reasoning)
    deltas = [parser.feed(c) for c in chunks] + [parser.finish()]
    return parser, "".join(d.reasoning for d in deltas), "".join(d.answer for d in deltas)


def result(parser: ThinkParser) -> ParsedText:
    return ParsedText(parser.reasoning, parser.answer, parser.state, parser.reasoning_closed)


# --- whole-text behaviour -------------------------------------------------------------------


def test_no_tags_is_all_answer():
    assert parse_text("Just an answer.") == ParsedText("", "Just an answer.", "answer", False)


def test_empty_text():
    assert parse_text("") == ParsedText("", "", "before", False)


def test_basic_block():
    assert parse_text("<think>\nplan\n</think>\n\nAnswer") == ParsedText("plan\n", "Answer", "answer", True)


@pytest.mark.parametrize(("opener", "closer"), REASONING_TAGS)
def test_each_variant(opener, closer):
    assert parse_text(f"{opener}r{closer}a") == ParsedText("r", "a", "answer", True)


def test_only_matching_closer_closes():
    got = parse_text("<thinking>a</think>b</thinking>c")
    assert got == ParsedText("a</think>b", "c", "answer", True)


def test_unclosed_block_at_end():
    assert parse_text("<think>still going") == ParsedText("still going", "", "reasoning", False)


def test_leading_whitespace_before_opener_dropped():
    assert parse_text("\n \n<think>x</think>y") == ParsedText("x", "y", "answer", True)


def test_leading_whitespace_kept_when_no_opener_follows():
    assert parse_text("  hi") == ParsedText("", "  hi", "answer", False)
    assert parse_text(" \n") == ParsedText("", " \n", "answer", False)


def test_text_before_opener_is_answer_and_tag_still_opens():
    # Whitespace after the closer is only stripped while the answer is still empty.
    assert parse_text("Sure. <think>r</think>  done") == ParsedText("r", "Sure.   done", "answer", True)


def test_only_first_block_is_reasoning():
    got = parse_text("<think>r</think>Use <think>tags</think> like this")
    assert got == ParsedText("r", "Use <think>tags</think> like this", "answer", True)


def test_starts_in_reasoning_closed_by_any_variant():
    assert parse_text("r1\n</think>\n\nA", starts_in_reasoning=True) == ParsedText(
        "r1\n", "A", "answer", True
    )
    assert parse_text("r</thinking>a", starts_in_reasoning=True) == ParsedText("r", "a", "answer", True)


def test_starts_in_reasoning_unclosed():
    assert parse_text("r", starts_in_reasoning=True) == ParsedText("r", "", "reasoning", False)
    assert parse_text("", starts_in_reasoning=True) == ParsedText("", "", "reasoning", False)


def test_starts_in_reasoning_redundant_opener_dropped():
    assert parse_text("\n<think>\nr</think>a", starts_in_reasoning=True) == ParsedText(
        "r", "a", "answer", True
    )
    # Once reasoning has started, an opener is just text.
    assert parse_text("r<think>s</think>a", starts_in_reasoning=True) == ParsedText(
        "r<think>s", "a", "answer", True
    )


def test_bare_closer_in_default_mode_is_dropped():
    assert parse_text("thoughts</think>\n\nAnswer") == ParsedText("", "thoughts\n\nAnswer", "answer", True)
    assert parse_text("</think>\nAnswer") == ParsedText("", "Answer", "answer", True)
    # The implied block is closed, so later tags are answer text.
    assert parse_text("x</think><think>y") == ParsedText("", "x<think>y", "answer", True)


def test_reasoning_leading_whitespace_stripped_trailing_kept():
    assert parse_text("<think>\n\n  a b \n</think>c") == ParsedText("a b \n", "c", "answer", True)
    assert parse_text("<think>  \n</think>c") == ParsedText("", "c", "answer", True)


def test_near_tags_are_text():
    text = "a < b > c <thin k> <Think> </thinkx <seed:thin"
    assert parse_text(text) == ParsedText("", text, "answer", False)


# --- streaming ------------------------------------------------------------------------------

SPLIT_EXAMPLE = "\n<think>\nr <x> </thin</think>\n\nans <think>q"


@pytest.mark.parametrize("split", range(len(SPLIT_EXAMPLE) + 1))
def test_every_split_point(split):
    parser, reasoning, answer = stream([SPLIT_EXAMPLE[:split], SPLIT_EXAMPLE[split:]])
    expected = ParsedText("r <x> </thin", "ans <think>q", "answer", True)
    assert parse_text(SPLIT_EXAMPLE) == expected
    assert result(parser) == expected
    assert (reasoning, answer) == (expected.reasoning, expected.answer)


@pytest.mark.parametrize("split", range(len("<seed:think>a</seed:think>b") + 1))
def test_every_split_point_longest_tag(split):
    text = "<seed:think>a</seed:think>b"
    parser, _, _ = stream([text[:split], text[split:]])
    assert result(parser) == ParsedText("a", "b", "answer", True)


def test_char_by_char_matches_whole():
    text = "pre <reasoning>\nstep 1 <b>\nstep 2</reasoning>\n final <reasoning>"
    parser, reasoning, answer = stream(list(text))
    assert result(parser) == parse_text(text)
    assert (reasoning, answer) == (parser.reasoning, parser.answer)


def test_feed_returns_only_new_text():
    parser = ThinkParser()
    assert parser.feed("<thi") == ParseDelta()
    assert parser.feed("nk>abc") == ParseDelta(reasoning="abc")
    assert parser.in_reasoning
    assert parser.feed("</th") == ParseDelta()
    assert parser.feed("ink> Hi") == ParseDelta(answer="Hi")
    assert parser.reasoning_closed and not parser.in_reasoning
    assert parser.finish() == ParseDelta()


def test_finish_flushes_held_partial_tag_as_current_state_text():
    parser = ThinkParser()
    assert parser.feed("a <thin") == ParseDelta(answer="a ")
    assert parser.finish() == ParseDelta(answer="<thin")
    parser = ThinkParser()
    parser.feed("<think>r </thi")
    assert parser.finish() == ParseDelta(reasoning="</thi")
    assert parser.state == "reasoning" and not parser.reasoning_closed


def test_streaming_latency_char_by_char():
    parser = ThinkParser()
    fed = ""
    for ch in "Hello world":
        parser.feed(ch)
        fed += ch
        assert parser.answer == fed
    parser = ThinkParser()
    assert parser.feed("x<").answer == "x"
    assert parser.feed("b").answer == "<b"


def test_hold_back_is_bounded():
    # Pathological input full of tag prefixes must not grow the held-back buffer.
    parser = ThinkParser()
    fed = "x"
    parser.feed("x")
    for _ in range(2000):
        for piece in ("<", "/thin", "<seed:thin"):
            parser.feed(piece)
            fed += piece
            assert len(fed) - len(parser.answer) < MAX_TAG_LEN


# --- properties -----------------------------------------------------------------------------

FRAGMENTS = [t for pair in REASONING_TAGS for t in pair] + [
    "<thin",
    "</think",
    "</thi",
    "<seed:",
    "<",
    ">",
    "/",
    "think",
    "<Think>",
    "a",
    "b c",
    " ",
    "\n",
    "x\n",
]
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join)


@st.composite
def chunked(draw):
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=500)
@given(chunked(), st.booleans())
def test_chunking_does_not_change_result(case, starts_in_reasoning):
    text, chunks = case
    expected = parse_text(text, starts_in_reasoning)
    parser, reasoning, answer = stream(chunks, starts_in_reasoning)
    assert result(parser) == expected
    assert reasoning == parser.reasoning == expected.reasoning
    assert answer == parser.answer == expected.answer


@settings(max_examples=200)
@given(texts, st.booleans())
def test_single_char_stream_matches_whole(text, starts_in_reasoning):
    parser, reasoning, answer = stream(list(text), starts_in_reasoning)
    assert result(parser) == parse_text(text, starts_in_reasoning)
    assert (reasoning, answer) == (parser.reasoning, parser.answer)


@given(texts)
def test_no_text_invented(text):
    # Output is the input minus tags and dropped whitespace, so it can never be longer.
    got = parse_text(text)
    assert len(got.reasoning) + len(got.answer) <= len(text)
    if not any(t in text for pair in REASONING_TAGS for t in pair):
        assert got == ParsedText("", text, "answer" if text else "before", False)
