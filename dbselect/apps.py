from typing import Any

from django.apps import AppConfig


class DbSelectConfig(AppConfig):
    name = "dbselect"
    verbose_name = "Database selection"

    def ready(self) -> None:
        from django.core.signals import setting_changed
        from django.db.backends.signals import connection_created

        # checks register themselves on import.
        from dbselect import checks, engines, scanner  # noqa: F401
        from dbselect.conf import get_config
        from dbselect.engines import connections, live_files, observe, query_budget, workers

        connection_created.connect(live_files.on_connection_created, dispatch_uid="nw-live-files")
        connection_created.connect(
            query_budget.on_connection_created, dispatch_uid="nw-query-budget"
        )
        # The slow-query log and per-request query tallies (once per connection object).
        observe.configure()
        connection_created.connect(observe.on_connection_created, dispatch_uid="nw-observe")
        engines.install()
        # Per-thread connection bookkeeping, then this worker's janitor thread.
        connections.install_receivers()
        workers.install()
        setting_changed.connect(_settings_changed, dispatch_uid="nw-dbselect-settings")
        if get_config()["REGISTER_SCANNED_AT_STARTUP"]:
            # `manage.py migrate --database <label>` needs the label as an alias.
            for label, path in scanner.database_files():
                if engines.get(path) is None:
                    engines.register(path, alias=label)
            # … and so does every PostgreSQL database of the catalog (never connected here).
            _register_catalog(engines)


def _register_catalog(engines: Any) -> None:
    import logging

    from dbselect import catalog

    try:
        entries = catalog.entries()
    except Exception as exc:  # a catalog out of reach must not stop the server or manage.py
        logging.getLogger("nukeworks.dbselect").warning(
            "catalog not read at start-up: %s", type(exc).__name__
        )
        return
    for entry in entries:
        engines.cache().register_entry(entry)


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    """The one reaction to a changed DBSELECT setting (tests): re-read it everywhere."""
    if setting == "DBSELECT":
        from dbselect import engines
        from dbselect.conf import get_config
        from dbselect.engines import observe

        get_config.cache_clear()
        engines.reset()
        observe.configure()
