"""The queue's job of this app (huey, through huey.contrib.djhuey; `manage.py run_huey` runs it).

`full_check(path, job)`: the details page's full check of one database (inspection.jobs.run).
Its arguments are the database's path and the job id, which is also the queue's task id; what
the job finds is written to its status file (inspection.jobs), never returned through the
queue. A job is not retried automatically: the page offers to run it again.
"""

from __future__ import annotations

from huey.contrib.djhuey import HUEY, db_task

from inspection import jobs


@db_task()
def full_check(path: str, job: str) -> str:
    """Check the database at `path` for job `job`; return the state it ends in."""
    return jobs.run(path, job)


def enqueue(path: str, job: str) -> None:
    """Queue the full check of `path` under the job id `job`."""
    HUEY.enqueue(full_check.s(path, job, id=job))
