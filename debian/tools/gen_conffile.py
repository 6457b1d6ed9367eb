"""Write /etc/camtrap/camtrap.toml for the Debian package: every key, every line commented.

The agent's defaults live in ``device/config.py``; a conffile that set them would freeze
today's defaults on every upgraded trap. So each key appears commented out with its default
(from the same Settings model that ``camtrap config reference`` documents) and its meaning.
Uncommenting a ``# key = value`` line yields valid TOML that sets that key to its default.

Run with Debian's python3: ``gen_conffile.py --code SRC --vendor VENDOR --installed DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HEADER = """\
# camtrap agent configuration (conffile of the camtrap-agent package).
#
# Every line is a comment: the agent's built-in defaults apply until you uncomment a key.
# Values shown are those defaults. `camtrap config show` prints the effective settings,
# `camtrap config check FILE` validates a file, and `camtrap config reference` documents
# every key. Any key can also come from the environment: [capture] burst_frames is
# CAMTRAP_CAPTURE__BURST_FRAMES. Unknown keys are errors.
"""


def _value_line(name: str, value: Any) -> list[str]:
    import tomli_w

    text = tomli_w.dumps({name: value}).rstrip("\n")
    return text.splitlines()


def _section_lines(dotted: str, model: Any, values: dict[str, Any]) -> list[str]:
    from pydantic import BaseModel

    lines = ["", f"# [{dotted}]"]
    doc = type(model).__dict__.get("__doc__")  # the section's own docstring, not inherited
    if doc:
        lines.append("#   " + doc.strip().splitlines()[0])
    nested: list[tuple[str, Any]] = []
    for name, info in type(model).model_fields.items():
        value = values[name]
        if isinstance(getattr(model, name), BaseModel):
            nested.append((name, getattr(model, name)))
            continue
        meaning = (info.description or "").strip()
        if meaning:
            lines.append(f"## {meaning}")
        if value is None:
            lines.append(f"#   {name}: unset by default")
        else:
            lines += [f"# {line}" for line in _value_line(name, value)]
    for name, sub in nested:
        lines += _section_lines(f"{dotted}.{name}", sub, values[name])
    return lines


def render(installed_package_dir: str) -> str:
    """The conffile text; paths inside the build tree become the installed package dir."""
    import device
    from device.config import Settings, redacted

    for key in [k for k in os.environ if k.startswith("CAMTRAP_")]:
        del os.environ[key]  # the build environment must not leak into the defaults
    settings = Settings()
    values = redacted(settings)
    source_dir = str(Path(device.__file__).resolve().parent)

    def relocate(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: relocate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [relocate(v) for v in value]
        if isinstance(value, str) and value.startswith(source_dir):
            return installed_package_dir + value[len(source_dir) :]
        return value

    values = relocate(values)
    lines = HEADER.splitlines()
    for name, info in type(settings).model_fields.items():
        key = info.serialization_alias or name  # the file says [import] for import_
        lines += _section_lines(key, getattr(settings, name), values[key])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, required=True, help="source tree holding device/")
    parser.add_argument("--vendor", type=Path, action="append", default=[])
    parser.add_argument("--installed", default="/usr/lib/camtrap-agent/device")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path[:0] = [str(args.code.resolve())] + [str(v.resolve()) for v in args.vendor]
    text = render(args.installed)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
