"""WSGI entry point (gunicorn: nukeworks.wsgi:application)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nukeworks.settings")

application = get_wsgi_application()

# Production never serves with unsafe settings: any system check error stops the worker's boot
# (and so gunicorn) with the checks' messages.
from nukeworks.deployment.checks import refuse_unsafe_start  # noqa: E402

refuse_unsafe_start()
