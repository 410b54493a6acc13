"""Login and logout against the session's selected database."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from accounts.binding import AUTH_USERNAME
from accounts.forms import RateLimitedAdminAuthenticationForm, RateLimitedAuthenticationForm
from audit import log as audit_log
from dbselect import session as db_session


class LoginView(auth_views.LoginView):
    """Django's login view; the user is looked up in the selected database by the router.

    Attempts over the rate limit (accounts.ratelimit) are answered 429 with the form.
    """

    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    form_class = RateLimitedAuthenticationForm

    def get_initial(self) -> dict[str, object]:
        """Pre-fill the username this session last signed in with (in any database)."""
        initial = super().get_initial()
        username = self.request.session.get(AUTH_USERNAME)
        if username:
            initial["username"] = username
        return initial

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


class AdminLoginView(LoginView):
    """The Django admin's sign-in page, under the same rate limit as the app's (429)."""

    template_name = "admin/login.html"
    form_class = RateLimitedAdminAuthenticationForm
    # A signed-in non-staff user sees the form with its error, as on Django's own page.
    redirect_authenticated_user = False

    def get_context_data(self, **kwargs: object) -> dict[str, object]:
        from django.contrib import admin

        return {**admin.site.each_context(self.request), **super().get_context_data(**kwargs)}

    def get_success_url(self) -> str:
        return self.get_redirect_url() or "/admin/"


class LogoutView(auth_views.LogoutView):
    """POST-only logout (Django 5)."""
