"""Run every benchmark (each in its own process), then summarize the targets as PASS/FAIL.

``make bench`` runs this; ``--smoke`` runs the few-seconds versions (CI). The exit status
is 1 if a benchmark crashed, and with ``--strict`` also if a target failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "transport",
    "client_call",
    "swissroll",
    "long_run",
    "image_draw",
    "startup",
    "scrub",
    "history_rss",
    "compare",
)


def run(name: str, smoke: bool, out: Path) -> tuple[dict[str, Any] | None, float]:
    """Run ``benchmarks/NAME.py``; return its results (None if it failed) and its seconds."""
    result = out / f"{name}.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out)]
    if smoke:
        command.append("--smoke")
    print(f"\n######## {name}{' --smoke' if smoke else ''}", flush=True)
    start = time.perf_counter()
    try:
        status = subprocess.run(command, timeout=180 if smoke else 600).returncode
    except subprocess.TimeoutExpired:
        print(f"{name}: timed out", flush=True)
        status = -1
    seconds = time.perf_counter() - start
    if status != 0 or not result.exists():
        print(f"{name}: FAILED (exit status {status})", flush=True)
        return None, seconds
    return json.loads(result.read_text()), seconds


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target fails")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")


def main() -> None:
    """Run the benchmarks and print the summary."""
    args = _common.parse_args(__doc__.splitlines()[0], extra=_flags)
    names = args.only or BENCHMARKS
    start = time.perf_counter()
    results: dict[str, dict[str, Any] | None] = {}
    times: dict[str, float] = {}
    for name in names:
        results[name], times[name] = run(name, args.smoke, args.out)
    total = time.perf_counter() - start

    rows = []
    for name in names:
        result = results[name]
        if result is None:
            rows.append(("CRASH", name, "-", "-", "the benchmark did not finish"))
            continue
        for t in result["targets"]:
            rows.append(
                (
                    "PASS" if t["pass"] else "FAIL",
                    name,
                    t["name"],
                    f"{_common.fmt(t['measured'])} {t['unit']}".strip(),
                    f"{t['op']} {_common.fmt(t['threshold'])} {t['unit']}".strip(),
                )
            )
    print(f"\n######## summary{' (smoke: tiny runs, noisy numbers)' if args.smoke else ''}")
    print(_common.table(("", "benchmark", "target", "measured", "needs"), rows))
    failed = [r for r in rows if r[0] == "FAIL"]
    crashed = [r for r in rows if r[0] == "CRASH"]
    passed = len(rows) - len(failed) - len(crashed)
    timing = ", ".join(f"{n} {times[n]:.0f} s" for n in names)
    print(
        f"\n{passed} passed, {len(failed)} failed, {len(crashed)} crashed "
        f"in {total:.0f} s ({timing})"
    )
    _common.write_results(
        args.out,
        "summary",
        {
            "smoke": args.smoke,
            "seconds": total,
            "benchmark_seconds": times,
            "targets": [
                {"benchmark": name, **t}
                for name in names
                if results[name] is not None
                for t in results[name]["targets"]  # type: ignore[index]
            ],
            "crashed": [r[1] for r in crashed],
        },
    )
    if crashed or (args.strict and failed):
        sys.exit(1)


if __name__ == "__main__":
    main()
