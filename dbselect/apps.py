from django.apps import AppConfig


class DbSelectConfig(AppConfig):
    name = "dbselect"
    verbose_name = "Database selection"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        # checks register themselves on import.
        from dbselect import checks, engines, scanner  # noqa: F401
        from dbselect.conf import get_config
        from dbselect.engines import live_files, query_budget

        connection_created.connect(live_files.on_connection_created, dispatch_uid="nw-live-files")
        connection_created.connect(
            query_budget.on_connection_created, dispatch_uid="nw-query-budget"
        )
        engines.adopt_configured_aliases()
        # Engine cache administration: per-thread connection bookkeeping, janitor thread.
        from dbselect.engines import workers as engine_worker

        engine_worker.install()
        if get_config()["REGISTER_SCANNED_AT_STARTUP"]:
            # `manage.py migrate --database <label>` needs the label as an alias.
            for label, path in scanner.database_files():
                if engines.get(path) is None:
                    engines.register(path, alias=label)
