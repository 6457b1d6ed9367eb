"""``make bench`` power figures: what the agent costs while idle, and per event.

- ``agent_idle_cpu_pct_always_ready`` / ``agent_idle_cpu_pct_low_power``: ``camtrap run`` as a
  subprocess (replay camera on a few generated JPEGs, gpiozero mock pins, the uplink pointed
  at a loopback port nobody listens on, so offline), left idle; the mean CPU % of one core
  from ``/proc/<pid>/stat`` deltas after a warm-up. Both agents run at the same time, so the
  two figures share one idle period (``CAMTRAP_BENCH_IDLE_S``, default 300 s).
- ``cpu_s_per_event``: one 3-frame burst through capture, vision and upload (a real mosquitto
  and a real ingest), the agent's CPU seconds over the event minus its idle CPU over the same
  time; measured on the second burst. ``cpu_s_first_event`` is the first, which would also pay
  anything done once per run.

Thread counts, RSS and which threads woke (voluntary context switches per thread) are
printed as ``#`` comment lines: they explain the figure, they are not figures.

``python -m tests.bench.bench_power`` runs it alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.bench.common import ROOT, emit
from tests.support.ports import reserve_port
from tests.support.world import write_jpegs

WARM_UP_S = 20.0
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def idle_seconds() -> float:
    return float(os.environ.get("CAMTRAP_BENCH_IDLE_S", "300"))


# -- reading a process from /proc ---------------------------------------------------------------


def _cpu_ticks(stat: str) -> int:
    # Fields after the command name (which may hold spaces) start at state; utime, stime are
    # fields 14 and 15 of the whole line.
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def process_cpu_s(pid: int) -> float:
    return _cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / TICKS


def rss_mb(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 1e6


@dataclass(frozen=True)
class ThreadSample:
    name: str
    cpu_s: float
    wakes: int  # voluntary context switches: times it blocked and was woken again


def thread_samples(pid: int) -> dict[int, ThreadSample]:
    found: dict[int, ThreadSample] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            cpu = _cpu_ticks((task / "stat").read_text()) / TICKS
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended between the listing and the read
        wakes = 0
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                wakes = int(line.split()[1])
        found[int(task.name)] = ThreadSample(name, cpu, wakes)
    return found


@dataclass
class IdleFigures:
    label: str
    cpu_pct: float
    seconds: float
    threads: int
    rss_mb: float
    wakes_per_s: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_min: dict[str, float] = field(default_factory=dict)


def thread_deltas(
    before: dict[int, ThreadSample], after: dict[int, ThreadSample], seconds: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Wake-ups per second and CPU ms per minute, by thread name, over ``seconds``."""
    wakes: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for tid, a in after.items():
        b = before.get(tid, ThreadSample(a.name, 0.0, 0))
        wakes[a.name] += a.wakes - b.wakes
        cpu[a.name] += a.cpu_s - b.cpu_s
    return (
        {n: w / seconds for n, w in wakes.most_common()},
        {n: c * 60_000 / seconds for n, c in cpu.most_common()},
    )


# -- the trap under measurement ---------------------------------------------------------------


def _closed_windows() -> str:
    """The scheduled trap idles outside its capture window (it opens in six hours): the
    camera off, as it is most of a day."""
    opens = datetime.now(UTC) + timedelta(hours=6)
    closes = opens + timedelta(hours=1)
    return f'capture_windows = ["{opens:%H:%M}-{closes:%H:%M}"]'


def trap_config(
    root: Path, profile: str, *, mqtt_port: int, detect: str = "edge", extra: str = ""
) -> Path:
    """A trap like the demo's (vision on, OTA on, MQTT uplink), on simulated hardware, offline
    unless ``mqtt_port`` has a broker."""
    frames = root / "frames"
    if not frames.is_dir():
        write_jpegs(frames, 4)
    (root / "data").mkdir(exist_ok=True)
    config = root / "camtrap.toml"
    config.write_text(
        f"""
[device]
id = "bench-{profile}"
deployment_id = "bench-dep"
[storage]
data_dir = "{root / "data"}"
fallback_dir = "{root / "fallback"}"
[camera]
backend = "replay"
replay_dir = "{frames}"
lores_size = [320, 240]
[pir]
pin_factory = "mock"
detect = "{detect}"
[power]
profile = "{profile}"
{_closed_windows() if profile == "scheduled" else ""}
[clock]
kernel_status = false
timesync_flag = "{root / "no-timesync"}"
rtc_device = "{root / "no-rtc"}"
manual_marker = "{root / "no-manual"}"
[uplink]
transport = "mqtt"
network_manager = false
link_type = "wifi"
[uplink.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
tls = false
connect_timeout_s = 3
{extra}
"""
    )
    return config


