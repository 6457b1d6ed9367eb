"""Copying selected images: retries with backoff, skips what is there, refuses bad places."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloud_stub.cli import main as cloud_main
from cloud_stub.handoff.copying import CopyPolicy, copy_image, join
from cloud_stub.handoff.records import HandoffError
from tests.support.cloud_data import unwritable_dir, write_coco


class FlakyServer:
    """Serves files from a dict; each path answers 503 for its first ``failures`` requests."""

    def __init__(self, files: dict[str, bytes], failures: int) -> None:
        self.files, self.failures = files, failures
        self.requests: Counter = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests[self.path] += 1
                if self.path not in server.files:
                    self.send_error(404)
                elif server.requests[self.path] <= server.failures:
                    self.send_error(503)
                else:
                    body = server.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    server = FlakyServer({"/a/cat.jpg": b"\xff\xd8cat", "/a/dog.jpg": b"\xff\xd8dog"}, 2)
    yield server
    server.close()


def test_download_retries_with_growing_backoff_then_succeeds(flaky, tmp_path):
    waits: list[float] = []
    target = tmp_path / "x" / "cat.jpg"

    result = copy_image(
        f"{flaky.url}/a/cat.jpg",
        str(target),
        CopyPolicy(attempts=4, backoff_s=0.1),
        sleep=waits.append,
    )

    assert result.status == "copied" and result.attempts == 3
    assert waits == [0.1, 0.2]
    assert target.read_bytes() == b"\xff\xd8cat"
    assert flaky.requests["/a/cat.jpg"] == 3


def test_gives_up_after_the_last_attempt_and_leaves_no_partial_file(flaky, tmp_path):
    target = tmp_path / "cat.jpg"

    result = copy_image(
        f"{flaky.url}/a/cat.jpg",
        str(target),
        CopyPolicy(attempts=2, backoff_s=0),
        sleep=lambda _: None,
    )

    assert result.status == "failed" and "503" in result.error
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_image_is_not_retried(flaky, tmp_path):
    result = copy_image(
        f"{flaky.url}/a/none.jpg",
        str(tmp_path / "n.jpg"),
        CopyPolicy(attempts=4, backoff_s=0),
        sleep=lambda _: None,
    )

    assert result.status == "failed" and "404" in result.error
    assert flaky.requests["/a/none.jpg"] == 1


def test_files_already_at_the_destination_are_not_fetched(flaky, tmp_path):
    target = tmp_path / "dog.jpg"
    target.write_bytes(b"already here")

    result = copy_image(f"{flaky.url}/a/dog.jpg", str(target))

    assert result.status == "skipped"
    assert flaky.requests["/a/dog.jpg"] == 0
    assert target.read_bytes() == b"already here"


def test_file_names_cannot_climb_out_of_the_destination(tmp_path):
    with pytest.raises(HandoffError, match="leave the destination"):
        join(str(tmp_path / "dest"), "../../etc/passwd")


def test_pipeline_copies_over_http_through_failures(tmp_path, capsys):
    data = write_coco(
        tmp_path / "c.json",
        annotations=300,
        seed=4,
        species=3,
        small_classes=0,
        multi_label_images=0,
    )
    files = {f"/wcs/{img['file_name']}": img["id"].encode() for img in data["images"]}
    server = FlakyServer(files, failures=1)
    try:
        code = cloud_main(
            [
                "handoff",
                "--out",
                str(tmp_path / "out"),
                "--coco",
                str(tmp_path / "c.json"),
                "--url-prefix",
                f"{server.url}/wcs",
                "--min-per-class",
                "5",
                "--max-per-class",
                "8",
                "--backoff",
                "0.01",
            ]
        )
    finally:
        server.close()

    printed = capsys.readouterr().out
    assert code == 0, printed
    copied = [line for line in (tmp_path / "out" / "automl_import.csv").read_text().splitlines()]
    assert len(copied) == 3 * 8
    assert "copies: copied 24" in printed
    for line in copied:
        assert Path(line.split(",")[0]).is_file()
    assert all(n == 2 for n in server.requests.values())  # one 503, one success each


def test_unwritable_destination_is_a_clear_error(tmp_path, capsys):
    write_coco(tmp_path / "c.json", annotations=200, seed=2)
    with unwritable_dir(tmp_path / "locked") as locked:
        code = cloud_main(
            [
                "handoff",
                "--out",
                str(tmp_path / "out"),
                "--coco",
                str(tmp_path / "c.json"),
                "--dest",
                str(locked / "images"),
                "--min-per-class",
                "1",
            ]
        )

    err = capsys.readouterr().err
    assert code == 1
    assert "not writable" in err and "Traceback" not in err
