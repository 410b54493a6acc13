"""The deployment app: its system checks and `manage.py env`."""

from django.apps import AppConfig


class DeploymentConfig(AppConfig):
    name = "nukeworks.deployment"
    label = "deployment"
    verbose_name = "Deployment"

    def ready(self) -> None:
        from nukeworks.deployment import checks  # noqa: F401 - registers the system checks
