"""`make run` (nukeworks/serve.sh): refuse early, in one line, when gunicorn's address is taken.

Reads NUKEWORKS_BIND through the same layers as gunicorn.conf.py, tries to bind it the way
gunicorn does (SO_REUSEADDR, so a port in TIME_WAIT is not mistaken for a busy one) and exits 1
with one line naming the address and how to choose another. Otherwise prints where the server
will answer and exits 0. Unix sockets (unix:…) are left to gunicorn.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from nukeworks.deployment import environments  # noqa: E402

EXAMPLE = "NUKEWORKS_BIND=127.0.0.1:8001 make run"


def split_bind(bind: str) -> tuple[str, int] | None:
    """Return (host, port) of a gunicorn bind such as 127.0.0.1:8000 or [::1]:8000, else None."""
    bind = bind.strip()
    if not bind or bind.startswith(("unix:", "fd://")):
        return None
    host, sep, port = bind.rpartition(":")
    if not sep:
        host, port = bind, "8000"
    host = host.strip("[]") or "0.0.0.0"
    try:
        return host, int(port)
    except ValueError:
        return None


def port_taken(host: str, port: int) -> str:
    """Return why (host, port) cannot be bound, or "" when it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def main() -> int:
    env = environments.LayeredEnv(environments.Layers(_ROOT))
    bind = environments.server_settings(env)["NUKEWORKS_BIND"]
    parsed = split_bind(bind)
    if parsed is None:
        print(f"NukeWorks is serving on {bind} (Ctrl+C to stop)")
        return 0
    host, port = parsed
    reason = port_taken(host, port)
    if reason:
        print(
            f"Cannot serve on {bind}: port {port} is not available ({reason.lower()}); "
            f"choose another address with NUKEWORKS_BIND, e.g. {EXAMPLE}",
            file=sys.stderr,
        )
        return 1
    shown = f"[{host}]" if ":" in host else host
    print(f"NukeWorks is serving on http://{shown}:{port}/ (Ctrl+C to stop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
