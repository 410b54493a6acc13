from django.apps import AppConfig


class MigratingConfig(AppConfig):
    name = "migrating"
    verbose_name = "Migrating databases"
