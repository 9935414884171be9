"""The benchmarks run (tiny sizes) so they cannot rot; their figures are judged by `make bench`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.timeout(290)  # every benchmark, tiny: about 90 s here, more on a busy machine
def test_smoke_benchmarks_run_to_the_end() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for table in ("ingest", "client call cost", "swissroll", "long run"):
        assert table in result.stdout, f"no {table!r} table in:\n{result.stdout[-3000:]}"
