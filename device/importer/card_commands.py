"""``camtrap card mount|unmount``: a trail camera's card, mounted read-only for import.

``camtrap-card@.service`` runs these as root when a USB card reader's FAT or exFAT partition
comes and goes (the udev rule debian ships starts it); a technician can run them by hand, e.g.
for a card image. ``mount`` puts the card under /run/camtrap/cards/<device name>, where the
agent notices it and imports it; the card is never written.

Exit status: 0 mounted (or unmounted, or nothing was mounted there); 2 a usage problem (the
device is mounted already, the directory holds no card); 65 not a FAT/exFAT card; 66 no such
device or it cannot be read; 69 the mount itself failed (no driver, a failing card); 73 the
mount point cannot be made or is in use.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from device.config import Settings
from device.errors import shown_path
from device.importer.card_mount import DEFAULT_CARDS_DIR, mount_card, unmount_card


def register(sub: argparse._SubParsersAction) -> None:
    card = sub.add_parser("card", help="mount or unmount a trail camera's card, read-only")
    actions = card.add_subparsers(metavar="ACTION", required=True)
    mount = actions.add_parser("mount", help="mount a FAT/exFAT card read-only (needs root)")
    mount.add_argument("device", type=Path, help="the card's block device or an image file")
    mount.add_argument(
        "--at",
        type=Path,
        default=None,
        help=f"mount point (default {DEFAULT_CARDS_DIR}/<device name>)",
    )
    mount.set_defaults(func=cmd_card_mount)
    unmount = actions.add_parser("unmount", help="unmount a card mounted by card mount")
    unmount.add_argument("directory", type=Path, help="where the card is mounted")
    unmount.set_defaults(func=cmd_card_unmount)


def default_mount_point(device: Path) -> Path:
    return DEFAULT_CARDS_DIR / device.name


# The settings loader is never called: mounting must work while the config is being fixed.
def cmd_card_mount(args: argparse.Namespace, load: Callable[[], Settings]) -> int:
    at = args.at if args.at is not None else default_mount_point(args.device)
    card = mount_card(args.device, at)
    how = "" if card.driver == "kernel" else f" through {card.driver}"
    print(
        f"mounted {shown_path(card.device)} ({card.filesystem.value}) read-only at"
        f" {shown_path(card.mount.mount_point)}{how}"
    )
    return 0


def cmd_card_unmount(args: argparse.Namespace, load: Callable[[], Settings]) -> int:
    directory: Path = args.directory
    if not unmount_card(directory):
        print(f"no card mounted at {shown_path(directory)}; nothing to do")
        return 0
    # The directories under DEFAULT_CARDS_DIR are the mount command's own; any other
    # directory was the technician's before the card and stays.
    if directory.absolute().parent == DEFAULT_CARDS_DIR:
        with suppress(OSError):
            directory.rmdir()
    print(f"unmounted {shown_path(directory)}")
    return 0
