"""Run every bench/bench_*.py in turn and print their figures (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    """Run each benchmark script; return non-zero if any failed."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print("no benchmarks found under bench/")
        return 1
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script), *sys.argv[1:]], cwd=HERE.parent)
        print(f"--- {script.name}: exit {result.returncode} in {time.monotonic() - started:.1f} s")
        if result.returncode:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
