"""The selection middleware's async path (ASGI): the same binding, per task, never shared.

Django runs the middleware chain asynchronously under an ASGI server; the request's alias lives
in an asgiref Local, so it follows each task into the thread that runs its sync views.
"""

from __future__ import annotations

import asyncio
import os

from asgiref.sync import async_to_sync
from django.test import AsyncClient

from dbselect import session as db_session

PASSWORD = "pw-async-123"


async def _work_on(path, username: str, own: str, other: str, rounds: int = 5) -> list[str]:
    """Select `path`, sign in, and read the company list `rounds` times; return what was seen."""
    client = AsyncClient()
    selected = await client.post("/select-db", {"path": str(path)})
    assert selected.status_code == 302
    signed_in = await client.post("/login/", {"username": username, "password": PASSWORD})
    assert signed_in.status_code == 302
    seen = []
    for _ in range(rounds):
        page = await client.get("/companies/")
        assert page.status_code == 200
        text = page.content.decode()
        assert own in text and other not in text
        seen.append(own)
        await asyncio.sleep(0)
    return seen


def test_two_async_sessions_on_two_files_each_see_only_their_own_rows(make_database):
    alpha = make_database(name="Alpha", companies=["Acme Alpha"], users=[("ann", PASSWORD, False)])
    beta = make_database(name="Beta", companies=["Bolt Beta"], users=[("bob", PASSWORD, False)])

    async def both() -> list[list[str]]:
        return await asyncio.gather(
            _work_on(alpha, "ann", "Acme Alpha", "Bolt Beta"),
            _work_on(beta, "bob", "Bolt Beta", "Acme Alpha"),
        )

    seen = async_to_sync(both)()
    assert seen == [["Acme Alpha"] * 5, ["Bolt Beta"] * 5]


def test_async_session_without_a_database_is_sent_to_the_selector():
    async def visit():
        return await AsyncClient().get("/companies/")

    response = async_to_sync(visit)()
    assert response.status_code == 302
    assert response["Location"].startswith("/select-db")


def test_async_request_on_a_deleted_file_falls_back_with_the_banner(make_database):
    first = make_database(name="First", companies=["Acme"])
    second = make_database(name="Second", companies=["Bolt"])

    async def scenario():
        client = AsyncClient()
        await client.post("/select-db", {"path": str(first)})
        await client.post("/select-db", {"path": str(second)})
        os.remove(second)
        response = await client.get("/companies/", follow=True)
        return client, response

    client, response = async_to_sync(scenario)()
    text = response.content.decode()
    assert "Your selected database could not be opened. Reverted to First." in text
    assert "no longer exists" in text
    assert client.session[db_session.SELECTED_PATH] == str(first)
