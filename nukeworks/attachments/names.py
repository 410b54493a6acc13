"""What an uploaded file is called and what it is, decided by the server, never by the client.

The name a browser sends is only a hint: any folder part is dropped (a name like
`../../etc/passwd` or `C:\\x\\y.pdf` keeps its last part), control and reserved characters are
replaced, and the length is bounded. The type is sniffed from the first bytes (the `filetype`
library's magic numbers, plus the markup types it does not know), never taken from the
request. A download is served as its own type only when that type is inert; anything a
browser could run (HTML, SVG, XML, scripts…) goes out as application/octet-stream.
"""

from __future__ import annotations

import re
import unicodedata

import filetype

MAX_NAME = 200
DEFAULT_NAME = "attachment"
# Bytes read to decide the type.
SNIFF_BYTES = 8192
OCTET_STREAM = "application/octet-stream"

# Types served as themselves on download; every other type is sent as OCTET_STREAM.
INERT_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-7z-compressed",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.ms-excel",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/tiff",
        "image/bmp",
        "text/plain",
        "text/csv",
    }
)

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
_MARKUP = (
    (re.compile(rb"<svg[\s>]", re.I), "image/svg+xml"),
    (
        re.compile(rb"<!doctype\s+html|<html[\s>]|<script[\s>]|<body[\s>]|<iframe", re.I),
        "text/html",
    ),
    (re.compile(rb"^\s*<\?xml", re.I), "application/xml"),
)


def clean_name(raw: object) -> str:
    """Return a safe display and download name for the client-sent file name `raw`."""
    text = unicodedata.normalize("NFC", str(raw or ""))
    # Only the last part of any path, whichever separator the client's system uses.
    text = re.split(r"[\\/]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = _UNSAFE.sub("_", text).strip().strip(".").strip()
    if len(text) > MAX_NAME:
        stem, dot, suffix = text.rpartition(".")
        if dot and 0 < len(suffix) <= 16:
            text = stem[: MAX_NAME - len(suffix) - 1] + "." + suffix
        else:
            text = text[:MAX_NAME]
    return text or DEFAULT_NAME


def sniff_type(head: bytes) -> str:
    """Return the content type the first bytes `head` show (OCTET_STREAM when unknown)."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return kind.mime
    for pattern, mime in _MARKUP:
        if pattern.search(head[:SNIFF_BYTES]):
            return mime
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the sample is still text.
            if exc.start < len(head) - 4:
                return OCTET_STREAM
        return "text/plain"
    return OCTET_STREAM


def served_type(content_type: str) -> str:
    """Return the Content-Type a download of `content_type` content is sent with."""
    return content_type if content_type in INERT_TYPES else OCTET_STREAM
