"""Run a module as __main__ and record this process's peak RSS (VmHWM) when it exits.

The kernel's ru_maxrss of a child also counts the parent's pages it shared between fork and
exec, so a big benchmark parent inflates it; VmHWM belongs to the exec'd program alone.
Usage: python -m tests.bench.peak_rss OUT_FILE MODULE [ARGS...]
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def _record(out: Path) -> None:
    status = Path("/proc/self/status").read_text()
    kib = int(status.split("VmHWM:")[1].split()[0])
    out.write_text(str(kib))


if __name__ == "__main__":
    out_file, module, *rest = sys.argv[1:]
    atexit.register(_record, Path(out_file))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
