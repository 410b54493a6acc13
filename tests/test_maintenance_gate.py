"""While a database is restored or migrated, requests on it wait, then are refused clearly.

The gate (dbselect.engines.gate) is what keeps a write from landing between a restore's
safety snapshot and the restore; here it is held directly, as a restore holds it.
"""

from __future__ import annotations

import os
import threading

from django.test import Client

from dbselect.engines import gate
from tests.helpers import select, sign_in


def test_a_request_waits_for_maintenance_then_gets_the_503_page(make_database, settings):
    settings.DBSELECT = {**settings.DBSELECT, "MAINTENANCE_WAIT": 0.3}
    db = os.path.realpath(make_database(name="Held", users=[("kim", "pw-kim-123", False)]))
    client = Client()
    select(client, db)
    assert sign_in(client, "kim", "pw-kim-123").status_code == 302
    held, release = threading.Event(), threading.Event()

    def maintain() -> None:
        with gate.exclusive(db, timeout=5):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=maintain)
    thread.start()
    try:
        assert held.wait(5)
        response = client.post("/companies/new/", {"name": "Waited Co", "country": "X"})
        assert response.status_code == 503
        page = response.content.decode()
        assert "Database under maintenance, try again" in page
        assert "Your change was not saved." in page
        assert response["Retry-After"]
    finally:
        release.set()
        thread.join()
    # Maintenance over: the same write goes through.
    assert client.post("/companies/new/", {"name": "Later Co", "country": "X"}).status_code == 302
