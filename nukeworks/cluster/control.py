"""`make cluster` and `make cluster-stop`: the several-servers layout on one machine, on loopback.

`start()` runs, each bound to 127.0.0.1 and keeping its data under `<instance>/cluster/`:

- PostgreSQL (services.start_postgres, data in `cluster/postgres/`), with one database
  (`nukeworks_cluster`, owned by the role `nukeworks`) registered as the catalog entry
  `cluster` when `manage.py catalog` exists, migrated and given its first admin;
- Redis (`cluster/redis/`): every process below gets `REDIS_URL` pointing at it, so sessions,
  caches, the dispose feed and the task queue are shared by the app servers;
- the task queue's worker (`manage.py run_huey`);
- N gunicorn app servers (the shipped nukeworks/gunicorn.conf.py, `NUKEWORKS_BIND` set to
  each one's port), each with its own metrics folder (`cluster/app<N>/metrics/`);
- HAProxy in front (round robin, no stickiness, health checks on `/readyz`), with its
  statistics page.

It detaches: the servers keep running after the command returns (`--foreground` keeps it
attached and stops everything on Ctrl+C). Every process is recorded in
`cluster/state.json` with its pid, its start time (field 22 of /proc/<pid>/stat) and its
command line; `stop()` signals a recorded pid only while /proc says it is still that very
process, so a pid reused by another program is never touched. Data folders stay: the next
`start()` reuses them. Passwords (PostgreSQL's superuser and the `nukeworks` role) are
generated once into `cluster/secrets.json` (mode 0600) and never printed.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbselect.files import locks
from nukeworks.cluster import services
from nukeworks.deployment import environments

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_PORTS = {"balancer": 8080, "apps": (8001, 8002), "postgres": 5433, "redis": 6380}
DEFAULT_STATS_PORT = 8404
CATALOG_LABEL = "cluster"
CATALOG_DISPLAY_NAME = "Cluster (PostgreSQL)"
PG_DATABASE = "nukeworks_cluster"
PG_ROLE = "nukeworks"

# How each recorded program is stopped gracefully, how long it may take, and a word its
# command line must contain to still count as ours.
STOPS: dict[str, tuple[signal.Signals, float, str]] = {
    # PostgreSQL's fast shutdown: sessions are ended, everything committed is on disk.
    "postgresql": (signal.SIGINT, 30.0, "postgres"),
    # Redis writes its append-only file on SIGTERM.
    "redis": (signal.SIGTERM, 30.0, "redis-server"),
    "haproxy": (signal.SIGTERM, 10.0, "haproxy"),
    # gunicorn's graceful stop: workers finish their requests (graceful_timeout 20 s).
    "app": (signal.SIGTERM, 30.0, "gunicorn"),
    # huey's graceful stop, as nukeworks/serve.sh does: a build in progress ends first.
    "worker": (signal.SIGINT, 60.0, "run_huey"),
}
# Stopped front to back: nothing new comes in while the servers behind finish.
STOP_ORDER = ("haproxy", "app", "worker", "redis", "postgresql")


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says why."""


class AlreadyRunning(ClusterError):
    """A cluster recorded in this instance folder is still running."""


def instance_dir() -> Path:
    """Return the instance folder the app servers will use (NUKEWORKS_INSTANCE_DIR, layered)."""
    env = environments.LayeredEnv(environments.Layers(ROOT))
    return Path(env.str("NUKEWORKS_INSTANCE_DIR", default=str(ROOT / "instance"))).resolve()


@dataclass
class Plan:
    """Where the cluster keeps its files and which loopback ports it takes."""

    instance: Path
    balancer_port: int = DEFAULT_PORTS["balancer"]
    app_ports: tuple[int, ...] = DEFAULT_PORTS["apps"]
    postgres_port: int = DEFAULT_PORTS["postgres"]
    redis_port: int = DEFAULT_PORTS["redis"]
    stats_port: int | None = DEFAULT_STATS_PORT
    catalog: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """`<instance>/cluster/`: state, secrets, logs and the servers' data."""
        return self.instance / "cluster"

    @property
    def state_file(self) -> Path:
        return self.folder / "state.json"


