"""SQLite backend for runtime aliases: it opens existing files only, never creating one.

A user-selected file can vanish between the per-request check and the first query (a share
disconnects, someone deletes it). Django's stock backend would then let SQLite create a new,
empty database at that path; this one opens `file:<path>?mode=rw`, so the query fails with
"unable to open database file" instead, and the fault handling falls back as for any other
unusable file.
"""
