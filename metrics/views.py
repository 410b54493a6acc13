"""GET /metrics: the Prometheus exposition, for admins, a scraper's token or an allowed address.

Who may read it (any one suffices):

- a scraper sending `Authorization: Bearer <NUKEWORKS_METRICS_TOKEN>`;
- a client whose address is in NUKEWORKS_METRICS_ALLOW (addresses or networks; behind a
  reverse proxy that is the proxy's address, so prefer the token there);
- an administrator signed in to the database their browser session works on.

Everyone else: 401 with `WWW-Authenticate: Bearer` (no or a wrong token), 403 for a signed-in
user who is not an administrator. The answer names database labels and aliases, never the
path of a file a user typed.
"""

from __future__ import annotations

import ipaddress

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from dbselect.permissions import is_admin
from metrics import conf, instruments
from metrics.collectors import EngineCollector, RegistryCollector


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _address_allowed(request: HttpRequest) -> bool:
    networks = conf.allowed_networks()
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in networks)


def refusal(request: HttpRequest) -> HttpResponse | None:
    """Return the answer to a client that may not read the metrics, None for one that may."""
    configured = str(conf.config()["TOKEN"] or "")
    token = _bearer(request)
    if configured and token is not None and constant_time_compare(token, configured):
        return None
    if _address_allowed(request):
        return None
    user = getattr(request, "user", None)
    if token is None and is_admin(user):
        return None
    if token is None and getattr(user, "is_authenticated", False):
        return HttpResponse(
            "Only an administrator of this database may read the metrics.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    response = HttpResponse(
        "The metrics need a token (Authorization: Bearer …), an allowed address or an "
        "administrator's sign-in.\n",
        status=401,
        content_type="text/plain; charset=utf-8",
    )
    response["WWW-Authenticate"] = 'Bearer realm="nukeworks-metrics"'
    return response


def registry() -> CollectorRegistry:
    """The metrics of every worker process (multiprocess mode) or of this one, and the engines."""
    reg = CollectorRegistry(auto_describe=False)
    folder = conf.multiprocess_dir()
    if folder:
        MultiProcessCollector(reg, path=folder)
    else:
        reg.register(RegistryCollector(instruments.REGISTRY))
    reg.register(EngineCollector())
    return reg


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition format."""
    if not conf.enabled():
        raise Http404("Metrics are off.")
    refused = refusal(request)
    if refused is not None:
        return refused
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
