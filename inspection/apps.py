from django.apps import AppConfig


class InspectionConfig(AppConfig):
    """What is inside a database file and whether it is sound: `manage.py dbinspect` /
    `dbcheck`, the inspection and the background full check of the Database details page."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "inspection"
    verbose_name = "Database inspection and checks"
