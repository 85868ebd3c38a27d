"""Checks at the store's edge: every named limit has one home here and one check, and the
InvalidInput message names the limit and the fix."""

from __future__ import annotations

from collections.abc import Sequence

from playground.errors import InvalidInput, check_encodable
from playground.evaluation.graders import GRADER_KINDS, check_expected
from playground.lanes import FINISH_STATUSES, LANES, RUN_STATUSES

from .codec import encode_forced, encode_kinds, pack_ids, pack_times
from .models import CELL_KINDS

DEFAULT_TITLE = "Untitled"
MAX_TITLE_CHARS = 200
MAX_LIST_LIMIT = 500
# secrets.token_urlsafe(32) gives 43 characters; anything much shorter is guessable.
MIN_SHARE_TOKEN_CHARS = 32
MAX_SHARE_TOKEN_CHARS = 200
EDITABLE_CELL_FIELDS = ("kind", "prompt", "system_prompt", "note", "settings", "expected", "grader")
MAX_OWNER_CHARS = 200  # the owner column's width: a cookie id is 43 characters, a login name far less
MAX_FINISH_REASON_CHARS = 64  # the finish_reason column's width; a remote server's longer reason is cut
# PostgreSQL's text cannot hold NUL (SQLite's can): typed text with one is refused, and model output
# gets U+FFFD in its place on both engines, so a run reads back the same from either.
NUL = "\x00"
NUL_REPLACEMENT = "\ufffd"


def check_text(text: str, what: str) -> str:
    """Text a visitor typed, refused when no database could store it."""
    check_encodable(text, what)
    if NUL in text:
        raise InvalidInput(f"The {what} contains a NUL character (\\x00), which the database cannot store: "
                           "remove it.")
    return text


def storable(text: str | None) -> str | None:
    """Text the model or a server produced: kept, with NUL characters replaced (see NUL_REPLACEMENT)."""
    return text.replace(NUL, NUL_REPLACEMENT) if isinstance(text, str) and NUL in text else text


def check_owner(owner) -> str:
    # An empty owner is a caller bug (no browser secret, no user), never a real identity.
    if not isinstance(owner, str) or not owner:
        raise InvalidInput("The owner identity is missing: sign in, or allow the browser to keep its key.")
    if len(owner) > MAX_OWNER_CHARS:
        raise InvalidInput(f"The owner identity has {len(owner)} characters, over the limit of {MAX_OWNER_CHARS} "
                           "(MAX_OWNER_CHARS): use a shorter user name.")
    return owner


def check_title(title) -> str:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("A session title cannot be empty: type a name.")
    title = check_text(title.strip(), "title")
    if len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"The title has {len(title)} characters, over the limit of {MAX_TITLE_CHARS} "
                           "(MAX_TITLE_CHARS): shorten it.")
    return title


def copy_title(title: str) -> str:
    return check_title(f"{title} (copy)"[:MAX_TITLE_CHARS])


def check_page(limit, offset) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit={limit!r} is out of range: use 1–{MAX_LIST_LIMIT} (MAX_LIST_LIMIT).")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidInput(f"offset={offset!r} is out of range: use a whole number ≥ 0.")


def escape_like(query: str) -> str:
    # % and _ are LIKE wildcards: escape them (and the escape character) so they match literally.
    return query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_share_token(token) -> str:
    if not isinstance(token, str) or not MIN_SHARE_TOKEN_CHARS <= len(token) <= MAX_SHARE_TOKEN_CHARS:
        raise InvalidInput(f"A share token needs {MIN_SHARE_TOKEN_CHARS}–{MAX_SHARE_TOKEN_CHARS} characters "
                           "(MIN_SHARE_TOKEN_CHARS): make it with secrets.token_urlsafe(32).")
    return token