# -- processes: identity by /proc ------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """Return the process's start time in clock ticks since boot, None if it is gone/zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3); the start time is field 22.
    return None if fields[0] in "ZX" else int(fields[19])


def _command_line(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def identify(name: str, kind: str, pid: int, port: int | None, log: Path) -> dict[str, Any]:
    """Return the record of a running process: what stop() needs to find it again, and only it."""
    started = _start_time(pid)
    command = _command_line(pid)
    if started is None or command is None:
        raise ClusterError(f"{name} (pid {pid}) exited right after it started: see {log}")
    return {
        "name": name,
        "kind": kind,
        "pid": pid,
        "start_time": started,
        "cmdline": command,
        "port": port,
        "log": str(log),
    }


def still_ours(record: dict[str, Any]) -> bool:
    """Return True while the recorded pid is the process we started (same start, same program)."""
    pid = record["pid"]
    if _start_time(pid) != record["start_time"]:
        return False
    command = _command_line(pid) or ""
    return STOPS[record["kind"]][2] in command


def _reap(pid: int) -> None:
    # In --foreground mode the servers are our children: collect their exit status.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(record: dict[str, Any]) -> str:
    """Stop one recorded process (graceful, then SIGKILL to its session); return what happened."""
    if not still_ours(record):
        return "was not running"
    sig, timeout, _ = STOPS[record["kind"]]
    pid = record["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not still_ours(record):
            return f"stopped ({sig.name})"
        time.sleep(0.05)
    # Each server was started in a session of its own: its process group holds it and its
    # workers, nothing else.
    if still_ours(record):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return f"killed (SIGKILL after {timeout:g} s)"


# -- state.json --------------------------------------------------------------------------------


def read_state(plan: Plan) -> dict[str, Any] | None:
    """Return the recorded state of this instance folder's cluster, or None."""
    try:
        return json.loads(plan.state_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"{plan.state_file} is unreadable ({exc}): remove it by hand") from exc


def _write_state(plan: Plan, state: dict[str, Any]) -> None:
    temporary = plan.state_file.with_name("state.json.tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(temporary, plan.state_file)


def running(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the recorded processes of `state` that are still running."""
    if not state:
        return []
    return [record for record in state.get("processes", []) if still_ours(record)]


@contextlib.contextmanager
def _exclusive(plan: Plan) -> Iterator[None]:
    """Hold the cluster folder's lock: one start or stop at a time."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    try:
        with locks.flocked(plan.folder / "lock", exclusive=True, timeout=0):
            yield
    except locks.LockTimeout:
        raise ClusterError(
            f"another `make cluster` or `make cluster-stop` is working on {plan.folder}"
        ) from None


# -- secrets -----------------------------------------------------------------------------------


def load_secrets(plan: Plan) -> dict[str, str]:
    """Return the cluster's passwords, generated once into cluster/secrets.json (mode 0600)."""
    path = plan.folder / "secrets.json"
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        values = {}
    wanted = {"postgres": secrets.token_urlsafe(24), PG_ROLE: secrets.token_urlsafe(24)}
    if all(key in values for key in wanted):
        return values
    values = {**wanted, **values}
    temporary = path.with_name("secrets.json.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(values) + "\n")
    os.replace(temporary, path)
    return values


# -- ports -------------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    """Return True when nothing listens on 127.0.0.1:`port` and we may bind it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_ports(plan: Plan, say: Callable[[str], None]) -> None:
    """Fail on a taken public port; move PostgreSQL or Redis to a free one (with a note)."""
    public = {"CLUSTER_PORT (HAProxy)": [plan.balancer_port]}
    public["CLUSTER_APP_PORTS (app servers)"] = list(plan.app_ports)
    if plan.stats_port:
        public["CLUSTER_STATS_PORT (HAProxy's statistics)"] = [plan.stats_port]
    wanted = [p for ports in public.values() for p in ports]
    if len(set(wanted)) != len(wanted):
        raise ClusterError(f"the same port is given twice: {wanted}")
    for variable, ports in public.items():
        for port in ports:
            if not port_free(port):
                raise ClusterError(
                    f"127.0.0.1:{port} is already in use (another program?): choose another "
                    f"with {variable.split()[0]}=..."
                )
    for attribute, variable in (("postgres_port", "CLUSTER_POSTGRES_PORT"),
                                ("redis_port", "CLUSTER_REDIS_PORT")):  # fmt: skip
        port = getattr(plan, attribute)
        if port in wanted or not port_free(port):
            chosen = services.free_port()
            say(f"note: 127.0.0.1:{port} is taken; {variable.split('_')[1].lower()} "
                f"uses {chosen} (set {variable} to choose)")  # fmt: skip
            setattr(plan, attribute, chosen)
        wanted.append(getattr(plan, attribute))


# -- starting ----------------------------------------------------------------------------------


def _child_env(plan: Plan, redis_url: str) -> dict[str, str]:
    """The environment of every NukeWorks process of the cluster."""
    return {
        **os.environ,
        # pytest-django exports its own settings module; the cluster runs the product's.
        "DJANGO_SETTINGS_MODULE": "nukeworks.settings",
        "NUKEWORKS_INSTANCE_DIR": str(plan.instance),
        "REDIS_URL": redis_url,
        # How many app servers serve the site (the deployment checks read it).
        "NUKEWORKS_SERVERS": str(len(plan.app_ports)),
        **plan.extra_env,
    }


def manage(
    env: dict[str, str], *args: str, show: bool = False, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `manage.py args` with the cluster's environment; `show` passes its output through."""
    command = [sys.executable, str(ROOT / "manage.py"), *args]
    output = {} if show else {"capture_output": True}
    return subprocess.run(command, cwd=ROOT, env=env, text=True, input=stdin, **output)


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # A session of its own: survives the terminal (the cluster detaches) and stop() can
        # SIGKILL its whole process group (gunicorn's workers) as a last resort.
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def _get(url: str, timeout: float = 3.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _wait_ready(name: str, proc: subprocess.Popen, base: str, log: Path, timeout: float) -> str:
    """Wait until the app server answers /readyz 200; return the health path HAProxy uses."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{name} exited with {proc.returncode}: see {log}")
        try:
            status, _, body = _get(base + "/readyz")
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200:
                return "/readyz"
            if status == 404:  # a NukeWorks without /readyz: liveness is all there is
                return "/healthz"
            last = f"/readyz answered {status}: {body[:300].decode(errors='replace')}"
        time.sleep(0.2)
    raise ClusterError(f"{name} was not ready within {timeout:g} s ({last}); see {log}")


def backend_status(stats_url: str, backend: str = "app") -> dict[str, str]:
    """Return each server's status ("UP", "DOWN"…) in `backend` on HAProxy's statistics page."""
    status, _, body = _get(stats_url + ";csv")
    if status != 200:
        return {}
    lines = body.decode().lstrip("# ").splitlines()
    header = lines[0].split(",")
    found = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
            found[row["svname"]] = row.get("status", "")
    return found


def wait_backends_up(stats_url: str, backend: str, count: int, timeout: float = 20.0) -> None:
    """Wait until HAProxy's health checks see `count` servers of `backend` up."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = backend_status(stats_url, backend)
        if len(seen) == count and all(s.startswith("UP") for s in seen.values()):
            return
        time.sleep(0.2)
    raise ClusterError(f"HAProxy does not see every server of {backend} up: {seen}")


def _prepare_postgres(pg_url: str, port: int, password: str) -> str:
    """Create the role and the database the catalog entry uses (once); return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg_url, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PG_ROLE,)).fetchone():
            # The role's password follows secrets.json (the role may predate it).
            statement = "ALTER ROLE {} WITH LOGIN CREATEDB PASSWORD {}"
        else:
            # CREATEDB: new databases from seed packages are created on this server.
            statement = "CREATE ROLE {} WITH LOGIN CREATEDB PASSWORD {}"
        conn.execute(sql.SQL(statement).format(sql.Identifier(PG_ROLE), sql.Literal(password)))
        exists = "SELECT 1 FROM pg_database WHERE datname = %s"
        if not conn.execute(exists, (PG_DATABASE,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'").format(
                    sql.Identifier(PG_DATABASE), sql.Identifier(PG_ROLE)
                )
            )
    return f"postgresql://{PG_ROLE}:{password}@127.0.0.1:{port}/{PG_DATABASE}"


def register_catalog(env: dict[str, str], url: str, port: int, say: Callable[[str], None]) -> bool:
    """Register the PostgreSQL database as the catalog entry `cluster`, migrate it, give it an
    admin (whose password ensureadmin prints once). Return False when the project has no
    `manage.py catalog` yet."""
    helped = manage(env, "help", "catalog")
    if helped.returncode and "Unknown command" not in helped.stderr:
        detail = environments.mask_credentials(helped.stderr.strip()[-1500:])
        raise ClusterError(f"manage.py does not run in the cluster's environment: {detail}")
    if helped.returncode:
        say(
            "note: this NukeWorks has no `manage.py catalog` yet: the PostgreSQL database "
            f"{PG_DATABASE} exists on 127.0.0.1:{port} but is not in the catalog"
        )
        return False
    # The URL goes through standard input: a command line is readable by every user in
    # `ps`. --replace: each start registers the entry again, so it follows a changed port.
    add = ("catalog", "add", CATALOG_LABEL, "-", "--replace")
    done = manage(env, *add, "--display-name", CATALOG_DISPLAY_NAME, stdin=url + "\n")
    if done.returncode:
        detail = environments.mask_credentials((done.stderr or done.stdout).strip())
        raise ClusterError(f"manage.py catalog add {CATALOG_LABEL} failed: {detail}")
    say(f"catalog: {CATALOG_LABEL!r} ({CATALOG_DISPLAY_NAME}) is {PG_DATABASE} on 127.0.0.1:{port}")
    done = manage(env, "migrate", "--database", CATALOG_LABEL, "--noinput", "-v", "0")
    if done.returncode:
        detail = environments.mask_credentials((done.stderr or done.stdout).strip()[-1500:])
        raise ClusterError(f"manage.py migrate --database {CATALOG_LABEL} failed: {detail}")
    # Its output goes to the terminal: the first admin's password is shown this once.
    if manage(env, "ensureadmin", "--database", CATALOG_LABEL, show=True).returncode:
        raise ClusterError(f"manage.py ensureadmin --database {CATALOG_LABEL} failed")
    return True


class _Starter:
    """Starts the servers one by one, recording each in state.json as soon as it runs."""

    def __init__(self, plan: Plan, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.say = say
        self.state: dict[str, Any] = {
            "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "instance": str(plan.instance),
            "processes": [],
            "urls": {},
        }

    def record(self, name: str, kind: str, pid: int, port: int | None, log: Path) -> None:
        self.state["processes"].append(identify(name, kind, pid, port, log))
        _write_state(self.plan, self.state)

    def service(self, kind: str, service: services.Service) -> None:
        self.record(kind, kind, service.pid(), service.port, service.log)

    def run(self) -> dict[str, Any]:
        plan, say = self.plan, self.say
        _choose_ports(plan, say)
        services.ensure_packages()
        passwords = load_secrets(plan)
        say(f"PostgreSQL: 127.0.0.1:{plan.postgres_port}, data in {plan.folder / 'postgres'}")
        pg = services.start_postgres(
            plan.folder / "postgres", plan.postgres_port, password=passwords["postgres"]
        )
        self.service("postgresql", pg)
        say(f"Redis: 127.0.0.1:{plan.redis_port}, data in {plan.folder / 'redis'}")
        redis = services.start_redis(plan.folder / "redis", plan.redis_port)
        self.service("redis", redis)
        env = _child_env(plan, redis.extra["url"])
        self.state["redis_url"] = redis.extra["url"]
        try:
            url = _prepare_postgres(pg.extra["url"], pg.port, passwords[PG_ROLE])
        except Exception as exc:  # psycopg's errors; the message may hold the URL
            hint = (
                f" (secrets.json no longer matches {plan.folder / 'postgres'}: remove that "
                "folder to start its data afresh)"
                if "password authentication failed" in str(exc)
                else ""
            )
            message = environments.mask_credentials(str(exc)).strip()
            raise ClusterError(f"PostgreSQL: {message}{hint}") from None
        if not plan.catalog:
            self.state["catalog"] = "skipped"
        else:
            registered = register_catalog(env, url, pg.port, say)
            self.state["catalog"] = "registered" if registered else "absent"

        # The queue's worker beside the first app server: it shares that server's metrics
        # folder, as nukeworks/serve.sh shares one between gunicorn and the worker.
        metrics = [plan.folder / f"app{n}" / "metrics" for n in range(1, len(plan.app_ports) + 1)]
        for folder in metrics:
            prepared = subprocess.run(
                [sys.executable, "-m", "metrics.multiprocess"], cwd=ROOT, capture_output=True,
                env={**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, text=True,
            )  # fmt: skip
            if prepared.returncode:
                raise ClusterError(f"metrics folder {folder}: {prepared.stderr[-500:]}")
        worker_log = plan.folder / "worker" / "run_huey.log"
        worker = _spawn(
            [sys.executable, str(ROOT / "manage.py"), "run_huey"],
            {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics[0]), "NUKEWORKS_SERVER_NAME": "worker"},
            worker_log,
        )
        self.record("worker", "worker", worker.pid, None, worker_log)

        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        apps = []
        for number, (port, folder) in enumerate(zip(plan.app_ports, metrics, strict=True), 1):
            log = plan.folder / f"app{number}" / "gunicorn.log"
            proc = _spawn(
                [gunicorn, "-c", str(ROOT / "nukeworks" / "gunicorn.conf.py")],
                # Two servers on one host: each names itself in the shared worker tables.
                {**env, "NUKEWORKS_BIND": f"127.0.0.1:{port}",
                 "NUKEWORKS_SERVER_NAME": f"app{number}",
                 "PROMETHEUS_MULTIPROC_DIR": str(folder)},
                log,
            )  # fmt: skip
            self.record(f"app{number}", "app", proc.pid, port, log)
            apps.append((f"app{number}", port, proc, log))
        health = "/readyz"
        for name, port, proc, log in apps:
            health = _wait_ready(name, proc, f"http://127.0.0.1:{port}", log, timeout=60)
        # A worker that died after the servers' first answers would fail /readyz everywhere.
        if worker.poll() is not None:
            raise ClusterError(f"the queue worker exited with {worker.returncode}: {worker_log}")
        say(f"app servers: {', '.join(f'127.0.0.1:{port}' for _, port, _, _ in apps)}")

        haproxy = services.start_haproxy(
            plan.folder / "haproxy",
            [(name, port) for name, port, _, _ in apps],
            plan.balancer_port,
            health_path=health,
            stats_port=plan.stats_port,
        )
        self.service("haproxy", haproxy)
        self.state["health_path"] = health
        urls = {"balancer": f"http://127.0.0.1:{plan.balancer_port}/"}
        urls.update({name: f"http://127.0.0.1:{port}/" for name, port, _, _ in apps})
        if plan.stats_port:
            urls["stats"] = haproxy.extra["stats"]
            # The balancer is ready once its health checks have seen every server up.
            wait_backends_up(urls["stats"], "app", len(apps))
        self.state["urls"] = urls
        _write_state(plan, self.state)
        return self.state


def start(plan: Plan, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the cluster recorded in `plan.folder`; return its state (pids, ports, URLs).

    Raise AlreadyRunning when this instance folder's cluster runs already, ClusterError when
    something could not start (whatever had started is stopped again).
    """
    with _exclusive(plan):
        previous = read_state(plan)
        alive = running(previous)
        if alive:
            names = ", ".join(f"{r['name']} (pid {r['pid']})" for r in alive)
            raise AlreadyRunning(
                f"a cluster is already running from {plan.folder} (started "
                f"{previous.get('started_at', '?')}): {names}. Stop it with `make cluster-stop`."
            )
        if previous is not None:
            say(f"note: {plan.state_file} recorded a cluster that no longer runs; starting anew")
            plan.state_file.unlink()
        starter = _Starter(plan, say)
        try:
            return starter.run()
        except BaseException:
            say("starting failed: stopping what was started")
            _stop_recorded(plan, starter.state, say)
            raise


def _stop_recorded(plan: Plan, state: dict[str, Any], say: Callable[[str], None]) -> list[str]:
    records = state.get("processes", [])
    ordered = sorted(records, key=lambda r: STOP_ORDER.index(r["kind"]))
    report = []
    for record in ordered:
        outcome = stop_process(record)
        line = f"{record['name']} (pid {record['pid']}): {outcome}"
        report.append(line)
        say(f"  {line}")
    with contextlib.suppress(FileNotFoundError):
        plan.state_file.unlink()
    return report


def stop(plan: Plan, say: Callable[[str], None] = print) -> list[str]:
    """Stop exactly the processes recorded in state.json; keep every data folder.

    Return one line per recorded process (stopped, killed, or was not running).
    """
    with _exclusive(plan):
        state = read_state(plan)
        if state is None:
            say(f"no cluster recorded in {plan.folder}: nothing to stop")
            return []
        say(f"stopping the cluster started {state.get('started_at', '?')}:")
        report = _stop_recorded(plan, state, say)
        say(f"data kept in {plan.folder} (postgres/, redis/): the next `make cluster` reuses it")
        return report


def describe(state: dict[str, Any], *, foreground: bool = False) -> str:
    """Return the text printed after a start: where to go, what runs, how to stop it."""
    urls = state["urls"]
    processes = {r["name"]: r for r in state["processes"]}
    lines = [
        "",
        f"NukeWorks cluster is running{'' if foreground else ' (detached)'}. "
        f"Open {urls['balancer']}",
        f"  HAProxy        {urls['balancer']}  round robin over "
        + ", ".join(n for n in urls if n.startswith("app"))
        + f", health checks on {state.get('health_path', '/readyz')};"
        " X-Served-By names the server",
    ]
    for name, url in urls.items():
        if name.startswith("app"):
            lines.append(f"  {name:14s} {url}  gunicorn pid {processes[name]['pid']}")
    if "stats" in urls:
        lines.append(f"  HAProxy stats  {urls['stats']}")
    lines += [
        f"  PostgreSQL     127.0.0.1:{processes['postgresql']['port']}"
        + {
            "registered": f"  catalog entry {CATALOG_LABEL!r} (database {PG_DATABASE})",
            "absent": f"  database {PG_DATABASE}, not in the catalog (no `manage.py catalog`)",
            "skipped": f"  database {PG_DATABASE} (--no-catalog)",
        }.get(state.get("catalog", ""), ""),
        f"  Redis          {state.get('redis_url', '')}  (REDIS_URL of every server)",
        f"  queue worker   manage.py run_huey, pid {processes['worker']['pid']}",
        f"state, logs and data: {Path(state['instance']) / 'cluster'}",
        "Ctrl+C stops it" if foreground else "Stop it with `make cluster-stop`",
    ]
    lines[-1] += " (data folders are kept)."
    return "\n".join(lines)


def wait_in_foreground(plan: Plan, state: dict[str, Any], say: Callable[[str], None]) -> int:
    """Keep the cluster attached: Ctrl+C or SIGTERM stops it; return the exit status."""
    stopping: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    say("(foreground: Ctrl+C or SIGTERM stops everything)")
    gone: set[str] = set()
    while not stopping:
        for record in state["processes"]:
            _reap(record["pid"])
            if record["name"] not in gone and not still_ours(record):
                gone.add(record["name"])
                say(f"{record['name']} (pid {record['pid']}) exited: see {record['log']}")
        time.sleep(0.5)
    stop(plan, say)
    return 130 if stopping[0] == signal.SIGINT else 143
