"""``camtrap``: the agent and its tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from device import __version__
from device.config import ConfigError, Settings, load_settings, redacted, to_toml
from device.plugins import register_optional

EXIT_CONFIG = 2
EXIT_RESTART = 75  # EX_TEMPFAIL: stopped on request, start again
# Rooms that add their own subcommands; each module has ``register(subparsers)``.
COMMAND_MODULES = ("device.vision.commands", "device.uplink.commands", "device.ota.commands")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_CONFIG

    def settings_loader() -> Settings:
        return load_settings(args.config)

    try:
        return int(args.func(args, settings_loader) or 0)
    except ConfigError as exc:
        print(f"camtrap: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camtrap", description=__doc__)
    parser.add_argument("--version", action="version", version=f"camtrap {__version__}")
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

    sim = sub.add_parser("simulate", help="run the real agent on simulated PIR and camera")
    sim.add_argument("--triggers", type=int, default=5)
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
    from device.store.db import SchemaTooNew

    settings = load()
    _setup_logs(settings)
    try:
        agent = Agent(settings)
        agent.run_forever()
    except SchemaTooNew as exc:
        print(f"camtrap: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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
    load_settings(args.file, require_file=True)
    print(f"{args.file}: ok")
    return 0


def cmd_status(args: argparse.Namespace, load: Loader) -> int:
    from device.status import collect, render

    report = collect(load())
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def cmd_simulate(args: argparse.Namespace, load: Loader) -> int:
    from device.simulate import SimulationPlan, as_json, render, run_simulation

    settings = load()
    # The summary owns stdout; logs go to stderr, quiet unless asked for.
    _setup_logs(settings, "INFO" if args.verbose else "WARNING", sys.stderr)
    if args.triggers < 0:
        print("camtrap: --triggers must be zero or more", file=sys.stderr)
        return EXIT_CONFIG
    result = run_simulation(
        settings, SimulationPlan(triggers=args.triggers, images=args.images, data_dir=args.data_dir)
    )
    print(as_json(result) if args.json else render(result))
    # A PIR edge the agent did not see is a real failure; failed frames are data, reported.
    return 0 if result.triggers_seen >= result.triggers_sent else 1


if __name__ == "__main__":
    sys.exit(main())
