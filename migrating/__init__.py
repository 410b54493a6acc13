"""Migrating a database file with a snapshot as the safety net (dbselect + snapshots)."""
