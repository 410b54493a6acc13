"""Test-only migrations of `companies`: the real ones plus one that fails half-way.

Injected with MIGRATION_MODULES={"companies": "tests.failing_migrations"} to prove that a
failed migration leaves the database exactly as it was.
"""
