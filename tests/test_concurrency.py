"""Many sessions on many files at once: nobody ever sees another database's rows."""

from __future__ import annotations

import re
import threading

from django.db import connections
from django.test import Client

from tests.helpers import select, sign_in

THREADS = 8
REQUESTS = 200


def test_eight_sessions_on_eight_files_never_see_each_other(make_database):
    paths = [
        make_database(name=f"Site {i}", companies=[f"Company-{i:02d}"], users=[("op", "pw", False)])
        for i in range(THREADS)
    ]
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    leaks: list[str] = []
    served = [0] * THREADS

    def session_worker(index: int) -> None:
        try:
            client = Client()
            select(client, paths[index])
            sign_in(client, "op", "pw")
            own = f"Company-{index:02d}"
            barrier.wait()
            for n in range(REQUESTS):
                url = "/companies/" if n % 2 else "/"
                response = client.get(url)
                assert response.status_code == 200, response.status_code
                page = response.content.decode()
                if url == "/companies/":
                    seen = set(re.findall(r"Company-\d\d", page))
                    if seen != {own}:
                        leaks.append(f"session {index} saw {sorted(seen)}")
                elif f"Database: <strong>Site {index}</strong>" not in page:
                    leaks.append(f"session {index} home shows another database")
                served[index] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=session_worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert leaks == []
    assert served == [REQUESTS] * THREADS
