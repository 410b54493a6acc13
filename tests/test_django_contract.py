"""The two places the engine layer leans on how Django works inside, checked loudly.

If a Django upgrade changes either, these tests fail with a message that says what to revisit
(dbselect/engines/cache.py `publish_alias`, dbselect/engines/connections.py
`install_receivers`), instead of the product failing under load.
"""

from __future__ import annotations

from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections, reset_queries
from django.utils.connection import BaseConnectionHandler
from django.utils.functional import cached_property

from dbselect import engines, state
from dbselect.engines import connections as tracking
from nukeworks.companies.models import Company


def test_connection_settings_are_a_cached_property_that_publish_alias_can_replace(make_database):
    descriptor = BaseConnectionHandler.__dict__.get("settings")
    assert isinstance(descriptor, cached_property), (
        "ConnectionHandler.settings is no longer a cached_property: revisit "
        "dbselect.engines.cache.publish_alias"
    )
    before = connections.databases
    engine = engines.register(str(make_database(companies=["Acme"])))
    # Copy-on-write: a new dict, seen through the public `databases` property.
    assert connections.databases is connections.settings
    assert connections.databases is not before and engine.alias not in before
    with state.override(engine.alias):
        assert list(Company.objects.values_list("name", flat=True)) == ["Acme"]


def test_djangos_per_alias_request_receivers_are_replaced_by_install_receivers():
    assert tracking.django_receivers_removed >= 3, (
        "Django's reset_queries/close_old_connections receivers were not found at start-up "
        "under these names: revisit dbselect.engines.connections.install_receivers"
    )
    # Django's test client and CaptureQueriesContext connect them again after their work (so
    # the state at this point depends on earlier tests): connect them, then install.
    request_started.connect(reset_queries)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    assert tracking.install_receivers() == 3
    # disconnect() reports whether a receiver was still connected: Django's are not.
    assert request_started.disconnect(reset_queries) is False
    assert request_started.disconnect(close_old_connections) is False
    assert request_finished.disconnect(close_old_connections) is False
