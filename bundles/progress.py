"""A tqdm progress bar in rows for the bundle commands, fed by `progress(done, total)`."""

from __future__ import annotations

from typing import Any

from bundles.package import Progress


class RowsBar:
    """Context manager yielding a progress callback (None when disabled)."""

    def __init__(self, what: str, stream: Any, enabled: bool) -> None:
        self.what, self.stream, self.enabled = what, stream, enabled
        self.bar: Any = None

    def __enter__(self) -> Progress | None:
        return self._update if self.enabled else None

    def _update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc=self.what,
                unit=" rows",
                # OutputWrapper of a management command, or a plain stream.
                file=getattr(self.stream, "_out", self.stream),
                mininterval=0.2,
            )
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(max(0, done - self.bar.n))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
