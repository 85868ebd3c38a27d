"""The playground's exceptions: each message says what went wrong and how to fix it.

The UI turns them into readable messages (gr.Error / lane status) and the server into
HTTP errors; anything that is not a PlaygroundError is a bug and is reported as such.
"""


class PlaygroundError(Exception):
    """Base class: an expected failure with a message written for the user."""


class ModelNotFound(PlaygroundError):
    pass


class OfflineNoWeights(PlaygroundError):
    pass


class DoesNotFit(PlaygroundError):
    def __init__(self, message: str, plan=None):
        super().__init__(message)
        self.plan = plan


class QuantizationUnsupported(PlaygroundError):
    pass


class CorruptModelFolder(PlaygroundError):
    pass


class InvalidInput(PlaygroundError):
    """A request broke a named limit or carried a malformed value."""


class NoModelLoaded(PlaygroundError):
    pass


class NotFound(PlaygroundError):
    """No such session, cell, run or share for this owner (or the share link was revoked)."""


class StoreUnavailable(PlaygroundError):
    """The database cannot be created, opened, migrated or written (the message says where and why)."""


class StoreBusy(StoreUnavailable):
    """Another connection (often another process) kept the write lock past the busy timeout."""


class StoreFull(StoreUnavailable):
    """The disk (or the quota) that holds the database has no room for this write."""


def check_encodable(text: str, what: str) -> str:
    """Refuse text that cannot be stored or tokenized: a lone surrogate (half of a UTF-16 pair) is a str
    in Python but not valid Unicode, and would fail deep inside the tokenizer or SQLite."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"The {what} contains an invalid character (a lone surrogate): remove it.") from None
    return text


class CheckerFailed(PlaygroundError):
    """A grader's checker worker (Math-Verify, Reasoning Gym verifiers) crashed or could not start."""


class CheckTimeout(CheckerFailed):
    """A check ran past its deadline; its worker was killed (a runaway expression, e.g. 9^{9^{9^9}})."""
