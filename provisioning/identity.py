"""The device id: the Pi's serial number where there is one, else a UUID kept on the card."""

from __future__ import annotations

import re
import uuid

from provisioning.paths import Paths
from provisioning.system import Effects

SERIAL_RE = re.compile(r"^Serial\s*:\s*([0-9a-fA-F]+)\s*$", re.MULTILINE)


def pi_serial(paths: Paths) -> str | None:
    try:
        text = paths.cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    match = SERIAL_RE.search(text)
    if not match or not match.group(1).strip("0"):
        return None  # absent, or all zeros (some boards and VMs)
    return match.group(1).lower().lstrip("0").rjust(8, "0")


def device_id(paths: Paths, effects: Effects) -> tuple[str, str]:
    """(device id, where it came from). A generated UUID is written once and reused."""
    serial = pi_serial(paths)
    if serial:
        return f"pi-{serial}", "Pi serial number"
    try:
        kept = paths.device_id_file.read_text().strip()
    except OSError:
        kept = ""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", kept):
        return kept, str(paths.device_id_file)
    new = str(uuid.uuid4())
    effects.mkdir(paths.state_dir, 0o750)
    effects.write(paths.device_id_file, (new + "\n").encode())
    return new, f"new UUID, kept in {paths.device_id_file}"
