"""Real PostgreSQL, Redis and HAProxy servers on loopback, from Debian's packages.

Used by `make cluster` (nukeworks/cluster/__main__.py), by the tests that need them
(tests/services.py) and by the benchmarks. Each server binds 127.0.0.1 on a port it is given,
keeps its data in a folder it is given, and is stopped by `stop()`; nothing is installed or
started system-wide. `ensure_packages()` installs the Debian packages with apt when missing
(root only).

PostgreSQL refuses to run as root: when this process is root, the server runs as the
`postgres` user the Debian package created (its data folder is handed to that user).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = {"postgresql": "postgresql", "redis-server": "redis-server", "haproxy": "haproxy"}


class ServiceError(RuntimeError):
    """A server could not be installed or started; the message says why."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    """Return the path of a PostgreSQL server program (initdb, postgres, pg_ctl), if installed."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return found[0] if found else None


def missing_packages(wanted: tuple[str, ...] = tuple(PACKAGES)) -> list[str]:
    """Return the Debian packages of `wanted` whose programs are not installed."""
    present = {
        "postgresql": postgres_bin("initdb") is not None and shutil.which("pg_dump") is not None,
        "redis-server": shutil.which("redis-server") is not None,
        "haproxy": shutil.which("haproxy") is not None,
    }
    return [PACKAGES[name] for name in wanted if not present[name]]


