"""Login and logout against the session's selected database."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from accounts.forms import RateLimitedAuthenticationForm
from audit import log as audit_log
from dbselect import session as db_session


class LoginView(auth_views.LoginView):
    """Django's login view; the user is looked up in the selected database by the router.

    Attempts over the rate limit (accounts.ratelimit) are answered 429 with the form.
    """

    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    form_class = RateLimitedAuthenticationForm

    def form_invalid(self, form: RateLimitedAuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.is_rate_limited():
            response.status_code = 429
            audit_log.record(
                "auth.login_blocked",
                target=db_session.selected_path(self.request) or "",
                outcome="denied",
                username=str(form.cleaned_data.get("username", ""))[:150],
                detail="too many failed sign-in attempts",
                request=self.request,
            )
        return response


class LogoutView(auth_views.LogoutView):
    """POST-only logout (Django 5)."""
