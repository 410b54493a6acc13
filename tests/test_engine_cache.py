"""The engine cache: one stable alias per path, complete settings, safe under threads."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.test import Client

from dbselect import engines, state
from nukeworks.companies.models import Company
from tests.helpers import remove_database, select


def test_same_path_gives_the_same_alias(make_database):
    path = str(make_database())
    assert engines.register(path).alias == engines.register(path).alias
    assert engines.alias_for_path(path) == engines.register(path).alias


def test_two_paths_give_two_aliases(make_database):
    first, second = str(make_database()), str(make_database())
    assert engines.register(first).alias != engines.register(second).alias


def test_registered_settings_are_complete(make_database):
    path = str(make_database())
    alias = engines.register(path).alias
    cfg = connections.settings[alias]
    assert set(connections.settings[DEFAULT_DB_ALIAS]) <= set(cfg)
    assert cfg["NAME"] == path
    assert cfg["TIME_ZONE"] == connections.settings[DEFAULT_DB_ALIAS]["TIME_ZONE"]
    assert cfg["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_registered_alias_answers_queries(make_database):
    path = str(make_database(companies=["Acme"]))
    alias = engines.register(path).alias
    with state.override(alias):
        assert list(Company.objects.values_list("name", flat=True)) == ["Acme"]


def test_a_vanished_file_is_never_recreated_by_a_query(make_database):
    path = make_database(companies=["Acme"])
    alias = engines.register(str(path)).alias
    remove_database(path)
    with state.override(alias), pytest.raises(OperationalError, match="unable to open"):
        Company.objects.count()
    assert not path.exists()


def test_the_configured_default_file_is_served_by_a_non_creating_alias(make_database, settings):
    path = Path(settings.DATABASES["default"]["NAME"])
    try:
        make_database(name="Configured", path=path)
        select(Client(), path)
        alias = engines.get(str(path)).alias
        assert alias != DEFAULT_DB_ALIAS
        assert connections.settings[alias]["ENGINE"] == engines.ENGINE
        assert connections.settings[DEFAULT_DB_ALIAS]["ENGINE"] == "django.db.backends.sqlite3"
    finally:
        connections[DEFAULT_DB_ALIAS].close()
        remove_database(path)
