from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    """New databases built in the background from seed packages, behind a readiness gate."""

    name = "provisioning"
    verbose_name = "Provisioning"
    default_auto_field = "django.db.models.BigAutoField"
