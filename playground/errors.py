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


def check_encodable(text: str, what: str) -> str:
    """Refuse text that cannot be stored or tokenized: a lone surrogate (half of a UTF-16 pair) is a str
    in Python but not valid Unicode, and would fail deep inside the tokenizer or SQLite."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"The {what} contains an invalid character (a lone surrogate): remove it.") from None
    return text
