"""The docs a technician reads stay in step with the code."""

from __future__ import annotations

from pathlib import Path

from device.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_lists_every_key_as_the_code_has_it():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == reference_markdown(), (
        "regenerate: camtrap config reference > docs/configuration.md"
    )


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first = readme.index("make demo")
    assert first < readme.index("make test") < readme.index("## What is where")
