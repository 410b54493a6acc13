"""The sign-in form: Django's, refusing attempts over the rate limit before any password check."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts import ratelimit

RATE_LIMITED = "rate_limited"


class RateLimitedAuthenticationForm(AuthenticationForm):
    """AuthenticationForm that checks the login rate limit first."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        wait = ratelimit.retry_after(self.request, username)
        if wait:
            # Refused before authenticate(): a correct password guessed now is not confirmed.
            raise ValidationError(ratelimit.message(wait), code=RATE_LIMITED)
        return super().clean()

    def is_rate_limited(self) -> bool:
        """Return True when this attempt was refused by the rate limit."""
        return any(e.code == RATE_LIMITED for e in self.errors.as_data().get("__all__", []))
