"""The one pack Manifest: loading, OTA verification and the cloud's signing apply the same rules.

Each rule is stated on ``Manifest`` itself and then, where it matters most, checked through the
three doors that use it: ``load_pack`` (the device serving a pack), ``ModelUpdater.install``
(the device judging an offer) and ``sign_pack`` (the cloud signing one).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.models.keys import new_keypair
from cloud_stub.models.signing import sign_pack
from device.contracts.manifest import RESIZE_MODES, Manifest, PackError
from device.contracts.pack import DEFAULT_PACK_DIR, read_pack
from device.contracts.protocol import DesiredModel
from device.contracts.signing import key_id, sign_manifest
from device.contracts.versions import newer, parse_version
from device.ota.installer import ModelUpdater
from device.ota.layout import Layout
from device.ota.state import StateFile
from device.vision.pack import load_pack
from tests.support.world import trap_settings
from tests.test_ota_signing import make_pack

FUTURE = "2999-01-01T00:00:00+00:00"


def document(**changes: Any) -> dict[str, Any]:
    """A minimal valid manifest document, with ``changes`` laid over it."""
    doc: dict[str, Any] = {
        "format": "camtrap-model-pack/1",
        "name": "tiny",
        "version": "1.0.0",
        "model": {"file": "model.tflite"},
        "labels": {"file": "labels.txt"},
        "files": {
            "model.tflite": {"sha256": "a" * 64, "size": 10},
            "labels.txt": {"sha256": "b" * 64, "size": 4},
        },
    }
    doc.update(changes)
    return doc


def refusal(**changes: Any) -> str:
    with pytest.raises(PackError) as caught:
        Manifest.from_document(document(**changes))
    return str(caught.value)


def rewrite_manifest(pack: Path, **changes: Any) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest.update(changes)
    (pack / "manifest.json").write_text(json.dumps(manifest))


# -- versions ---------------------------------------------------------------------------------


def test_versions_are_ordered_as_numbers_not_as_text():
    assert parse_version("1.0.10") > parse_version("1.0.9")
    assert newer("1.0.10", "1.0.9")
    assert not newer("1.0.9", "1.0.10")
    assert not newer("1.0.9", "1.0.9"), "anti-rollback needs strictly newer"
    assert newer("0.1.0", None), "anything is newer than no floor"
    assert parse_version("1.0") == parse_version("1.0.0")
    assert parse_version("1.1.0rc1") < parse_version("1.1.0"), "a pre-release precedes it"


@pytest.mark.parametrize("text", ["one.two", "", "1.0.x", "latest"])
def test_a_version_that_is_not_a_version_number_is_a_value_error(text):
    with pytest.raises(ValueError, match="is not a version number"):
        parse_version(text)


def test_a_manifest_version_must_be_a_version_written_as_text():
    assert "is not a version number" in refusal(version="1.x")
    assert refusal(version=2) == "manifest: version: Input should be a valid string"
    assert "is not a version number" in refusal(min_agent_version="soon")


def test_the_agent_requirement_compares_versions_as_numbers():
    manifest = Manifest.from_document(document(min_agent_version="0.1.10"))
    manifest.check_agent("0.1.10")
    manifest.check_agent("0.2.0")
    with pytest.raises(PackError, match=r"needs agent 0\.1\.10 or newer, this is 0\.1\.9"):
        manifest.check_agent("0.1.9")


# -- expiry -----------------------------------------------------------------------------------


def test_an_expiry_without_a_utc_offset_is_refused_not_guessed():
    message = refusal(expires="2999-01-01T00:00:00")
    assert message == (
        "expires '2999-01-01T00:00:00' has no UTC offset (an ambiguous time is refused)"
    )
    assert "is not ISO 8601" in refusal(expires="next tuesday")
    assert "is not an ISO 8601 time" in refusal(expires=1_900_000_000)


def test_an_expiry_is_an_instant_whatever_offset_it_is_written_in():
    manifest = Manifest.from_document(document(expires="2030-01-01T03:00:00+03:00"))
    assert manifest.expires == datetime(2030, 1, 1, tzinfo=UTC)
    manifest.check_expiry(now=datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC))
    with pytest.raises(PackError, match="expired at 2030-01-01T03:00:00\\+03:00"):
        manifest.check_expiry(now=datetime(2030, 1, 1, tzinfo=UTC))  # at the instant: expired


def test_a_pack_with_a_naive_expiry_is_refused_by_the_device_and_the_cloud(tmp_path):
    pack = make_pack(tmp_path / "pack", "1.1.0")
    rewrite_manifest(pack, expires="2999-01-01T00:00:00")
    for load in (load_pack, read_pack):
        with pytest.raises(PackError, match=r"^model pack .*: expires .* has no UTC offset"):
            load(pack)
    key, _ = new_keypair(tmp_path / "keys")
    with pytest.raises(PackError, match="has no UTC offset"):
        sign_pack(pack, key)  # no --expires-days: the pack's own (naive) expiry would be kept


def _offer(tmp_path: Path, **changes: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """Offer a signed tiny pack, with ``changes`` to its manifest, to a fresh updater; the
    reports it makes. The URL leads nowhere: an offer refused at verify downloads nothing."""
    factory = make_pack(tmp_path / "factory", "1.0.0")
    offered = make_pack(tmp_path / "offered", "1.1.0")
    key = Ed25519PrivateKey.generate()
    manifest = json.loads((offered / "manifest.json").read_text())
    manifest.update({"expires": FUTURE, **changes})
    signed = sign_manifest(manifest, key)
    settings = trap_settings(
        tmp_path / "trap",
        vision={"enabled": True, "pack": factory},
        ota={"trusted_keys_dir": tmp_path / "no-keys", "download_retries": 0},
    )
    reports: list[tuple[str, str, dict[str, Any]]] = []
    updater = ModelUpdater(
        settings,
        StateFile(Layout.of(settings).state_path),
        {key_id(key.public_key()): key.public_key()},
        lambda code, severity, details: reports.append((code, severity, details)),
    )
    desired = DesiredModel(
        device_id="test-trap",
        rollout_id="r-1",
        name=signed["name"],
        version=signed["version"],
        url="http://127.0.0.1:9/packs/tiny-ota@1.1.0",
        manifest=signed,
        published_at=datetime.now(UTC),
    )
    assert updater.install(desired) == "verify"
    return reports


def test_an_ota_offer_whose_expiry_has_no_offset_is_refused_before_any_download(tmp_path):
    reports = _offer(tmp_path, expires="2999-01-01T00:00:00")
    assert [code for code, _, _ in reports] == ["model.verify.failed"]
    assert reports[0][2]["detail"] == (
        "expires '2999-01-01T00:00:00' has no UTC offset (an ambiguous time is refused)"
    )


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"expires": None}, "manifest has no expiry time"),
        ({"expires": "2001-01-01T00:00:00+00:00"}, "expired at 2001-01-01T00:00:00+00:00"),
        ({"golden": []}, "an OTA pack must carry golden images for its self-test"),
        ({"min_agent_version": "99.0"}, "needs agent 99.0 or newer, this is 0.1.0"),
        (
            {"format": "camtrap-model-pack/3"},
            "manifest format is not 'camtrap-model-pack/1' or 'camtrap-model-pack/2'",
        ),
    ],
)
def test_an_ota_offer_is_judged_by_the_manifest_rules(tmp_path, changes, detail):
    reports = _offer(tmp_path, **changes)
    assert [(code, d["detail"]) for code, _, d in reports] == [("model.verify.failed", detail)]


def test_an_offer_needs_an_expiry_a_size_for_every_file_and_golden_images():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    golden = [{"file": "labels.txt"}]
    with pytest.raises(PackError, match="manifest has no expiry time"):
        Manifest.from_document(document(golden=golden)).check_offer(now)
    unsized = document(expires=FUTURE, golden=golden)
    unsized["files"]["labels.txt"] = {"sha256": "b" * 64}
    with pytest.raises(PackError, match=r"files\['labels.txt'\] needs a size and a sha256"):
        Manifest.from_document(unsized).check_offer(now)
    with pytest.raises(PackError, match="must carry golden images"):
        Manifest.from_document(document(expires=FUTURE)).check_offer(now)
    Manifest.from_document(document(expires=FUTURE, golden=golden)).check_offer(now)


# -- files ------------------------------------------------------------------------------------


def test_every_file_the_manifest_uses_is_listed_under_a_safe_name():
    assert refusal(geofence={"file": "geofence.json"}) == (
        "geofence.json is used but has no checksum in manifest files"
    )
    for name in ("../outside", "/etc/passwd", "a\\b", ""):
        assert refusal(files={**document()["files"], name: {"sha256": "c" * 64}}) == (
            f"unsafe file name {name!r}"
        )
    listed_itself = {**document()["files"], "manifest.json": {"sha256": "c" * 64}}
    assert refusal(files=listed_itself).startswith("unsafe file name 'manifest.json'")


def test_names_are_normalised_so_a_reference_and_its_listing_agree():
    doc = document(model={"file": "./model.tflite"})
    doc["files"] = {"./model.tflite": doc["files"]["model.tflite"], **doc["files"]}
    manifest = Manifest.from_document(doc)
    assert manifest.model.file == "model.tflite"
    assert "model.tflite" in manifest.files


def test_checksums_are_64_hex_digits_and_sizes_whole_numbers():
    files = document()["files"]
    assert "is not 64 hex digits" in refusal(files={**files, "x": {"sha256": "abc"}})
    assert refusal(files={**files, "x": {"sha256": "c" * 64, "size": "12"}}) == (
        "manifest: files['x'].size: Input should be a valid integer"
    )
    upper = Manifest.from_document(document(files={**files, "x": {"sha256": "C" * 64}}))
    assert upper.files["x"].sha256 == "c" * 64


# -- the rest of the format -------------------------------------------------------------------


def test_serving_settings_are_checked_with_the_format():
    assert refusal(model={"file": "model.tflite", "preprocess": {"resize": "stretch"}}) == (
        "preprocess resize 'stretch' unknown (one of center_crop, squash, pad)"
    )
    assert "must each be a number or 3 numbers" in refusal(
        model={"file": "model.tflite", "preprocess": {"mean": [1, 2]}}
    )
    assert refusal(model={"file": "model.tflite", "output": "softmax"}) == (
        "model output 'softmax' unknown (one of probabilities, logits)"
    )
    assert refusal(labels={"file": "labels.txt", "format": "csv"}).startswith(
        "labels format 'csv' unknown"
    )
    assert refusal(thresholds={"blank": 1.5}) == "threshold 'blank' must be a number in [0, 1]"
    assert refusal(thresholds={"blank": True}) == "threshold 'blank' must be a number in [0, 1]"
    assert refusal(golden=[{"file": "labels.txt", "top_k": 0}]).startswith(
        "manifest: golden[0].top_k:"
    )


def test_defaults_nulls_and_keys_of_ones_own():
    manifest = Manifest.from_document(
        document(
            expires=None,
            signature=None,
            taxonomy={},
            golden=None,
            thresholds=None,
            description="kept",
            installed={"at": "2030-01-01T00:00:00+00:00"},
        )
    )
    assert manifest.expires is None and manifest.signature is None
    assert manifest.taxonomy is None and manifest.golden == [] and manifest.thresholds == {}
    assert manifest.model.preprocess.resize == "center_crop"
    assert manifest.model.preprocess.mean == (127.5, 127.5, 127.5)
    assert manifest.labels.format == "plain"
    assert manifest.model_extra == {
        "description": "kept",
        "installed": {"at": "2030-01-01T00:00:00+00:00"},
    }


@pytest.mark.parametrize(
    "broken",
    [
        [],
        "manifest",
        {},
        {"format": "camtrap-model-pack/1"},
        document(model="model.tflite"),
        document(files=[]),
        document(golden=[{"expect_top": "tabby"}]),
        document(signature={"alg": "ed25519"}),
    ],
)
def test_a_malformed_manifest_is_one_line(broken):
    with pytest.raises(PackError) as caught:
        Manifest.from_document(broken)
    message = str(caught.value)
    assert message and "\n" not in message


def test_the_bundled_default_pack_satisfies_the_model():
    manifest = Manifest.from_document(json.loads((DEFAULT_PACK_DIR / "manifest.json").read_text()))
    assert manifest.classified_by == "efficientnet-lite0-imagenet@1.0.0"
    assert manifest.model.preprocess.resize in RESIZE_MODES
    assert manifest.golden, "the default pack carries golden images"
    assert read_pack(DEFAULT_PACK_DIR).manifest == manifest


def test_signing_publishes_a_version_only_if_it_is_one(tmp_path):
    key, _ = new_keypair(tmp_path / "keys")
    pack = make_pack(tmp_path / "pack", "1.0.9")
    with pytest.raises(ValueError, match="is not a version number"):
        sign_pack(pack, key, version="newest", expires_in=timedelta(days=1))
    signed = sign_pack(pack, key, version="1.0.10", expires_in=timedelta(days=1))
    assert parse_version(signed["version"]) > parse_version("1.0.9")
    assert Manifest.from_document(signed).signature is not None
