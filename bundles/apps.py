from django.apps import AppConfig


class BundlesConfig(AppConfig):
    """Seed packages and export/import bundles of a database's domain data."""

    name = "bundles"
    verbose_name = "Seed packages, export and import"
