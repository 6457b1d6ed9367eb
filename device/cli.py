"""``camtrap``: the agent and its tools."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from device import __version__
from device.config import ConfigError, Settings, load_settings, redacted, to_toml
from device.energy import add_arguments as add_energy_arguments
from device.errors import UserError, guarded
from device.exitcodes import Exit
from device.oserrors import user_error_from_os
from device.plugins import (
    OneLineParser,
    add_debug_flag,
    register_optional,
    without_debug_flag,
)

EXIT_CONFIG = 2
EXIT_RESTART = 75  # EX_TEMPFAIL: stopped on request, start again
# `simulate --triggers`: each trigger takes over a second (burst, cooldown, a new scene), so
# this is about four hours of simulation; more is a typo, not a plan.
MAX_SIM_TRIGGERS = 10_000
# Rooms that add their own subcommands; each module has ``register(subparsers)``.
COMMAND_MODULES = (
    "device.vision.commands",
    "device.uplink.commands",
    "device.ota.commands",
    "device.importer.commands",
    "device.importer.card_commands",
)


def main(argv: list[str] | None = None) -> int:
    """The console script: every error is one line on stderr and an exit code (docs/agent.md,
    "Exit codes"); ``--debug`` or ``CAMTRAP_DEBUG=1`` adds the traceback."""
    return guarded("camtrap", _main, argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(without_debug_flag(argv))
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_CONFIG

    def settings_loader() -> Settings:
        return load_settings(args.config)

    try:
        return int(args.func(args, settings_loader) or 0)
    except ConfigError as exc:
        raise UserError(f"config error: {exc}", Exit.USAGE) from exc
    except OSError as exc:
        # A path the user gave that cannot be read or written; one that names no file is a bug.
        error = user_error_from_os(exc)
        if error is None:
            raise
        raise error from exc


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="camtrap", description=__doc__)
    parser.add_argument("--version", action="version", version=f"camtrap {__version__}")
    add_debug_flag(parser)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: $CAMTRAP_CONFIG or /etc/camtrap/camtrap.toml)",
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent (the systemd service's entry point)")
    run.set_defaults(func=cmd_run)

    config = sub.add_parser("config", help="show or check configuration")
    config_sub = config.add_subparsers(metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print the effective config, secrets masked")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_config_show)
    reference = config_sub.add_parser("reference", help="every key, as Markdown")
    reference.set_defaults(func=cmd_config_reference)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_config_check)

    status = sub.add_parser("status", help="what the trap holds (safe while the agent runs)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    energy = sub.add_parser(
        "energy", help="Wh per day by activity and the days the battery lasts (docs/energy.md)"
    )
    add_energy_arguments(energy)
    energy.set_defaults(func=cmd_energy)

    sim = sub.add_parser("simulate", help="run the real agent on simulated PIR and camera")
    sim.add_argument(
        "--triggers", type=int, default=5, help=f"PIR edges to send (0-{MAX_SIM_TRIGGERS})"
    )
    sim.add_argument(
        "--images",
        type=Path,
        default=None,
        help="replay JPEGs from this directory instead of synthetic scenes",
    )
    sim.add_argument("--data-dir", type=Path, default=Path("camtrap-sim"))
    sim.add_argument("--json", action="store_true")
    sim.add_argument(
        "-v", "--verbose", action="store_true", help="log every stored frame (to stderr)"
    )
    sim.set_defaults(func=cmd_simulate)

    register_optional(sub, COMMAND_MODULES)
    return parser


Loader = Callable[[], Settings]


def _setup_logs(settings: Settings, level: str | None = None, stream=None) -> None:
    from device.logs import setup_logging

    setup_logging(level or settings.log.level, settings.log.format, stream)


def cmd_run(args: argparse.Namespace, load: Loader) -> int:
    from device.agent import Agent
    from device.hardware import HardwareUnavailable
    from device.store.db import SchemaTooNew
    from device.store.health import inspect

    settings = load()
    _setup_logs(settings)
    data_dir = settings.storage.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        health = inspect(data_dir)
        raise UserError(health.message(), health.exit_code)
    # A missing data dir at start is a card that is not mounted (the package's own
    # /var/lib/camtrap is made by systemd): refuse, so `systemctl status` shows it at once, and
    # let the unit retry until the card is there. A card lost while running is different: the
    # agent then captures into the RAM fallback and takes the card back when it returns.
    if not data_dir.exists():
        health = inspect(data_dir)
        raise UserError(health.message(), health.exit_code)
    try:
        agent = Agent(settings)
        agent.run_forever()
    except SchemaTooNew as exc:
        print(f"camtrap: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HardwareUnavailable as exc:
        # One log line for the journal, one line on stderr, exit 69; the unit restarts on 69
        # on purpose (debian/camtrap-agent.service says why).
        logging.getLogger("camtrap.agent").error("hardware unavailable: %s", exc)
        raise UserError(f"hardware unavailable: {exc}", Exit.UNAVAILABLE) from exc
    # The unit restarts the service on a non-zero exit: that is how restart-agent works.
    return EXIT_RESTART if agent.restart_requested else 0


def cmd_config_show(args: argparse.Namespace, load: Loader) -> int:
    data = redacted(load())
    print(json.dumps(data, indent=2) if args.json else to_toml(data), end="\n" if args.json else "")
    return 0


def cmd_config_reference(args: argparse.Namespace, load: Loader) -> int:
    from device.config import reference_markdown

    print(reference_markdown(), end="")
    return 0


def cmd_config_check(args: argparse.Namespace, load: Loader) -> int:
    from device.config import read_toml

    load_settings(args.file, require_file=True)
    if not read_toml(args.file):
        # Blank or comments only: valid, and worth saying so nobody thinks it was read wrong.
        print(f"{args.file}: empty: every key at its default")
    else:
        print(f"{args.file}: ok")
    return 0


def cmd_status(args: argparse.Namespace, load: Loader) -> int:
    from device.status import collect, render

    report = collect(load())
    print(json.dumps(report, indent=2) if args.json else render(report))
    code = int(report["exit_code"])
    if code:
        # The report above still shows what could be read; this line says what is wrong.
        why = report.get("exit_message") or report["store"]["message"]
        print(f"camtrap status: {why}", file=sys.stderr)
    return code


def cmd_energy(args: argparse.Namespace, load: Loader) -> int:
    from device.energy import cmd_energy as energy

    return energy(args, load())


def _check_images_dir(path: Path) -> None:
    """``simulate --images``: a directory holding at least one JPEG, else a UserError."""
    from device.hardware.camera_replay import list_jpegs

    if not path.exists():
        raise UserError(f"--images {path}: no such directory", Exit.NO_INPUT)
    if not path.is_dir():
        raise UserError(f"--images {path}: not a directory of JPEG files", Exit.NO_INPUT)
    try:
        found = list_jpegs(path)
    except OSError as exc:
        raise UserError(f"--images {path}: cannot list it ({exc.strerror})", Exit.NO_INPUT) from exc
    if not found:
        raise UserError(f"--images {path}: no .jpg/.jpeg files in it", Exit.DATA_ERROR)


def cmd_simulate(args: argparse.Namespace, load: Loader) -> int:
    from device.simulate import SimulationPlan, as_json, render, run_simulation

    settings = load()
    # The summary owns stdout; logs go to stderr, quiet unless asked for.
    _setup_logs(settings, "INFO" if args.verbose else "WARNING", sys.stderr)
    if not 0 <= args.triggers <= MAX_SIM_TRIGGERS:
        raise UserError(
            f"--triggers {args.triggers}: must be between 0 and {MAX_SIM_TRIGGERS}", Exit.USAGE
        )
    if args.images is not None:
        _check_images_dir(args.images)
    # A data dir that is a file, read-only or unreadable raises UserError with its exit code.
    result = run_simulation(
        settings, SimulationPlan(triggers=args.triggers, images=args.images, data_dir=args.data_dir)
    )
    print(as_json(result) if args.json else render(result))
    # A PIR edge the agent did not see is a real failure; failed frames are data, reported.
    return 0 if result.triggers_seen >= result.triggers_sent else 1


if __name__ == "__main__":
    sys.exit(main())