def ensure_packages(wanted: tuple[str, ...] = tuple(PACKAGES)) -> None:
    """Install the missing Debian packages of `wanted` with apt; raise ServiceError if unable."""
    missing = missing_packages(wanted)
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServiceError(
            f"missing Debian packages: {' '.join(missing)} (run `apt-get install "
            f"{' '.join(missing)}` as root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode:
            raise ServiceError(f"{' '.join(args)} failed: {done.stderr[-1000:]}")
    # Debian starts the packaged services at once: stop them, ours run on their own ports.
    for unit in ("postgresql", "redis-server", "haproxy"):
        subprocess.run(["service", unit, "stop"], capture_output=True)


def wait_for_port(port: int, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    """Wait until 127.0.0.1:`port` accepts connections; raise ServiceError when it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"did not listen on 127.0.0.1:{port} in {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-1500:]
    except OSError:
        return "(no log)"


@dataclass
class Service:
    """A running server: its process, port, folder and log."""

    name: str
    port: int
    folder: Path
    proc: subprocess.Popen | None = None
    pid_file: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def pid(self) -> int | None:
        """Return the server's pid (its own, for servers that detach)."""
        if self.proc is not None:
            return self.proc.pid
        if self.pid_file is not None and self.pid_file.exists():
            text = self.pid_file.read_text().split()
            return int(text[0]) if text else None
        return None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server: SIGTERM (SIGINT, PostgreSQL's fast shutdown), then SIGKILL."""
        pid = self.pid()
        if pid is None:
            return
        sig = signal.SIGINT if self.name == "postgresql" else signal.SIGTERM
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None:
                if self.proc.poll() is not None:
                    return
            elif not _alive(pid):
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if self.proc is not None:
            self.proc.wait(5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _as_postgres_user() -> dict[str, object]:
    """Popen arguments that run a PostgreSQL program as `postgres` when this process is root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")

    def demote() -> None:
        os.setgid(user.pw_gid)
        os.initgroups("postgres", user.pw_gid)
        os.setuid(user.pw_uid)

    return {"preexec_fn": demote}


def _hand_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def _traversable(folder: Path) -> None:
    """Let the `postgres` user reach `folder` (tests' temp folders are 0700 for root)."""
    if os.geteuid() != 0:
        return
    for parent in [folder, *folder.parents]:
        if str(parent) in ("/", ""):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def start_postgres(
    folder: Path, port: int | None = None, *, password: str, timeout: float = 60.0
) -> Service:
    """Start a PostgreSQL server on 127.0.0.1 with its data in `folder`/data.

    The superuser is `postgres` with `password` (scram-sha-256 over TCP only; no Unix socket
    is created outside `folder`, and none when its path would be too long). An existing data
    folder is reused (make cluster restarts).
    """
    initdb, postgres = postgres_bin("initdb"), postgres_bin("postgres")
    if initdb is None or postgres is None:
        raise ServiceError("PostgreSQL's server programs are not installed (apt: postgresql)")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    _traversable(folder)
    _hand_to_postgres(folder)
    port = port or free_port()
    data = folder / "data"
    service = Service("postgresql", port, folder)
    demote = _as_postgres_user()
    if not (data / "PG_VERSION").exists():
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n")
        _hand_to_postgres(pwfile)
        done = subprocess.run(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, **demote,
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode:
            raise ServiceError(f"initdb failed: {done.stderr[-1500:]}")
    # A Unix socket path is limited to 107 bytes: in a deep folder (a checkout far down a
    # home folder, pytest's tmp_path) the server would refuse to start. Everything connects
    # over TCP anyway, so then it gets no socket at all.
    sockets = str(folder) if len(f"{folder}/.s.PGSQL.{port}") <= 107 else ""
    log = open(service.log, "ab")  # noqa: SIM115 - handed to the child process
    try:
        service.proc = subprocess.Popen(
            [postgres, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={sockets}", "-c", "fsync=on",
             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **demote,
        )  # fmt: skip
    finally:
        log.close()
    wait_for_port(port, service.proc, service.log, timeout)
    _wait_until_accepting(port, service, timeout)
    service.extra["url"] = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    return service


def _wait_until_accepting(port: int, service: Service, timeout: float) -> None:
    """Wait until PostgreSQL accepts sessions: it listens before recovery ends, answering
    "the database system is starting up" meanwhile (pg_isready tells the two apart)."""
    isready = postgres_bin("pg_isready") or shutil.which("pg_isready")
    if isready is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc is not None and service.proc.poll() is not None:
            raise ServiceError(f"exited with {service.proc.returncode}: {_tail(service.log)}")
        done = subprocess.run(
            [isready, "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2"], capture_output=True
        )
        if done.returncode == 0:
            return
        time.sleep(0.05)
    raise ServiceError(
        f"PostgreSQL did not accept sessions in {timeout:.0f} s: {_tail(service.log)}"
    )


def start_redis(folder: Path, port: int | None = None, *, timeout: float = 30.0) -> Service:
    """Start Redis on 127.0.0.1 with its append-only file in `folder` (fsync every second)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError("redis-server is not installed (apt: redis-server)")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    service = Service("redis", port, folder)
    log = open(service.log, "ab")  # noqa: SIM115 - handed to the child process
    try:
        service.proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
             "--protected-mode", "yes", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()
    wait_for_port(port, service.proc, service.log, timeout)
    service.extra["url"] = f"redis://127.0.0.1:{port}/0"
    return service


def haproxy_config(
    port: int,
    backends: list[tuple[str, int]],
    health_path: str,
    *,
    stats_port: int | None = None,
    extra_pools: list[tuple[int, list[tuple[str, int]]]] | None = None,
) -> str:
    """Return an HAProxy configuration: round robin over `backends`, no stickiness.

    The health check sends `Host: 127.0.0.1` (Django answers 400 to a host outside
    ALLOWED_HOSTS; on real hosts it is the site's name). Every answer names the app server
    that gave it in `X-Served-By` (the server's name in
    the configuration), so round robin is visible. `stats_port` adds HAProxy's statistics
    page on 127.0.0.1 (`/;csv` for scripts). `extra_pools` adds more frontends, each on its
    own port with its own backend (the cluster benchmark: one HAProxy, two pools).
    """
    pools = [(port, backends), *(extra_pools or [])]
    sections = []
    for number, (pool_port, pool_backends) in enumerate(pools):
        name = "app" if number == 0 else f"pool{number + 1}"
        servers = "\n".join(
            f"    server {server} 127.0.0.1:{bport} check inter 1s fall 2 rise 2"
            for server, bport in pool_backends
        )
        sections.append(
            f"""frontend {"nukeworks" if number == 0 else f"nukeworks{number + 1}"}
    bind 127.0.0.1:{pool_port}
    default_backend {name}

backend {name}
    balance roundrobin
    option httpchk
    http-check send meth GET uri {health_path} ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
    http-response set-header X-Served-By %s
{servers}
"""
        )
    stats = (
        f"""
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /
    stats refresh 5s
    # Loopback only: lets an operator drain a server before stopping it.
    stats admin if TRUE
"""
        if stats_port
        else ""
    )
    return (
        """global
    maxconn 2000

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option forwardfor
    option http-server-close
    retries 2
    option redispatch

"""
        + "\n".join(sections)
        + stats
    )


def start_haproxy(
    folder: Path,
    backends: list[tuple[str, int]],
    port: int | None = None,
    *,
    health_path: str = "/readyz",
    stats_port: int | None = None,
    extra_pools: list[tuple[int, list[tuple[str, int]]]] | None = None,
    timeout: float = 20.0,
) -> Service:
    """Start HAProxy on 127.0.0.1:`port`, balancing round robin over `backends`."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise ServiceError("haproxy is not installed (apt: haproxy)")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = folder / "haproxy.cfg"
    config.write_text(
        haproxy_config(port, backends, health_path, stats_port=stats_port, extra_pools=extra_pools)
    )
    service = Service("haproxy", port, folder)
    checked = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    if checked.returncode:
        raise ServiceError(f"haproxy configuration refused: {checked.stdout}{checked.stderr}")
    log = open(service.log, "ab")  # noqa: SIM115 - handed to the child process
    try:
        service.proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    finally:
        log.close()
    wait_for_port(port, service.proc, service.log, timeout)
    if stats_port:
        service.extra["stats"] = f"http://127.0.0.1:{stats_port}/"
    return service
