"""``make bench``: every benchmark, one line per figure: ``bench <name> <value> <unit>``.

Figures that depend on this shared, noisy machine are also given as ratios measured in the
same run, which is what the targets are stated in.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "tests.bench.bench_core",
    "tests.bench.bench_vision",
    "tests.bench.bench_uplink",
    "tests.bench.bench_link",
    "tests.bench.bench_cloud",
    "tests.bench.bench_review",
    "tests.bench.bench_training",
    "tests.bench.bench_import",
    "tests.bench.bench_predict",
    "tests.bench.bench_ingest_scale",
    "tests.bench.bench_power",
]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    wanted = argv or MODULES
    failures = 0
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that room has no benchmark yet
            raise
        try:
            module.main()
        except Exception:  # report and carry on: one broken bench must not hide the others
            failures += 1
            print(f"bench-error {name}", file=sys.stderr)
            traceback.print_exc()
        sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
