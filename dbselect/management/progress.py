"""One tqdm progress bar for every management command, fed by `progress(done, total)` calls.

Commands of every app report long work through this one class (snapshots, restores, copies,
builds, bundles). The bar writes to the command's `stderr` through its public OutputWrapper
API, so `call_command(..., stderr=StringIO())` captures it like any other output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import OutputWrapper

Progress = Callable[[int, int], None]


class _Stream:
    """A file-like view of an OutputWrapper for tqdm: no line ending added to its writes."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


class ProgressBar:
    """`with ProgressBar(self.stderr, "copying", enabled=…) as bar:` then `bar.update(done,
    total)` (or pass `bar.callback`, None when disabled). Extra keywords go to tqdm."""

    def __init__(
        self, stream: OutputWrapper, desc: str, *, enabled: bool = True, **tqdm_options: Any
    ) -> None:
        self.stream = _Stream(stream)
        self.desc = desc
        self.enabled = enabled
        self.options = tqdm_options
        self.bar: Any = None

    @staticmethod
    def wanted(options: dict[str, Any]) -> bool:
        """Return True unless the command was run with --no-progress or -v 0."""
        return not options.get("no_progress") and options.get("verbosity", 1) >= 1

    @property
    def callback(self) -> Progress | None:
        """The progress callback to hand to a service (None when no bar is shown)."""
        return self.update if self.enabled else None

    def __enter__(self) -> ProgressBar:
        return self

    def update(self, done: int, total: int) -> None:
        """Show `done` of `total` (the total may change as the work learns its size)."""
        if not self.enabled or not total:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, file=self.stream, **self.options)
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(max(0, min(done, total) - self.bar.n))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
