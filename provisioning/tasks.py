"""The queue's jobs (huey, through huey.contrib.djhuey: `manage.py run_huey` runs them).

`build_database(label, job)` builds one database (provisioning.service.run). Its arguments
are the label and the job id only: what to build is recorded beside the database
(provisioning.progress), so the queue never holds a password or a password hash. A job queued
before a restart stays in the queue's storage (the SQLite file in instance/, or Redis) and
runs when a worker starts again; a job is never retried automatically (a failed build waits
for an operator's rebuild).
"""

from __future__ import annotations

from huey.contrib.djhuey import HUEY, db_task, on_shutdown, on_startup

from provisioning import service, worker


@db_task()
def build_database(label: str, job: str) -> str:
    """Build the database `label` for job `job`; return the state it ends in."""
    return service.run(label, job).state


def enqueue(label: str, job: str) -> None:
    """Queue the build of `label` under the job id `job` (also the queue's task id)."""
    HUEY.enqueue(build_database.s(label, job, id=job))


@on_startup(name="provisioning.announce_worker")
def _announce() -> None:
    worker.announce()


@on_shutdown(name="provisioning.withdraw_worker")
def _withdraw() -> None:
    worker.withdraw()
