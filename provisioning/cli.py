"""``camtrap-provision``: entry point.

The provisioning workflow itself (identity, credentials, Wi-Fi, clock, self-test) is built in
its own issue; until then this entry point only reports its version and says so plainly.
"""

from __future__ import annotations

import argparse
import sys

from device import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camtrap-provision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"camtrap-provision {__version__}")
    parser.parse_args(argv)
    print("camtrap-provision: the provisioning workflow is not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
