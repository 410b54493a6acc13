"""The bundle commands' progress bar in rows (dbselect.management.progress's one bar)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.management.base import OutputWrapper

from bundles.package import Progress
from dbselect.management.progress import ProgressBar


@contextlib.contextmanager
def rows_bar(what: str, stream: OutputWrapper, enabled: bool) -> Iterator[Progress | None]:
    """Yield a progress callback showing rows on `stream` (None when disabled)."""
    with ProgressBar(stream, what, enabled=enabled, unit=" rows", mininterval=0.2) as bar:
        yield bar.callback
