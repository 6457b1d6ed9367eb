"""The prediction endpoint over HTTP on loopback: milliseconds per one-image request, and
requests per second with a few clients at once (inference is serialised by the engine's lock,
so this is about the one interpreter's rate plus the HTTP and JSON around it)."""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tests.bench.common import emit, median

PATH = "/v1/projects/bench/locations/local/endpoints/trap:predict"
WARMUP = 3
SERIAL_REQUESTS = 30
CLIENTS = 4
CONCURRENT_REQUESTS = 60


def _request(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body)
    with urllib.request.urlopen(request, timeout=60) as response:
        assert json.loads(response.read())["predictions"][0]["ids"]


def main() -> None:
    from cloud_stub.predict.engine import PredictEngine
    from cloud_stub.predict.server import Limits, PredictServer
    from device.contracts.pack import DEFAULT_PACK_DIR
    from tests.support.ports import reserve_port

    logging.getLogger("camtrap-cloud.predict").setLevel(logging.WARNING)
    jpeg = (DEFAULT_PACK_DIR / "golden" / "chelsea.jpg").read_bytes()
    body = json.dumps({"instances": [{"content": base64.b64encode(jpeg).decode()}]}).encode()
    engine = PredictEngine(DEFAULT_PACK_DIR)
    server = PredictServer(engine, "127.0.0.1", reserve_port(), None, Limits())
    server.start()
    url = f"http://127.0.0.1:{server.port}{PATH}"
    try:
        for _ in range(WARMUP):
            _request(url, body)
        times = []
        for _ in range(SERIAL_REQUESTS):
            started = time.perf_counter()
            _request(url, body)
            times.append((time.perf_counter() - started) * 1000)
        emit("predict_ms", median(times), "ms")
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda _: _request(url, body), range(CONCURRENT_REQUESTS)))
        emit("predict_rps", CONCURRENT_REQUESTS / (time.perf_counter() - started), "req/s")
    finally:
        server.stop()
        engine.close()


if __name__ == "__main__":
    main()
