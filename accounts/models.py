"""The NukeWorks user: Django's user plus the last database it worked on."""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A user of one database file. "Admin" means is_staff (superusers included)."""

    # NULL means "never selected" (the spec's `TEXT NULL` columns), distinct from "".
    last_db_path = models.TextField(null=True, blank=True)  # noqa: DJ001
    last_db_display_name = models.TextField(null=True, blank=True)  # noqa: DJ001

    @property
    def is_admin(self) -> bool:
        return bool(self.is_active and (self.is_staff or self.is_superuser))
