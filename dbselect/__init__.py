"""Per-session selection of the SQLite database file a request works on."""
