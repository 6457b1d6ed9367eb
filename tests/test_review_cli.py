"""``camtrap-cloud users`` and ``camtrap-cloud serve`` as an operator runs them."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.browser import default_specs, ingest_specs, serve

CLI = str(Path(sys.executable).with_name("camtrap-cloud"))


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_users_are_added_listed_and_weak_passwords_refused(tmp_path):
    added = run(
        "users",
        "--root",
        str(tmp_path),
        "add",
        "rita",
        "--role",
        "reviewer",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert added.returncode == 0, added.stderr
    weak = run("users", "--root", str(tmp_path), "add", "bob", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "at least" in weak.stderr
    listed = run("users", "--root", str(tmp_path), "list")
    assert listed.stdout.split() == ["rita", "reviewer"]


def test_serve_wants_an_explicit_transport_choice_and_an_ingest_store(tmp_path):
    no_mode = run("serve", "--root", str(tmp_path))
    assert no_mode.returncode == 2 and "--insecure-http" in no_mode.stderr
    no_store = run("serve", "--root", str(tmp_path), "--insecure-http", "--port", "0")
    assert no_store.returncode == 1 and "no ingest database" in no_store.stderr


def test_serve_prints_a_url_and_a_demo_login_that_works_over_http(tmp_path):
    ingest_specs(tmp_path, default_specs()).close()
    with serve(tmp_path, "--demo-login") as server:
        login_line = next(line for line in server.output if line.startswith("demo login:"))
        password = re.search(r"password (\S+)", login_line).group(1)
        assert any("insecure-http" in line for line in server.output)  # the warning
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{server.url}/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = {"username": "demo", "password": password, "csrf_token": token}
        answer = opener.open(f"{server.url}/login", urllib.parse.urlencode(form).encode())
        assert answer.url == f"{server.url}/captures"
        assert "red fox" in answer.read().decode()
    assert server.process.returncode == 0
