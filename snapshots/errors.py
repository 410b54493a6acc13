"""The exceptions of the snapshots app; every one carries a message meant for the user."""


class SnapshotError(Exception):
    """A snapshot operation was refused or failed."""


class SnapshotNotFound(SnapshotError):
    """No snapshot of this name belongs to this database."""


class SnapshotBusy(SnapshotError):
    """Another snapshot operation on this database is still running."""


class SnapshotIgnored(SnapshotNotFound):
    """The name is an entry of the snapshots folder that is not a snapshot (snapshots.folder)."""
