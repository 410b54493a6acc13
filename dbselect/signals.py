"""Signals other apps listen to, so that dbselect never reaches into their internals."""

from django.dispatch import Signal

# Sent whenever a session starts working on another database file.
# Arguments: request, path, alias, display_name, reason ("selected" or "fallback").
database_switched = Signal()
