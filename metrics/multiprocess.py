"""The folder of prometheus-client's multiprocess mode, prepared before the workers start.

gunicorn runs several worker processes (and `make run` a task queue worker beside them): each
writes its metric values to files of its own in PROMETHEUS_MULTIPROC_DIR, and /metrics adds
them up. The variable must be set before a process imports prometheus-client, so it is set by
the server's start-up, never by Django's settings:

- nukeworks/serve.sh (`make run`) runs `python -m metrics.multiprocess`, which empties the
  folder (default instance/metrics/) and prints it, and exports it to gunicorn and the queue
  worker alike;
- nukeworks/gunicorn.conf.py sets it when the environment did not (instance/metrics/) and,
  in gunicorn's `on_starting`, prepares it: a folder it chose is emptied; one given by the
  environment keeps the files of processes still running (the queue worker's) and loses the
  others', so counters start again from zero and a reused process id never inherits values.

No Django here: gunicorn's master process imports this before any worker starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
ROOT = Path(__file__).resolve().parent.parent


def default_folder() -> Path:
    """Return instance/metrics/ of this machine (NUKEWORKS_INSTANCE_DIR through the layers)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from nukeworks.deployment import environments

    env = environments.LayeredEnv(environments.Layers(ROOT))
    instance = Path(env.str("NUKEWORKS_INSTANCE_DIR", default=str(ROOT / "instance")))
    return instance / "metrics"


def _pid_of(name: str) -> int | None:
    # prometheus-client names its files <type>[_<mode>]_<pid>.db
    stem = name[:-3] if name.endswith(".db") else ""
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(folder: str | os.PathLike[str], *, wipe: bool) -> list[str]:
    """Create `folder`; remove every metrics file (`wipe`) or those of ended processes.

    Return the names removed.
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    removed = []
    for item in sorted(path.glob("*.db")):
        pid = _pid_of(item.name)
        if wipe or pid is None or not _running(pid):
            item.unlink(missing_ok=True)
            removed.append(item.name)
    return removed


def choose() -> tuple[str, bool]:
    """Return (folder, chosen here) and set the variable when the environment did not."""
    given = os.environ.get(VARIABLE)
    if given:
        return given, False
    folder = str(default_folder())
    os.environ[VARIABLE] = folder
    return folder, True


def main() -> int:
    """`python -m metrics.multiprocess`: empty the folder and print it (nukeworks/serve.sh)."""
    folder = os.environ.get(VARIABLE) or str(default_folder())
    prepare(folder, wipe=True)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
