"""Parallel workers keep to their own worlds: no port is handed to two processes at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ports
from tests.support.ports import CLAIMS, REGISTRY, PortClaims, reserve_port

REPO = Path(__file__).resolve().parent.parent
# Another process, as an xdist worker is: it reserves ports through the same claims file,
# reports them, and keeps them until told to exit.
WORKER = """
import json, sys
from tests.support.ports import reserve_port
print(json.dumps([reserve_port() for _ in range(int(sys.argv[1]))]), flush=True)
sys.stdin.read()
"""


def _worker(count: int) -> tuple[subprocess.Popen[str], set[int]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, set(json.loads(proc.stdout.readline()))


def test_a_port_another_process_reserved_is_never_handed_out_here():
    proc, theirs = _worker(200)
    try:
        assert len(theirs) == 200
        assert all(not CLAIMS.claim(port) for port in theirs)  # theirs while they live
        mine = {reserve_port() for _ in range(200)}
        assert len(mine) == 200 and not mine & theirs
    finally:
        proc.communicate("")
    # The kernel let go of their claims with the process: the ports are free to claim again.
    assert all(CLAIMS.claim(port) for port in theirs)
    CLAIMS.release(theirs)


def test_a_port_is_claimed_while_reserved_and_let_go_when_the_test_ends(tmp_path):
    claims = PortClaims(tmp_path / "ports.lock")
    port = reserve_port()
    assert CLAIMS.held(port) and REGISTRY.reserved(port)
    assert claims.claim(port)  # record locks never conflict within one process
    claims.release({port})
    REGISTRY.end_test()  # what the guard does after every test
    assert not CLAIMS.held(port) and not REGISTRY.reserved(port)


def test_a_port_reserved_here_or_claimed_elsewhere_is_passed_over(monkeypatch):
    mine = reserve_port()
    proc, (theirs,) = _worker(1)
    try:
        fresh = ports._kernel_offer()
        # As if the kernel offered both taken ports again before a free one.
        offers = iter([mine, theirs, mine, fresh])
        monkeypatch.setattr(ports, "_kernel_offer", lambda: next(offers))
        assert reserve_port() == fresh
    finally:
        proc.communicate("")