# Put in front of the agent's path: gives each Python thread its own name in the kernel
# (/proc/<pid>/task/<tid>/comm), so the wake-ups can be told apart. Python 3.11 does not name
# native threads itself; this only runs once per thread start.
THREAD_NAMES = """
import ctypes
import threading

_prctl = ctypes.CDLL(None).prctl
_bootstrap = threading.Thread._bootstrap_inner


def _named(self):
    _prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    _bootstrap(self)


threading.Thread._bootstrap_inner = _named
"""


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    names = config.parent / "thread-names"
    names.mkdir(exist_ok=True)
    (names / "sitecustomize.py").write_text(THREAD_NAMES)
    env = dict(os.environ, PYTHONPATH=f"{names}{os.pathsep}{ROOT}")
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "device.cli", "--config", str(config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_idle(
    profiles: list[str], seconds: float, warm_up_s: float = WARM_UP_S, detect: str = "edge"
) -> list[IdleFigures]:
    """Every profile's agent at once, idle for ``seconds`` after ``warm_up_s``."""
    with tempfile.TemporaryDirectory(prefix="camtrap-bench-power-") as tmp:
        procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        try:
            for profile in profiles:
                root = Path(tmp) / profile
                root.mkdir()
                config = trap_config(root, profile, mqtt_port=reserve_port(), detect=detect)
                log = root / "agent.log"
                procs.append((profile, start_agent(config, log), log))
            time.sleep(warm_up_s)
            for profile, proc, log in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{profile} agent exited: {log.read_text()[-2000:]}")
            start = time.monotonic()
            cpu0 = {p.pid: process_cpu_s(p.pid) for _, p, _ in procs}
            threads0 = {p.pid: thread_samples(p.pid) for _, p, _ in procs}
            time.sleep(seconds)
            elapsed = time.monotonic() - start
            figures = []
            for profile, proc, _ in procs:
                used = process_cpu_s(proc.pid) - cpu0[proc.pid]
                now = thread_samples(proc.pid)
                wakes, cpu = thread_deltas(threads0[proc.pid], now, elapsed)
                figures.append(
                    IdleFigures(
                        profile,
                        100.0 * used / elapsed,
                        elapsed,
                        len(now),
                        rss_mb(proc.pid),
                        wakes,
                        cpu,
                    )
                )
            return figures
        finally:
            for _, proc, _ in procs:
                stop_agent(proc)


def print_idle(figures: IdleFigures) -> None:
    name = figures.label.replace("-", "_")
    emit(f"agent_idle_cpu_pct_{name}", figures.cpu_pct, "%")
    emit(f"agent_idle_cpu_s_per_hour_{name}", figures.cpu_pct / 100 * 3600, "s")
    print(
        f"# {figures.label}: {figures.seconds:.0f} s idle, {figures.threads} threads,"
        f" RSS {figures.rss_mb:.0f} MB",
        flush=True,
    )
    for thread, rate in figures.wakes_per_s.items():
        print(
            f"#   thread {thread}: {rate:.2f} wakes/s,"
            f" {figures.cpu_ms_per_min.get(thread, 0.0):.1f} CPU ms/min",
            flush=True,
        )


# -- one event, end to end ------------------------------------------------------------------------


def agent_threads() -> dict[int, ThreadSample]:
    """Every thread of this process but the main one (the bench's own)."""
    main_tid = threading.main_thread().native_id
    return {tid: s for tid, s in thread_samples(os.getpid()).items() if tid != main_tid}


def agent_threads_cpu_s() -> float:
    return sum(sample.cpu_s for sample in agent_threads().values())


def cpu_by_thread_name(before: dict[int, ThreadSample]) -> Counter[str]:
    """CPU seconds each thread name used since ``before`` (an ``agent_threads()``)."""
    used: Counter[str] = Counter()
    for tid, sample in agent_threads().items():
        start = before.get(tid)
        used[sample.name] += sample.cpu_s - (start.cpu_s if start else 0.0)
    return used


def bench_cpu_per_event(idle_s: float = 30.0) -> None:
    """One 3-frame burst through capture, vision and upload to a real mosquitto and ingest;
    the agent runs in this process (its threads are measured, the bench's main thread is
    not) so the burst can be driven on its own mock pin."""
    from cloud_stub.broker import Broker, free_port
    from device.agent import Agent
    from device.store.db import open_readonly
    from device.store.outbox import Outbox
    from device.store.store import DB_NAME
    from tests.support.world import trap_settings

    work = Path(tempfile.mkdtemp(prefix="camtrap-bench-event-"))
    broker = Broker(work / "broker", free_port())
    broker.start()
    device = "test-trap"
    cert, key = broker.client_cert(device)
    ingest = subprocess.Popen(
        broker.ingest_command(work / "cloud", log_level="WARNING"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    agent = None
    try:
        assert ingest.stdout is not None and "ingest ready" in ingest.stdout.readline()
        write_jpegs(work / "frames", 4, width=1280, height=720)
        settings = trap_settings(
            work / "trap",
            camera={"backend": "replay", "replay_dir": work / "frames", "lores_size": (320, 240)},
            capture={"burst_frames": 3, "max_burst_frames": 3, "burst_interval_s": 0.5},
            vision={"enabled": True},
            uplink={
                "transport": "mqtt",
                "network_manager": False,
                "link_type": "wifi",
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "ca_file": broker.ca_file,
                    "cert_file": cert,
                    "key_file": key,
                },
            },
        )
        (work / "trap" / "data").mkdir(parents=True, exist_ok=True)
        exec(THREAD_NAMES, {})  # this process's threads get kernel names too (by thread:)
        agent = Agent(settings)
        agent.start()
        db_path = settings.storage.data_dir / DB_NAME

        def outbox_left() -> int:
            conn = open_readonly(db_path)
            try:
                return Outbox(conn).left()[0]
            finally:
                conn.close()

        time.sleep(WARM_UP_S)  # connected, heartbeat sent, model loaded
        idle_cpu0 = agent_threads_cpu_s()
        time.sleep(idle_s)
        idle_rate = (agent_threads_cpu_s() - idle_cpu0) / idle_s
        assert agent.pir is not None
        # A first event would also pay anything done once per run (code imported on first
        # use, say); the second is what later events cost.
        for name, bursts in (("cpu_s_first_event", 1), ("cpu_s_per_event", 2)):
            start = time.monotonic()
            threads0 = agent_threads()
            agent.pir.mock_pin().drive_high()
            deadline = start + 120
            while time.monotonic() < deadline:
                time.sleep(0.25)
                if (
                    agent.writer.stats.stored >= 3 * bursts
                    and agent.capture.is_idle()
                    and (agent.vision is None or agent.vision.wait_idle(0))
                    and outbox_left() == 0
                ):
                    break
            else:
                raise RuntimeError("the event did not reach the ingest within 120 s")
            elapsed = time.monotonic() - start
            by_thread = cpu_by_thread_name(threads0)
            used = sum(by_thread.values())
            agent.pir.mock_pin().drive_low()
            emit(name, used - idle_rate * elapsed, "s")
            print(
                f"# {name}: one 3-frame 1280x720 burst, classified and acknowledged by ingest in"
                f" {elapsed:.1f} s; agent threads {used:.2f} CPU s, idle {idle_rate * 100:.2f}%"
                f" of a core subtracted; by thread: "
                + ", ".join(f"{n} {cpu_s:.2f}" for n, cpu_s in by_thread.most_common(5)),
                flush=True,
            )
            time.sleep(settings.capture.cooldown_s + 1.0)  # the PIR low, the cooldown over
    finally:
        if agent is not None:
            agent.stop()
        ingest.terminate()
        ingest.wait(30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    # CAMTRAP_BENCH_PIR=sampled measures gpiozero's polling MotionSensor instead (the
    # "before" of docs/power.md).
    detect = os.environ.get("CAMTRAP_BENCH_PIR", "edge")
    profiles = ["always-ready", "low-power", "scheduled"]
    for figures in measure_idle(profiles, idle_seconds(), detect=detect):
        print_idle(figures)
    bench_cpu_per_event()


if __name__ == "__main__":
    main()
