"""``camtrap-cloud predict``: the trap's own engine answering Vertex AI-format online
prediction requests over HTTP, with its token, its limits and its per-instance errors."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_stub.predict.engine import PredictEngine
from cloud_stub.predict.server import Limits, PredictServer
from device.contracts.pack import DEFAULT_PACK_DIR
from tests.support.ports import reserve_port
from tests.support.world import jpeg_bytes

CHELSEA = DEFAULT_PACK_DIR / "golden" / "chelsea.jpg"
PATH = "/v1/projects/demo/locations/local/endpoints/trap:predict"
TOKEN = "s3cret-token-for-the-tests-only"
MAX_INSTANCES = 4
MAX_BYTES = 400_000
CAT_KEY = "mammalia;carnivora;felidae;felis;catus"

pytestmark = pytest.mark.skipif(
    not (DEFAULT_PACK_DIR / "manifest.json").exists(), reason="default pack not built"
)


def _content(data: bytes) -> dict[str, str]:
    return {"content": base64.b64encode(data).decode()}


def _post(
    port: int, body: Any, token: str | None = TOKEN, path: str = PATH, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def engine() -> Iterator[PredictEngine]:
    engine = PredictEngine(DEFAULT_PACK_DIR)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine: PredictEngine) -> Iterator[PredictServer]:
    served = PredictServer(
        engine, "127.0.0.1", reserve_port(), TOKEN, Limits(MAX_INSTANCES, MAX_BYTES)
    )
    served.start()
    yield served
    served.stop()


def test_a_vertex_request_is_answered_with_the_trap_verdict_beside_the_labels(server):
    status, answer = _post(server.port, {"instances": [_content(CHELSEA.read_bytes())]})
    assert status == 200
    assert answer["deployedModelId"] == "efficientnet-lite0-imagenet@1.0.0"
    [one] = answer["predictions"]
    assert len(one["ids"]) == len(one["displayNames"]) == len(one["confidences"]) > 0
    assert one["confidences"] == sorted(one["confidences"], reverse=True)
    assert all(isinstance(i, str) and i.isdigit() for i in one["ids"])
    assert {"tabby", "tiger cat", "Egyptian cat"} <= set(one["displayNames"])
    assert one["observationType"] == "animal" and one["blank"] is False
    assert one["taxonomy"] == CAT_KEY


def test_the_answer_is_what_camtrap_classify_says_of_the_same_image(server, tmp_path):
    (tmp_path / "camtrap.toml").write_text("")  # the trap's defaults, whatever /etc holds
    run = subprocess.run(
        [sys.executable, "-m", "device.cli", "classify", "--json", str(CHELSEA)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CAMTRAP_CONFIG": str(tmp_path / "camtrap.toml")},
    )
    trap = json.loads(run.stdout.splitlines()[-1])
    _, answer = _post(server.port, {"instances": [_content(CHELSEA.read_bytes())]})
    [one] = answer["predictions"]
    # The trap lists its top 5; the endpoint's first 5 are the same labels and scores.
    assert [t["label"] for t in trap["top"]] == one["displayNames"][: len(trap["top"])]
    assert [t["score"] for t in trap["top"]] == one["confidences"][: len(trap["top"])]
    assert (one["observationType"], one["blank"], one["blankScore"], one["confidence"]) == (
        trap["observation_type"],
        trap["is_blank"],
        trap["blank_score"],
        trap["confidence"],
    )
    assert (one["scientificName"], one["taxonomy"]) == (trap["scientific_name"], trap["taxonomy"])


def test_confidence_threshold_and_max_predictions_cut_the_label_list(server):
    instances = [_content(CHELSEA.read_bytes())]
    _, full = _post(server.port, {"instances": instances, "parameters": {"maxPredictions": 20}})
    everything = full["predictions"][0]
    cut = 0.1
    _, answer = _post(
        server.port, {"instances": instances, "parameters": {"confidenceThreshold": cut}}
    )
    kept = answer["predictions"][0]
    expected = [c for c in everything["confidences"] if c >= cut]
    assert kept["confidences"] == expected and 0 < len(expected) < len(everything["confidences"])
    _, answer = _post(server.port, {"instances": instances, "parameters": {"maxPredictions": 2}})
    two = answer["predictions"][0]
    assert two["displayNames"] == everything["displayNames"][:2]
    assert two["ids"] == everything["ids"][:2]


@pytest.fixture(scope="module")
def cats_only_in_gbr_pack(tmp_path_factory) -> Path:
    """The default pack with one more geofence rule: domestic cats only in the UK."""
    pack = tmp_path_factory.mktemp("pack") / "cats-gbr"
    shutil.copytree(DEFAULT_PACK_DIR, pack)
    rules = json.loads((pack / "geofence.json").read_text())
    rules[CAT_KEY] = {"allow": {"GBR": []}}
    data = json.dumps(rules).encode()
    (pack / "geofence.json").write_bytes(data)
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["files"]["geofence.json"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    (pack / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return pack


def test_the_country_parameter_geofences_the_verdict(cats_only_in_gbr_pack):
    engine = PredictEngine(cats_only_in_gbr_pack)
    served = PredictServer(engine, "127.0.0.1", reserve_port(), None, Limits())
    served.start()
    try:
        instances = [_content(CHELSEA.read_bytes())]
        answers = {}
        for country in ("GBR", "KEN"):
            status, answer = _post(
                served.port, {"instances": instances, "parameters": {"country": country}}, None
            )
            assert status == 200
            answers[country] = answer["predictions"][0]
        _, unfenced = _post(served.port, {"instances": instances}, None)
    finally:
        served.stop()
        engine.close()
    assert answers["GBR"]["taxonomy"] == CAT_KEY
    assert answers["KEN"]["taxonomy"] != CAT_KEY and answers["KEN"]["taxonLevel"] != "species"
    assert answers["KEN"]["geofence"] == {"active": True, "country": "KEN"}
    assert unfenced["predictions"][0]["geofence"]["active"] is False
    # The raw label scores are the classifier's: the geofence judges the verdict only.
    assert answers["KEN"]["displayNames"] == answers["GBR"]["displayNames"]


def test_an_unknown_country_is_refused_naming_the_parameter(server):
    status, answer = _post(
        server.port,
        {"instances": [_content(CHELSEA.read_bytes())], "parameters": {"country": "XXX"}},
    )
    assert status == 400 and "parameters.country" in answer["error"]["message"]


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token-of-the-same-size-x", "Basic " + TOKEN, f"Bearer {TOKEN}x"]
)
def test_a_request_without_the_right_bearer_token_is_401(server, header):
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{PATH}",
        data=json.dumps({"instances": [_content(CHELSEA.read_bytes())]}).encode(),
    )
    if header is not None:
        request.add_header("Authorization", header)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"


def test_a_body_over_the_limit_is_413(server):
    big = {"instances": [_content(os.urandom(MAX_BYTES))]}
    status, answer = _post(server.port, big)
    assert status == 413 and "--max-request-bytes" in answer["error"]["message"]


def test_more_instances_than_the_limit_is_400_naming_it(server):
    small = _content(jpeg_bytes(32, 24))
    status, answer = _post(server.port, {"instances": [small] * (MAX_INSTANCES + 1)})
    assert status == 400
    assert f"at most {MAX_INSTANCES} instances" in answer["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"instances": []}', b'{"instances": [{}], "parameters": 3}',
     b'{"instances": [{}], "parameters": {"confidenceThreshold": 2}}',
     b'{"instances": [{}], "parameters": {"maxPredictions": "5"}}'],
)  # fmt: skip
def test_a_malformed_request_is_400_with_its_reason(server, body):
    status, answer = _post(server.port, body)
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["message"]


def test_a_wrong_path_is_404_and_a_wrong_method_405(server):
    assert _post(server.port, {"instances": []}, path="/v1/models:predict")[0] == 404
    status, answer = _post(server.port, None, method="GET")
    assert status == 405 and "POST" in answer["error"]["message"]


def test_bad_images_get_their_own_errors_and_the_good_ones_are_answered(server):
    good = CHELSEA.read_bytes()
    instances = [
        _content(good),
        {"content": "this is not base64!"},
        _content(b"GIF89a not a jpeg at all"),
        _content(good[: len(good) // 3]),
    ]
    status, answer = _post(server.port, {"instances": instances})
    assert status == 200
    first, *bad = answer["predictions"]
    assert first["observationType"] == "animal"
    messages = [slot["error"]["message"] for slot in bad]
    assert messages[0] == "instance 1: content is not base64"
    assert messages[1] == "instance 2: not a JPEG"
    assert messages[2].startswith("instance 3: cannot decode")
    assert all(slot["error"]["code"] == 400 for slot in bad)


def test_a_request_where_no_instance_can_be_answered_is_400(server):
    status, answer = _post(server.port, {"instances": [{"content": "%%"}]})
    assert status == 400
    assert answer["error"]["message"].startswith("no instance could be classified")
    assert answer["predictions"][0]["error"]["message"] == "instance 0: content is not base64"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloud_stub.cli", "predict", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_insecure_mode_refuses_a_host_that_is_not_loopback():
    run = _cli("--host", "0.0.0.0", "--port", str(reserve_port()), "--insecure-no-auth")
    assert run.returncode == 2
    assert run.stderr.startswith("camtrap-cloud predict: --host 0.0.0.0")
    assert run.stderr.strip().endswith("give --token-file")
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_without_a_token_file_the_server_refuses_to_start():
    run = _cli("--port", str(reserve_port()))
    assert run.returncode == 2 and "needs --token-file" in run.stderr


def test_a_token_file_others_can_read_is_refused(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    run = _cli("--port", str(reserve_port()), "--token-file", str(token))
    assert run.returncode == 2 and "must be mode 0600, is 644" in run.stderr
    missing = _cli("--port", str(reserve_port()), "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 66 and "no such file" in missing.stderr


def test_a_missing_pack_is_one_line_and_exit_2(tmp_path):
    run = _cli("--port", str(reserve_port()), "--insecure-no-auth", "--pack", str(tmp_path / "x"))
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert str(tmp_path / "x") in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_the_command_serves_until_sigterm(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = reserve_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cloud_stub.cli", "predict", "--port", str(port),
         "--token-file", str(token)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(f"predict ready http://127.0.0.1:{port}")
        status, _ = _post(port, {"instances": [_content(CHELSEA.read_bytes())]})
        assert status == 200
        busy = _cli("--port", str(port), "--token-file", str(token))
        assert busy.returncode == 69 and "address in use" in busy.stderr
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"POST {PATH} 200 instances=1" in err
