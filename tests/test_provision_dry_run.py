"""``--dry-run`` and ``--print-commands`` never claim a step was done that was not.

A step that did not run says "would ...". The claims checked are the ones a real run prints
(tests/test_provision_flow.py shows them): enrolment, Wi-Fi added, clock set, service started,
deployment sent or started, config written.
"""

from __future__ import annotations

import re

import pytest

from tests.support.provisioning import HandWaver

pytest_plugins = ["tests.support.broker", "tests.support.provisioning"]
pytestmark = pytest.mark.timeout(180)

# What a real run says when it did something; none may appear for a step that was skipped.
ENROLLED = re.compile(r"\benrolled\b|(?<!would )signed by the fleet CA")
SERVICE_STARTED = re.compile(r"enabled and \(re\)started")
WIFI_DONE = re.compile(r"\((added|updated)\)")
CLOCK_SET = re.compile(r"clock set to|clock source is now")
DEPLOYMENT_DONE = re.compile(r"\bsent \S+ to the registry|deployment \S+ starts now")
CONFIG_WRITTEN = re.compile(r"(?<!would be )\bwritten$")


def claims(out: str, *patterns: re.Pattern[str]) -> list[str]:
    return [line for line in out.splitlines() for p in patterns if p.search(line)]


def test_dry_run_says_would_for_every_step_and_claims_none(world):
    run = world.provision(None, "--dry-run", "--time", "2025-06-01 14:30")
    assert run.code == 0, run.err
    past = claims(
        run.out, ENROLLED, SERVICE_STARTED, WIFI_DONE, CLOCK_SET, DEPLOYMENT_DONE, CONFIG_WRITTEN
    )
    assert past == [], run.out
    assert f"would enrol with the registry at {world.url}" in run.out
    assert "would add Wi-Fi network ranger-station" in run.out
    assert "would set the clock to 2025-06-01 11:30:00 UTC" in run.out
    assert f"{world.config} would be written" in run.out
    assert "would send 1 deployment record(s) to the registry" in run.out
    assert "would start now" in run.out
    assert "would enable and (re)start camtrap-agent.service (not done: dry run)" in run.out
    assert "Summary (dry run: nothing was changed" in run.out
    assert sorted(p.name for p in world.root.iterdir()) == ["proc"]  # and indeed nothing was


def test_print_commands_says_would_for_the_commands_it_only_printed(world, pins):
    with HandWaver(pins, 17):
        run = world.provision(None, "--print-commands", "--time", "2025-06-01 14:30")
    assert run.code == 0, run.err
    assert run.runner.calls == []
    # Files are written and the registry really enrolled the trap: those may say so.
    assert "enrolled:" in run.out and world.config.exists()
    # Commands were only printed: no claim that they took effect.
    assert claims(run.out, SERVICE_STARTED, WIFI_DONE, CLOCK_SET) == [], run.out
    assert "would add Wi-Fi network ranger-station" in run.out
    assert "would set the clock to 2025-06-01 11:30:00 UTC" in run.out
    assert (
        "would enable and (re)start camtrap-agent.service (not done: --print-commands)" in run.out
    )


def test_a_real_run_still_says_what_it_did(world, pins):
    with HandWaver(pins, 17):
        run = world.provision(None, "--time", "2025-06-01 14:30")
    assert run.code == 0, run.err
    assert "enrolled:" in run.out and "signed by the fleet CA" in run.out
    assert "camtrap-agent.service enabled and (re)started" in run.out
    assert "ranger-station (added)" in run.out
    assert "clock set to 2025-06-01 11:30:00 UTC" in run.out
    assert "would " not in run.out
