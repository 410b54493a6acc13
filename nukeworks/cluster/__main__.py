"""`python -m nukeworks.cluster`: the several-servers layout on loopback (`make cluster`).

Sub-commands:
  packages   install Debian's postgresql, redis-server and haproxy when missing (`make test`)
  start      PostgreSQL, Redis, the queue worker, two app servers and HAProxy (`make cluster`);
             detaches unless --foreground
  stop       stop exactly what `start` recorded in <instance>/cluster/state.json
             (`make cluster-stop`); data folders are kept
  status     what is recorded and whether each process still runs

Ports come from the arguments, else the environment (CLUSTER_PORT, CLUSTER_APP_PORTS,
CLUSTER_POSTGRES_PORT, CLUSTER_REDIS_PORT, CLUSTER_STATS_PORT), else 8080, 8001,8002, 5433,
6380 and 8404. The instance folder is NUKEWORKS_INSTANCE_DIR (as for the servers) or
--instance-dir.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nukeworks.cluster import control, services


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ports: {text!r}") from None
    if not ports:
        raise argparse.ArgumentTypeError("at least one app server port is needed")
    return ports


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nukeworks.cluster",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("packages", help="install Debian's postgresql, redis-server and haproxy")
    commands = {
        "start": sub.add_parser("start", help="start the cluster (make cluster)"),
        "stop": sub.add_parser("stop", help="stop what start started (make cluster-stop)"),
        "status": sub.add_parser("status", help="what is recorded, and what still runs"),
    }
    for command in commands.values():
        command.add_argument(
            "--instance-dir",
            type=Path,
            help="instance folder (default: NUKEWORKS_INSTANCE_DIR, else instance/)",
        )
    start = commands["start"]
    defaults = control.DEFAULT_PORTS
    start.add_argument(
        "--port", type=int, default=_env_int("CLUSTER_PORT", defaults["balancer"]),
        help="HAProxy's port (CLUSTER_PORT, default 8080)",
    )  # fmt: skip
    start.add_argument(
        "--app-ports", type=_ports,
        default=_ports(os.environ.get("CLUSTER_APP_PORTS", "") or "8001,8002"),
        help="the app servers' ports, one server each (CLUSTER_APP_PORTS, default 8001,8002)",
    )  # fmt: skip
    start.add_argument(
        "--postgres-port", type=int,
        default=_env_int("CLUSTER_POSTGRES_PORT", defaults["postgres"]),
        help="PostgreSQL's port (CLUSTER_POSTGRES_PORT, default 5433; a free one if taken)",
    )  # fmt: skip
    start.add_argument(
        "--redis-port", type=int, default=_env_int("CLUSTER_REDIS_PORT", defaults["redis"]),
        help="Redis's port (CLUSTER_REDIS_PORT, default 6380; a free one if taken)",
    )  # fmt: skip
    start.add_argument(
        "--stats-port", type=int,
        default=_env_int("CLUSTER_STATS_PORT", control.DEFAULT_STATS_PORT),
        help="HAProxy's statistics page (CLUSTER_STATS_PORT, default 8404; 0: none)",
    )  # fmt: skip
    start.add_argument(
        "--no-catalog", action="store_true",
        help="do not register, migrate or give an admin to the PostgreSQL database",
    )  # fmt: skip
    start.add_argument(
        "--foreground", action="store_true",
        help="stay attached; Ctrl+C stops everything (default: detach)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; return the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "packages":
        try:
            services.ensure_packages()
        except services.ServiceError as exc:
            print(f"{exc}: the several-servers tests will be skipped", file=sys.stderr)
        return 0
    instance = (args.instance_dir or control.instance_dir()).resolve()
    if args.command == "status":
        return _status(control.Plan(instance))
    if args.command == "stop":
        try:
            control.stop(control.Plan(instance))
        except control.ClusterError as exc:
            print(f"make cluster-stop: {exc}", file=sys.stderr)
            return 1
        return 0
    plan = control.Plan(
        instance,
        balancer_port=args.port,
        app_ports=args.app_ports,
        postgres_port=args.postgres_port,
        redis_port=args.redis_port,
        stats_port=args.stats_port or None,
        catalog=not args.no_catalog,
    )
    try:
        state = control.start(plan)
    except control.AlreadyRunning as exc:
        print(f"make cluster: {exc}", file=sys.stderr)
        return 3
    except (control.ClusterError, services.ServiceError) as exc:
        print(f"make cluster: {exc}", file=sys.stderr)
        return 1
    print(control.describe(state, foreground=args.foreground), flush=True)
    if args.foreground:
        return control.wait_in_foreground(plan, state, print)
    return 0


def _status(plan: control.Plan) -> int:
    state = control.read_state(plan)
    if state is None:
        print(f"no cluster recorded in {plan.folder}")
        return 1
    alive = control.running(state)
    print(f"cluster started {state.get('started_at', '?')} (recorded in {plan.state_file}):")
    for record in state["processes"]:
        port = f" 127.0.0.1:{record['port']}" if record.get("port") else ""
        word = "running" if record in alive else "NOT running"
        print(f"  {record['name']:10s} pid {record['pid']:<8d}{port:16s} {word}")
    return 0 if len(alive) == len(state["processes"]) else 1


if __name__ == "__main__":
    sys.exit(main())
