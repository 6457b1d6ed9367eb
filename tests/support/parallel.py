"""How the suite is shared out over pytest-xdist workers (``-n 4 --dist loadgroup``).

Each test builds its own world (temp dirs, its own ports, claimed across processes by
tests.support.ports), so any test may run beside any other, one test at a time per worker.
Two exceptions, both about time, not correctness:

- a module fixture whose build is the cost (test_review_load's 100 000 events, seconds of CPU)
  would be built again by every worker that runs one of the module's tests, so such a module is
  one unit of work, kept on one worker;
- the longest tests (marked ``slow``) are handed out first: one started last would run alone
  while the other workers idle.

Session fixtures (the Pub/Sub emulator) start once per worker that uses them, each on its own
reserved port and temp dir. A serial run is left exactly as it was.

The module rule lives in the scheduler (``pytest_xdist_make_scheduler``) rather than in
``xdist_group`` marks: on pytest 9.2 xdist's loadgroup no longer sees marks added at
collection (pytest-dev/pytest-xdist#1386), and a module can be told from the test id alone.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

# Test modules whose module-scoped fixture costs more than their tests do.
ONE_WORKER_MODULES = frozenset(
    {"test_review_load.py", "test_training_synthetic.py", "test_training_refusal.py"}
)


def scope_of(nodeid: str) -> str | None:
    """The unit of work ``nodeid`` must share with others (its module), or None if it is alone."""
    module = nodeid.split("::", 1)[0]
    return module if PurePosixPath(module).name in ONE_WORKER_MODULES else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist controller: loadgroup, with ONE_WORKER_MODULES each one unit of work."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleAwareScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid) or super()._split_scope(nodeid)

    return ModuleAwareScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: keep the serial order
        return
    # Stable: the slow ones first, the rest in collection order. Every worker sorts alike, as
    # xdist requires the same collection on each.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
