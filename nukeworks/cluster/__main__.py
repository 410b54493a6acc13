"""`python -m nukeworks.cluster packages`: install PostgreSQL, Redis and HAProxy when missing."""

from __future__ import annotations

import argparse
import sys

from nukeworks.cluster import services


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m nukeworks.cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("packages", help="install Debian's postgresql, redis-server and haproxy")
    args = parser.parse_args(argv)
    if args.command == "packages":
        try:
            services.ensure_packages()
        except services.ServiceError as exc:
            print(f"{exc}: the several-servers tests will be skipped", file=sys.stderr)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
