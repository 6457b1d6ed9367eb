"""``camtrap-provision``: turn a Raspberry Pi into an identified, located, tested camera trap.

Interactive by default; ``--non-interactive`` with ``--answers FILE`` and/or ``--set key=value``
for imaging many cards; ``--dry-run`` prints every change and makes none. See
docs/field-guide.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from device import __version__
from device.errors import guarded, one_line
from device.oserrors import user_error_from_os
from device.plugins import OneLineParser, add_debug_flag, seconds, without_debug_flag
from provisioning.paths import Paths
from provisioning.system import Effects, ProvisionError, Runner, SubprocessRunner

EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_SELFTEST, EXIT_UNSYNCED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="camtrap-provision", description=__doc__)
    p.add_argument("--version", action="version", version=f"camtrap-provision {__version__}")
    add_debug_flag(p)
    p.add_argument("--root", type=Path, default=Path("/"), help="prefix for every path (tests)")
    p.add_argument("--answers", type=Path, help="answers file (TOML), see the field guide")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one answer, e.g. deployment.latitude=-1.29 (repeatable)",
    )
    p.add_argument(
        "-n",
        "--non-interactive",
        action="store_true",
        help="never prompt; missing answers are an error",
    )
    p.add_argument("--dry-run", action="store_true", help="print every change, make none")
    p.add_argument(
        "--print-commands",
        action="store_true",
        help="write files but only print nmcli/systemctl/date commands (demo, a relocated --root)",
    )
    p.add_argument("--time", help="set the clock if unsynchronised: '2025-06-01 14:30' (local)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="no network here: skip the broker check (uploads wait)",
    )
    p.add_argument(
        "--pir-timeout",
        type=seconds(0.0, 3_600.0),
        default=30.0,
        help="seconds to wait for a PIR trigger in the self-test; 0 skips it",
    )
    p.add_argument(
        "--accept-failures",
        action="store_true",
        help="write the config and start even if self-test checks fail",
    )
    p.add_argument("--service-user", default="camtrap", help="owner of the key and secrets")
    p.add_argument(
        "--export-csr",
        type=Path,
        metavar="DIR",
        help="write this trap's CSR to DIR (a USB stick) and stop",
    )
    p.add_argument(
        "--retrieve",
        action="store_true",
        help="end the deployment, run a final sync, list what is not uploaded",
    )
    p.add_argument(
        "--sync-timeout",
        type=seconds(0.1, 86_400.0),
        default=600.0,
        help="longest final sync (--retrieve), s",
    )
    return p


def main(
    argv: list[str] | None = None,
    *,
    runner: Runner | None = None,
    hook: Callable[[str], None] | None = None,
    out: TextIO | None = None,
    sync_argv: list[str] | None = None,
) -> int:
    """The console script: every error is one line on stderr with the exit code of
    docs/field-guide.md ("Exit codes"); ``--debug`` or ``CAMTRAP_DEBUG=1`` adds the traceback."""

    def run(args: list[str] | None) -> int:
        return _main(args, runner=runner, hook=hook, out=out, sync_argv=sync_argv)

    return guarded("camtrap-provision", run, argv)


def _main(
    argv: list[str] | None,
    *,
    runner: Runner | None,
    hook: Callable[[str], None] | None,
    out: TextIO | None,
    sync_argv: list[str] | None,
) -> int:
    args = build_parser().parse_args(without_debug_flag(argv))
    out = out or sys.stdout
    paths = Paths(args.root)
    fx = Effects(
        runner or SubprocessRunner(),
        dry_run=args.dry_run,
        out=out,
        service_user=args.service_user,
        hook=hook,
        print_commands=args.print_commands,
    )
    config_before = _snapshot(paths.config)
    step = ["start"]

    def track(name: str) -> None:
        step[0] = name
        if hook:
            hook(name)

    try:
        if not args.dry_run and os.geteuid() != 0 and not paths.relocated:
            raise ProvisionError("run as root (sudo camtrap-provision): it configures the system")
        if args.retrieve:
            from provisioning.retrieve import retrieve

            return retrieve(paths, fx, sync_argv, args.sync_timeout)
        if args.export_csr:
            return _export_csr(paths, fx, args.export_csr)
        return _provision(args, paths, fx, track, out)
    except KeyboardInterrupt:
        _err(f"\ninterrupted during '{step[0]}'. {_config_state(paths, config_before)}")
        return EXIT_INTERRUPTED
    except ProvisionError as exc:
        from provisioning.flow import SelfTestFailed

        _err(f"camtrap-provision: {one_line(str(exc))}. {_config_state(paths, config_before)}")
        return EXIT_SELFTEST if isinstance(exc, SelfTestFailed) else EXIT_FAULT
    except ValueError as exc:
        _err(f"camtrap-provision: {one_line(str(exc))}. {_config_state(paths, config_before)}")
        return EXIT_USAGE
    except OSError as exc:
        # A file the technician named (answers, --export-csr DIR) or one under --root.
        error = user_error_from_os(exc)
        if error is None:
            raise
        _err(f"camtrap-provision: {error.message}. {_config_state(paths, config_before)}")
        return error.code


def _provision(args, paths: Paths, fx: Effects, track, out: TextIO) -> int:
    from provisioning.flow import Options, Provisioner
    from provisioning.prompt import Aborted, Prompter
    from provisioning.questions import load_answers_file, parse_set

    given = load_answers_file(args.answers) if args.answers else {}
    given.update(parse_set(args.set))
    interactive = not args.non_interactive and sys.stdin.isatty()
    if not args.non_interactive and not interactive:
        fx.say("(stdin is not a terminal: running non-interactively)")
    options = Options(
        paths=paths,
        given=given,
        interactive=interactive,
        dry_run=args.dry_run,
        time=args.time,
        offline=args.offline,
        pir_timeout=args.pir_timeout,
        accept_failures=args.accept_failures,
    )
    prompter = Prompter(out=out) if interactive else None
    try:
        Provisioner(options, fx, prompter, track).run()
    except Aborted as exc:
        raise KeyboardInterrupt from exc
    return EXIT_OK


def _export_csr(paths: Paths, fx: Effects, directory: Path) -> int:
    from provisioning.credentials import export_csr
    from provisioning.identity import device_id

    ident, _ = device_id(paths, fx)
    csr = export_csr(paths, fx, ident, directory)
    fx.say(
        f"CSR for {ident}: {csr}\nHave the office sign it (camtrap-cloud ca sign) and bring "
        f"back ca.crt and {ident}.crt; then run camtrap-provision with "
        f"registration.method = import."
    )
    return EXIT_OK


def _snapshot(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _config_state(paths: Paths, before: bytes | None) -> str:
    now = _snapshot(paths.config)
    if now == before:
        what = "is unchanged" if before is not None else "was not created"
        return f"{paths.config} {what}."
    return f"{paths.config} was replaced whole by the new configuration."


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
