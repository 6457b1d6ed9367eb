"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def emit(name: str, value: float, unit: str) -> None:
    print(f"bench {name} {value:.4g} {unit}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def peak_rss_mb(module_args: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Peak RSS (MB) of ``python -m MODULE ARGS...``, as the program itself saw it."""
    with tempfile.NamedTemporaryFile(prefix="camtrap-rss-", delete=False) as handle:
        out = Path(handle.name)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.bench.peak_rss", str(out), *module_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
        text = out.read_text()
        return (int(text) / 1024 if text else float("nan")), proc.returncode
    finally:
        out.unlink(missing_ok=True)
