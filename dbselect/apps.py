from django.apps import AppConfig


class DbSelectConfig(AppConfig):
    name = "dbselect"
    verbose_name = "Database selection"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        # checks register themselves on import.
        from dbselect import checks, live_files, query_budget, registry, scanner  # noqa: F401
        from dbselect.conf import get_config

        connection_created.connect(live_files.on_connection_created, dispatch_uid="nw-live-files")
        connection_created.connect(
            query_budget.on_connection_created, dispatch_uid="nw-query-budget"
        )
        registry.adopt_configured_aliases()
        # Engine cache administration: per-thread connection bookkeeping, janitor thread.
        from dbselect import engine_worker

        engine_worker.install()
        if get_config()["REGISTER_SCANNED_AT_STARTUP"]:
            # `manage.py migrate --database <label>` needs the label as an alias.
            for label, path in scanner.database_files():
                if registry.get_engine(path) is None:
                    registry.register(path, alias=label)
