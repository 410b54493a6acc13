"""A real gunicorn server (the `make run` configuration) and a small cookie-keeping browser.

Used by the multi-worker tests and by bench/bench_routing.py. The server runs the project's
own settings (`nukeworks.settings`) with every machine-local folder pointed at a temporary
one through the same environment variables an operator would set.
"""

from __future__ import annotations

import http.cookiejar
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def open_files(pid: int, prefix: str | Path) -> list[str]:
    """Return the files under `prefix` that process `pid` holds open (Linux /proc)."""
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(prefix)):
            found.append(target)
    return found


def fd_count(pid: int) -> int:
    """Return how many file descriptors process `pid` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    """Return the resident memory of process `pid` in bytes."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def set_password(path: str | Path, username: str, password: str) -> None:
    """Store a PBKDF2 password hash (few iterations, upgraded at first login) in a database file.

    The server runs the production hashers, so a hash made by the MD5 test hasher would not do.
    """
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    encoded = PBKDF2PasswordHasher().encode(password, "livetestsalt0123", iterations=1000)
    conn = sqlite3.connect(str(path))
    try:
        with conn:
            conn.execute(
                "UPDATE accounts_user SET password = ? WHERE username = ?", (encoded, username)
            )
    finally:
        conn.close()


class GunicornServer:
    """gunicorn -c nukeworks/gunicorn.conf.py on a free loopback port, in its own folders."""

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 2,
        threads: int = 2,
        conn_max_age: int = 0,
        settings_module: str = "nukeworks.settings",
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.cpus = cpus
        for name in ("instance", "databases", "sessions"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "NUKEWORKS_BIND": f"127.0.0.1:{self.port}",
            "NUKEWORKS_WORKERS": str(workers),
            "NUKEWORKS_THREADS": str(threads),
            "NUKEWORKS_INSTANCE_DIR": str(self.root / "instance"),
            "NUKEWORKS_DATABASES_DIR": str(self.root / "databases"),
            "NUKEWORKS_DEFAULT_DB": str(self.root / "databases" / "default.sqlite"),
            "SESSION_FILE_PATH": str(self.root / "sessions"),
            "SECRET_KEY": "live-server-secret-key-for-tests-and-benchmarks-0123456789",
            "DB_CONN_MAX_AGE": str(conn_max_age),
            "DBSELECT_REGISTER_SCANNED": "false",
            "NUKEWORKS_ACCESS_LOG": os.devnull,
            "NUKEWORKS_ENV": "testing",
            "DEBUG": "false",
            **(env or {}),
        }
        self.log = self.root / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> GunicornServer:
        """Start the server and wait until every worker answers."""
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [str(GUNICORN), "-c", "nukeworks/gunicorn.conf.py"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            if len(self.worker_pids()) == self.workers and self._healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start: {self.log.read_text()[-2000:]}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        """Return the pids of the worker processes."""
        if self.proc is None:
            return []
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return sorted(int(p) for p in text.split())

    def stop(self) -> None:
        """Stop the server (graceful, then forced)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class Browser:
    """A browser session: cookies, CSRF tokens, form posts; follows redirects like a browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def cookie(self, name: str) -> str | None:
        """Return the value of cookie `name`."""
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        return None

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        """GET (or POST `data` with the CSRF token); return the final status and body."""
        body = None
        headers = {}
        if data is not None:
            if self.cookie("csrftoken") is None:
                self.request("/select-db")
            form = {"csrfmiddlewaretoken": self.cookie("csrftoken") or "", **data}
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        return self.request(path)

    def post(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        return self.request(path, data or {})

    def select(self, path: str | Path) -> tuple[int, str]:
        """Select a database file at /select-db."""
        return self.post("/select-db", {"path": str(path)})

    def sign_in(self, username: str, password: str) -> tuple[int, str]:
        """Sign in to the selected database."""
        return self.post("/login/", {"username": username, "password": password})
