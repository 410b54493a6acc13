"""`make test-stress`: the whole suite three times in a row while every core is kept busy.

A test that passes on an idle machine may still race: a descriptor closed a moment after the
client has its answer, a worker thread that is not scheduled for a while, a fixed sleep that
is too short. CI runs on a 2-core machine that may have other work on it, so run this before
submitting. The load is one busy process per core (`LOAD_COMMAND`, at normal priority, as
other work would be); it is stopped when the runs end, however they end.

Usage: `.venv/bin/python tests/stress.py [--runs N] [pytest arguments…]`. Exits non-zero
when any run had a failure or error, and closes with each run's time and summary.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# One of these per core: a shell loop that never sleeps and needs nothing installed.
LOAD_COMMAND = "while :; do :; done"
SUMMARY = re.compile(r"^=+ (.* in [\d.]+s.*) =+$")


def start_load(cores: int) -> list[subprocess.Popen]:
    """Start one busy process per core, each in its own process group."""
    return [
        subprocess.Popen(["sh", "-c", LOAD_COMMAND], start_new_session=True) for _ in range(cores)
    ]


def stop_load(load: list[subprocess.Popen]) -> None:
    """Stop the busy processes started by `start_load`."""
    for proc in load:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_suite(pytest_args: list[str]) -> tuple[int, float, str]:
    """Run pytest once, echoing its output; return its exit code, seconds and summary line."""
    started = time.monotonic()
    summary = ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        match = SUMMARY.match(line.strip())
        if match:
            summary = match.group(1)
    code = proc.wait()
    return code, time.monotonic() - started, summary


def main() -> int:
    """Run the suite `--runs` times under load; return 0 only if every run passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many runs (default 3)")
    args, pytest_args = parser.parse_known_args()
    cores = os.cpu_count() or 1
    load_note = f"{cores} x `sh -c '{LOAD_COMMAND}'` (one per core, normal priority)"
    print(f"stress: load = {load_note}", flush=True)
    results: list[tuple[int, float, str]] = []
    load = start_load(cores)
    try:
        for run in range(1, args.runs + 1):
            print(f"\nstress: run {run} of {args.runs}", flush=True)
            results.append(run_suite(pytest_args))
    finally:
        stop_load(load)
    print(f"\nstress: {args.runs} runs of the whole suite under load = {load_note}")
    for run, (code, seconds, summary) in enumerate(results, 1):
        verdict = "passed" if code == 0 else f"FAILED (pytest exit {code})"
        print(f"stress: run {run}: {verdict} in {seconds:.0f} s: {summary}")
    failed = sum(code != 0 for code, _, _ in results)
    print(f"stress: {failed} of {args.runs} runs failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
