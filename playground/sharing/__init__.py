"""Sharing sessions, in three rooms:

- schema.py: share tokens, the versioned JSON export and its import (its limits, its checks);
- markdown.py: the Markdown export, and the one renderer of untrusted Markdown into HTML;
- page.py: the read-only HTML page (served at /s/<token>, or self-contained as a download).

Here: the one table of export formats, and render_export, which picks a room by format. The web
routes, the UI and the CLI import from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from playground.errors import InvalidInput
from playground.sharing.markdown import export_markdown, render_markdown
from playground.sharing.page import (
    PLOTLY_JS,
    STATIC_DIR,
    not_found_page,
    report_html,
    share_csp,
    share_page,
    standalone_html,
)
from playground.sharing.schema import (
    MAX_IMPORT_BYTES,
    ImportTooLarge,
    export_document,
    export_json,
    is_share_token,
    new_share_token,
    parse_import,
)
from playground.store import SessionFull


class ExportFormat(NamedTuple):
    media_type: str
    extension: str
    render: Callable[[SessionFull], str]


EXPORT_FORMATS = {"json": ExportFormat("application/json", "json", export_json),
                  "md": ExportFormat("text/markdown; charset=utf-8", "md", export_markdown),
                  "html": ExportFormat("text/html; charset=utf-8", "html", standalone_html)}

__all__ = [
    "EXPORT_FORMATS", "MAX_IMPORT_BYTES", "PLOTLY_JS", "STATIC_DIR", "ExportFormat", "ImportTooLarge",
    "export_document", "export_filename", "export_json", "export_markdown", "is_share_token", "new_share_token",
    "not_found_page", "parse_import", "render_export", "render_markdown", "report_html", "share_csp", "share_page",
    "standalone_html",
]


def export_filename(title: str, fmt: str) -> str:
    """An ASCII file name from the title, safe in a Content-Disposition header and on any disk."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:60].strip("-").lower() or "session"
    return f"{slug}.{EXPORT_FORMATS[fmt].extension}"


def render_export(session: SessionFull, fmt: str) -> tuple[str, str, str]:
    """(body, media type, file name) of the session in `fmt` (json, md or html)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format={fmt!r}: export as one of {', '.join(EXPORT_FORMATS)}.")
    chosen = EXPORT_FORMATS[fmt]
    return chosen.render(session), chosen.media_type, export_filename(session.title, fmt)