def check_cell_fields(values: dict) -> dict:
    """Check the editable cell fields present in `values`; raise InvalidInput naming the bad one."""
    unknown = set(values) - set(EDITABLE_CELL_FIELDS)
    if unknown:
        raise InvalidInput(f"Cannot set {', '.join(sorted(unknown))}: a cell's editable fields are "
                           f"{', '.join(EDITABLE_CELL_FIELDS)}.")
    if "kind" in values and values["kind"] not in CELL_KINDS:
        raise InvalidInput(f"kind={values['kind']!r}: a cell is one of {', '.join(CELL_KINDS)}.")
    for name in ("prompt", "note", "system_prompt"):
        if name in values and isinstance(values[name], str):
            check_text(values[name], name.replace("_", " "))
    for name in ("prompt", "note"):
        if name in values and not isinstance(values[name], str):
            raise InvalidInput(f"The cell's {name} must be text.")
    if "system_prompt" in values and not isinstance(values["system_prompt"], str | None):
        raise InvalidInput("The system prompt must be text, or None for the model's default.")
    if "settings" in values and not isinstance(values["settings"], dict):
        raise InvalidInput('Cell settings must be a dict: {"standard": {...}, "reasoning": {...}}.')
    if values.get("expected") is not None:
        check_text(check_expected(values["expected"]), "expected answer")
    # The store keeps a grader's canonical form; whether it suits the expected answer (a valid
    # pattern, a number) is checked where both are typed (graders.check_grader), and a stored
    # mismatch grades as "error" with the reason rather than failing to load.
    grader = values.get("grader")
    if grader is not None and (not isinstance(grader, dict) or grader.get("kind") not in GRADER_KINDS):
        raise InvalidInput(f"grader={grader!r}: use None or {{\"kind\": one of {', '.join(GRADER_KINDS)}}}.")
    return values


def finish_note(finish_reason: str | None, error: str | None) -> dict:
    """A finish's reason (cut to MAX_FINISH_REASON_CHARS) and error text, as the columns hold them."""
    if not all(value is None or isinstance(value, str) for value in (finish_reason, error)):
        raise InvalidInput("finish_reason and error must be text or None.")
    reason = storable(finish_reason)
    return dict(finish_reason=reason[:MAX_FINISH_REASON_CHARS] if reason else reason, error=storable(error))


def check_lane(lane) -> str:
    if lane not in LANES:
        raise InvalidInput(f"lane={lane!r}: a run's lane is one of {', '.join(LANES)}.")
    return lane


def check_status(status, allowed: Sequence[str] = RUN_STATUSES) -> str:
    if status not in allowed:
        raise InvalidInput(f"status={status!r}: use one of {', '.join(allowed)}.")
    return status


def check_finish(status, prompt_tokens, metrics, record) -> None:
    """A finish's own fields (its texts and tokens are run_progress's); record None keeps the stored one."""
    check_status(status, FINISH_STATUSES)
    if not isinstance(prompt_tokens, int) or isinstance(prompt_tokens, bool) or prompt_tokens < 0:
        raise InvalidInput(f"prompt_tokens={prompt_tokens!r}: use the prompt's length in tokens (≥ 0).")
    if metrics is not None and not isinstance(metrics, dict):
        raise InvalidInput("metrics must be a dict (LaneMetrics.to_dict()) or None.")
    if record is not None:
        check_record(record)


def check_record(record) -> dict:
    if not isinstance(record, dict):
        raise InvalidInput("The reproducibility record must be a dict (the backend's reproducibility_record).")
    return record


def check_execution(lanes, record, parent=None, prompt=None) -> None:
    """A new execution's lanes (some of LANES, each with its settings dict), its record, and the
    turn it continues (an execution number) with the text asked at this turn."""
    if parent is not None and (not isinstance(parent, int) or isinstance(parent, bool) or parent < 1):
        raise InvalidInput(f"parent={parent!r}: use the number (≥ 1) of the execution this turn continues.")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidInput("A turn's prompt must be text.")
        check_encodable(prompt, "prompt")
    if not isinstance(lanes, dict) or not lanes or set(lanes) - set(LANES):
        raise InvalidInput(f"lanes must map some of {', '.join(LANES)} to their settings.")
    if not all(isinstance(v, dict) for v in lanes.values()):
        raise InvalidInput("Each lane's settings must be a dict (LaneSettings.to_dict()).")
    check_record(record)


def run_progress(raw_text, reasoning_text, answer_text, token_ids, token_times, token_kinds, forced) -> dict:
    """The run columns a checkpoint and a finish both write, with the token counts derived from them."""
    kinds, flags = encode_kinds(token_kinds), encode_forced(forced)
    n = len(token_ids)
    if not len(token_times) == len(kinds) == len(flags) == n:
        raise InvalidInput(f"Token arrays differ in length: {n} ids, {len(token_times)} times, {len(kinds)} kinds, "
                           f"{len(flags)} forced flags; each token needs one of each.")
    if not all(isinstance(t, str) for t in (raw_text, reasoning_text, answer_text)):
        raise InvalidInput("A run's texts must be strings.")
    return dict(raw_text=storable(raw_text), reasoning_text=storable(reasoning_text),
                answer_text=storable(answer_text),
                token_ids=pack_ids(token_ids), token_times=pack_times(token_times), token_kinds=kinds, forced=flags,
                generated_tokens=n, reasoning_tokens=kinds.count("r"), answer_tokens=kinds.count("a"))
