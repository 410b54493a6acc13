"""Manual per-database snapshots and restore."""
