"""/etc/camtrap/camtrap.toml as the package ships it: every line a comment, and the commented
values are the code's own defaults, so uncommenting any of them changes nothing."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from pydantic import BaseModel

from device.config import Settings, key_of, load_settings, redacted

GENERATOR = Path(__file__).resolve().parent.parent / "debian" / "tools" / "gen_conffile.py"
INSTALLED = "/usr/lib/camtrap-agent/device"


def conffile_text() -> str:
    spec = importlib.util.spec_from_file_location("gen_conffile", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(INSTALLED)


def uncommented(text: str) -> str:
    """The conffile with every ``# [section]`` and ``# key = value`` line switched on."""
    keep = []
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else None
        if body is None:
            continue
        section, key = re.match(r"\[[\w.]+\]$", body), re.match(r"\w+ = ", body)
        if section or key or body.startswith("    ") or body == "]":  # "    " and "]": arrays
            keep.append(body)
    return "\n".join(keep) + "\n"


def test_every_line_is_a_comment_or_blank():
    for line in conffile_text().splitlines():
        assert line == "" or line.startswith("#"), line


def test_uncommented_it_is_valid_config_equal_to_the_defaults(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("CAMTRAP_")]:
        monkeypatch.delenv(key)
    path = tmp_path / "camtrap.toml"
    path.write_text(uncommented(conffile_text()))
    tomllib.loads(path.read_text())  # valid TOML
    loaded = redacted(load_settings(path, require_file=True))
    defaults = redacted(Settings())
    # The one difference: the model pack path is where the package installs it.
    package_dir = str(Path(defaults["vision"]["pack"]).parent.parent)
    defaults["vision"]["pack"] = defaults["vision"]["pack"].replace(package_dir, INSTALLED)
    assert loaded == defaults


def test_every_section_and_key_of_the_settings_appears():
    text = conffile_text()
    for field_name, field in Settings.model_fields.items():
        name = key_of(field_name, field)  # [import] for the field import_
        assert f"# [{name}]" in text
        for key, sub in field.annotation.model_fields.items():
            if isinstance(sub.annotation, type) and issubclass(sub.annotation, BaseModel):
                assert f"# [{name}.{key}]" in text
            else:
                assert re.search(rf"^#\s+{key}( =|:)", text, re.M), f"{name}.{key} missing"


def test_the_default_pack_points_into_the_installed_package():
    assert f'# pack = "{INSTALLED}/models/' in conffile_text()


def test_the_conffile_renders_without_numpy(tmp_path):
    # The package build renders the conffile with Debian's python3 and the vendored pure
    # libraries only; numpy (python3-numpy) is a runtime dependency, not a build one.
    script = (
        "import sys; sys.modules['numpy'] = None; "
        f"sys.path.insert(0, {str(GENERATOR.parent.parent.parent)!r}); "
        "import importlib.util as u; "
        f"spec = u.spec_from_file_location('g', {str(GENERATOR)!r}); "
        "m = u.module_from_spec(spec); spec.loader.exec_module(m); "
        f"print(len(m.render({INSTALLED!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 1000
