"""Signals other apps listen to, so that dbselect never reaches into their internals."""

from django.dispatch import Signal

# Sent whenever a session starts working on another database file, or on the same file after
# its content was replaced. Arguments: request, path, alias, display_name, reason: "selected",
# "fallback", "restored" (a snapshot was restored into it) or "cleared" (path and alias None).
database_switched = Signal()
