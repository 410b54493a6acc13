"""The sign-in forms (the app's and the Django admin's): one rate limit for both.

The limit is checked before any password check, and only wrong credentials count against it
(accounts.ratelimit): a database that cannot be read, or a correct password, never does.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts import ratelimit

RATE_LIMITED = "rate_limited"


class RateLimitMixin:
    """Refuse attempts over the rate limit; count wrong credentials."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        wait = ratelimit.retry_after(self.request, username)
        if wait:
            # Refused before authenticate(): a correct password guessed now is not confirmed.
            raise ValidationError(ratelimit.message(wait), code=RATE_LIMITED)
        try:
            return super().clean()
        except ValidationError as exc:
            # invalid_login with a user found means "not staff" (admin form): no wrong password.
            if getattr(exc, "code", None) == "invalid_login" and self.user_cache is None:
                ratelimit.record_failure(self.request, username)
            raise

    def is_rate_limited(self) -> bool:
        """Return True when this attempt was refused by the rate limit."""
        return any(e.code == RATE_LIMITED for e in self.errors.as_data().get("__all__", []))


class RateLimitedAuthenticationForm(RateLimitMixin, AuthenticationForm):
    """The app's sign-in form."""


class RateLimitedAdminAuthenticationForm(RateLimitMixin, AdminAuthenticationForm):
    """The Django admin's sign-in form, under the same limit."""
