"""POST/DELETE /api/v1/databases/{db}/auth/token: sign in to one database, get a token."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from api import binding
from api.errors import ApiError
from api.serializers import CredentialsSerializer, ErrorBodySerializer, TokenSerializer
from api.throttling import AnonymousRateThrottle
from api.views.base import DatabaseView
from audit import log as audit_log


def issue_token(user: object, db: str) -> dict[str, object]:
    """Create a token for `user` in the bound database; return what the caller sees once."""
    instance, token = AuthToken.objects.create(user=user)
    return {
        "token": token,
        "expiry": instance.expiry,
        "database": db,
        "username": user.get_username(),  # type: ignore[attr-defined]
    }


class TokenView(DatabaseView):
    """Exchange a username and password *of this database* for a token; revoke it."""

    permission_classes = [AllowAny]
    # A database that needs migration still issues tokens, so its admins can migrate it
    # through the API, unless the sign-in's own tables are among the pending migrations.
    requires_up_to_date = False
    # Password guessing is limited per client address, as the sign-in page does.
    throttle_classes = [AnonymousRateThrottle, ScopedRateThrottle]
    throttle_scope = "signin"

    @extend_schema(
        request=CredentialsSerializer,
        responses={201: TokenSerializer, 400: ErrorBodySerializer, 401: ErrorBodySerializer},
    )
    def post(self, request: Request, db: str) -> Response:
        assert self.database is not None
        binding.refuse_sign_in_before_migration(self.database)
        credentials = CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        username = credentials.validated_data["username"]
        user = authenticate(
            request._request, username=username, password=credentials.validated_data["password"]
        )
        if user is None or not user.is_active:
            audit_log.record(
                "api.token", target=username, outcome="failure", request=request._request
            )
            raise ApiError(
                "authentication_failed",
                "Wrong username or password for this database.",
                status.HTTP_401_UNAUTHORIZED,
            )
        data = issue_token(user, db)
        audit_log.record(
            "api.token",
            target=username,
            user=user,
            request=request._request,
            detail="token created",
        )
        return Response(TokenSerializer(data).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={204: OpenApiResponse(description="Revoked."), 401: ErrorBodySerializer}
    )
    def delete(self, request: Request, db: str) -> Response:
        token = request.auth
        if not isinstance(token, AuthToken):
            raise ApiError(
                "not_authenticated",
                "Send the token to revoke in the Authorization header.",
                status.HTTP_401_UNAUTHORIZED,
            )
        token.delete()
        audit_log.record(
            "api.token",
            target=request.user.get_username(),
            user=request.user,
            request=request._request,
            detail="token revoked",
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
