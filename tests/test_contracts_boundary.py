"""device.contracts is a closed door: it needs nothing else from device/, and the old homes of
what moved into it hand out the very same objects.

``make lint`` checks the import rules statically (import-linter, pyproject.toml); these tests
check what Python really loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = sorted(
    f"device.contracts.{p.stem}"
    for p in (REPO / "device" / "contracts").glob("*.py")
    if p.stem != "__init__"
)


def _loaded_after(imports: list[str]) -> list[str]:
    """The modules a fresh interpreter has loaded after importing ``imports``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_the_contracts_load_no_other_part_of_the_agent():
    assert "device.contracts.protocol" in CONTRACTS and "device.contracts.manifest" in CONTRACTS
    loaded = _loaded_after(CONTRACTS)
    agent = [m for m in loaded if m.startswith("device.") and not m.startswith("device.contracts")]
    assert agent == []


def test_hashing_and_durable_files_need_only_the_standard_library():
    # The model build scripts run in a venv with TensorFlow but without pydantic.
    loaded = _loaded_after(["device.contracts.hashing", "device.contracts.durable"])
    assert not [m for m in loaded if m.split(".")[0] in ("pydantic", "cryptography", "numpy")]


def test_the_old_module_names_hand_out_the_shared_objects():
    from device import __version__, errors, exitcodes, oserrors, plugins, protocol
    from device.contracts import commandline, manifest, pack, release, taxa
    from device.contracts import errors as shared_errors
    from device.contracts import exitcodes as shared_exitcodes
    from device.contracts import oserrors as shared_oserrors
    from device.contracts import protocol as shared_protocol
    from device.vision import pack as vision_pack
    from device.vision import taxa as vision_taxa

    for name in shared_protocol.__all__:
        assert getattr(protocol, name) is getattr(shared_protocol, name), name
    assert errors.UserError is shared_errors.UserError and errors.guarded is shared_errors.guarded
    assert exitcodes.Exit is shared_exitcodes.Exit
    assert oserrors.user_error_from_os is shared_oserrors.user_error_from_os
    assert plugins.OneLineParser is commandline.OneLineParser
    assert vision_pack.PackError is manifest.PackError
    assert vision_pack.write_pack is pack.write_pack
    assert vision_taxa.Taxon is taxa.Taxon
    assert __version__ == release.VERSION


def test_the_engine_serves_every_resize_mode_the_format_allows():
    # The list lives in the manifest model; what must hold is that each mode it admits means
    # something of its own to the preprocessing (as the engine calls it), not that a mode
    # added to the format silently acts as another one.
    import numpy as np
    from PIL import Image

    from device.contracts.manifest import RESIZE_MODES
    from device.vision.preprocess import crop_resize, full_box

    ramp = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (200, 1))
    frame = Image.fromarray(np.stack([ramp] * 3, axis=-1))  # 400x200, dark to light
    target = (100, 100)
    fed = {
        mode: crop_resize(
            frame, full_box(frame.size, mode, target), target, pad=mode == "pad"
        ).tobytes()
        for mode in RESIZE_MODES
    }
    assert len(set(fed.values())) == len(RESIZE_MODES)
