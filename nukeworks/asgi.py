"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nukeworks.settings")

application = get_asgi_application()

# As in wsgi.py: production never serves with unsafe settings.
from nukeworks.deployment.checks import refuse_unsafe_start  # noqa: E402

refuse_unsafe_start()
