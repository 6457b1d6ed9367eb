"""A fresh Debian 12 machine builds and tests everything from the project's own files.

`.ci/fresh-root` proves it for real (a clean clone in a new debootstrap root, `.ci/run`);
these checks keep the reasons it passes from quietly coming undone: every build tool is
installed by the target that uses it, apt waits for another apt instead of failing, and the
test run says why it skipped what it skipped.
"""

from __future__ import annotations

import ast
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text()


def make_variable(name: str) -> set[str]:
    """The words of ``NAME := ...`` in the Makefile, as make itself expands it."""
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "-f", "-", "print"],
        input=MAKEFILE + f"\nprint:\n\t@echo $({name})\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def python_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_make_deb_installs_what_the_conffile_generator_imports():
    # gen_conffile.py runs under Debian's python3 during the package build; what it imports
    # beyond the stdlib and the vendored wheels must be a Debian package `make deb` installs.
    imports = python_imports(ROOT / "debian" / "tools" / "gen_conffile.py")
    assert "tomli_w" in imports
    assert "python3-tomli-w" in make_variable("APT_DEB")


def test_build_depends_lists_every_build_tool_make_deb_installs():
    control = (ROOT / "debian" / "control").read_text()
    build_depends = control.split("Build-Depends:", 1)[1].split("Standards-Version", 1)[0]
    listed = {re.split(r"[\s:(]", d.strip())[0] for d in build_depends.split(",") if d.strip()}
    # python3-packaging: the conffile generator imports device.config, which reads the pack
    # manifest's versions with packaging.version (device/contracts/versions.py).
    for package in ("dh-python", "python3-pip", "python3-tomli-w", "python3-packaging"):
        assert package in listed, f"{package} missing from Build-Depends"
        assert package in make_variable("APT_DEB"), f"make deb does not install {package}"


def test_the_browser_tests_driver_library_is_installed_by_make_test():
    # Playwright's bundled node links libatomic.so.1, which a minimal Debian 12 lacks.
    assert {"chromium", "libatomic1", "mosquitto"} <= make_variable("APT_TEST")


def test_every_apt_get_waits_for_the_dpkg_lock():
    scripts = [
        ROOT / "Makefile",
        *sorted((ROOT / "debian" / "tools").iterdir()),
        ROOT / ".ci" / "fresh-root",
    ]
    for script in scripts:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            code = re.sub(r'"[^"]*"', '""', line.split("#", 1)[0])  # not inside messages
            if re.search(r"\bapt-get\b.*\b(install|update|purge)\b", code) and "chroot" not in code:
                assert "Lock::Timeout" in code or "APT_GET" in code, f"{script.name}:{n}: {line}"
    assert "DPkg::Lock::Timeout=600" in make_variable("APT_GET")


def test_the_test_run_says_why_each_skipped_test_was_skipped():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-rs" in options["addopts"].split()


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme.split("##", 2)[1]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
