"""Bad input, every user-facing command: one clear line, a documented exit code, nothing lost.

A table of cases runs ``camtrap``, ``camtrap-cloud`` and ``camtrap-provision`` as real
processes against one world of real files: a trap store with captures in it, a database that
is not a database, a read-only card, configs that are broken in every way we know, corrupt
images and packs, unreachable hosts, unicode and very long strings. For each case:

- the exit code is non-zero and one of the documented ones (``device.exitcodes.Exit``);
- no Python traceback reaches the user, and no bug shows as an "internal error";
- the world's files are byte-identical before and after, except where the command's job is
  to change them (those cases say so).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from device.config import to_toml
from device.exitcodes import Exit
from tests.support.trap_db import open_store, queue_captures
from tests.support.world import jpeg_bytes, trap_settings

BIN = Path(sys.executable).parent
DOCUMENTED = {int(code) for code in Exit}
LONG = "x" * 5000
UNICODE = "nicht-da-🦒-ñandú-数据"
# Root reads any file; without these capabilities a file's mode counts, as it does for a user.
DROP_ROOT_OVERRIDE = ("setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search")
# A bound on every process: a command that waits forever on bad input is a bug too.
PROCESS_TIMEOUT_S = 60

pytestmark = pytest.mark.timeout(PROCESS_TIMEOUT_S + 30)


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    # The command's job is to change the trap's data dir (sync marks items, simulate captures).
    changes_world: bool = False
    # Parts of the world the command's job is to change (retrieve ends the deployment in its
    # own history); everything else, the cards above all, must stay byte-identical.
    may_change: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # Exit codes this case may end with (besides "any documented non-zero" when empty).
    expect: tuple[int, ...] = ()
    needs_mount: bool = False
    # Run without root's file-permission override, so a file's mode counts as for a user.
    unprivileged: bool = False


@dataclass
class World:
    root: Path
    mounted: bool
    paths: dict[str, str] = field(default_factory=dict)

    def fill(self, argv: tuple[str, ...]) -> list[str]:
        return [a.format(**self.paths) for a in argv]


def _config(root: Path, name: str, data_dir: Path, **sections: dict) -> Path:  # type: ignore[type-arg]
    settings = trap_settings(root / f"{name}-home", **sections)
    data = settings.model_dump(mode="json")
    data["uplink"]["mqtt"].pop("password", None)
    data["storage"]["data_dir"] = str(data_dir)
    path = root / f"{name}.toml"
    path.write_text(to_toml(data))
    return path


def _closed_port() -> int:
    from tests.support.broker import free_port

    return free_port()


def _mount_ro(src: Path, dst: Path) -> bool:
    dst.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    if subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True).returncode:
        return False
    if subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], capture_output=True).returncode:
        subprocess.run(["umount", str(dst)], check=False)
        return False
    return True


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    # A healthy trap with two bursts queued, written by the real store.
    good = trap_settings(root / "trap")
    store = open_store(good)
    queue_captures(store, 2, frames=2)
    store.close()
    data = good.storage.data_dir

    # The same store on a card mounted read-only; unmounted even if the rest of setup fails.
    ro_data = root / "ro-card"
    mounted = _mount_ro(data, ro_data)
    if mounted:
        request.addfinalizer(lambda: subprocess.run(["umount", str(ro_data)], check=False))

    # A database that is not one, on an otherwise real card.
    corrupt = root / "corrupt-card"
    shutil.copytree(data, corrupt)
    db = corrupt / "camtrap.db"
    db.write_bytes(b"this is not an SQLite database" * 100)

    # The same store, and a config file, that a user without permission cannot read.
    denied = root / "denied-card"
    shutil.copytree(data, denied)
    denied.chmod(0)
    request.addfinalizer(lambda: denied.chmod(0o755))
    denied_cfg = root / "unreadable.toml"
    denied_cfg.write_text("[capture]\nburst_frames = 3\n")
    denied_cfg.chmod(0)

    a_file = root / "a-file"
    a_file.write_text("a file where a directory belongs")
    closed = _closed_port()
    mqtt = {"host": "127.0.0.1", "port": closed, "connect_timeout_s": 2}
    unreachable = {"transport": "mqtt", "network_manager": False, "mqtt": mqtt}
    nowhere = {**unreachable, "mqtt": {**mqtt, "host": "trap-ingest.invalid"}}

    configs = {
        "cfg": _config(root, "good", data, uplink=unreachable),
        "cfg_nowhere": _config(root, "nowhere", data, uplink=nowhere),
        "cfg_ro": _config(root, "ro", ro_data, uplink=unreachable),
        "cfg_corrupt": _config(root, "corrupt", corrupt, uplink=unreachable),
        "cfg_denied": _config(root, "denied", denied, uplink=unreachable),
        "cfg_nodata": _config(root, "nodata", root / "card-not-mounted", uplink=unreachable),
        "cfg_filedata": _config(root, "filedata", a_file, uplink=unreachable),
        "cfg_camera": _config(
            root,
            "camera",
            root / "camera-data",
            camera={"backend": "picamera2"},
            pir={"pin_factory": "mock"},
        ),
        "cfg_gpio": _config(root, "gpio", root / "gpio-data", pir={"pin_factory": "auto"}),
    }
    (root / "camera-data").mkdir()
    (root / "gpio-data").mkdir()
    garbage_cfg = root / "garbage.toml"
    garbage_cfg.write_bytes(b"\x00\xff[[[ not = toml")
    unknown_cfg = root / "unknown.toml"
    unknown_cfg.write_text("[capture]\nburst_frames = 3\nno_such_key = 1\n")
    wrong_type_cfg = root / "wrongtype.toml"
    wrong_type_cfg.write_text('[capture]\nburst_frames = "many"\n')
    absurd_cfg = root / "absurd.toml"
    absurd_cfg.write_text("[capture]\nburst_frames = 1000000000\n")

    images = root / "images"
    images.mkdir()
    (root / "empty-images").mkdir()
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 300)
    good_jpg = root / "one.jpg"
    good_jpg.write_bytes(jpeg_bytes())
    labels = root / "garbage-labels.csv"
    labels.write_bytes(b"\x00\x01\x02 no header at all\n\xff\xfe")
    pack = root / "garbage-pack"
    pack.mkdir()
    (pack / "manifest.json").write_text("{ not json")
    tampered = root / "tampered-pack"
    from device.config import DEFAULT_PACK_DIR

    shutil.copytree(DEFAULT_PACK_DIR, tampered)
    model = tampered / "model.tflite"
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))

    ingest_corrupt = root / "ingest-corrupt"
    ingest_corrupt.mkdir()
    (ingest_corrupt / "ingest.sqlite").write_bytes(b"garbage, not a database" * 50)
    ingest_truncated = root / "ingest-truncated"
    ingest_truncated.mkdir()
    (ingest_truncated / "ingest.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 10)
    coco = root / "garbage-coco.json"
    coco.write_text("[1, 2")
    key = root / "garbage.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
    csr = root / "garbage.csr"
    csr.write_text("not a csr")

    # A provisioned trap's root for camtrap-provision --retrieve, on each kind of card.
    prov = {}
    for name in ("nodata", "corrupt", "ro"):
        proot = root / f"prov-{name}"
        (proot / "etc" / "camtrap").mkdir(parents=True)
        shutil.copy(configs[f"cfg_{name}"], proot / "etc" / "camtrap" / "camtrap.toml")
        prov[f"prov_{name}"] = str(proot)
    answers = root / "garbage-answers.toml"
    answers.write_text("[deployment\nlatitude = ")
    out = root / "out"
    out.mkdir()

    paths = {k: str(v) for k, v in configs.items()}
    paths.update(prov)
    paths.update(
        root=str(root),
        out=str(out),
        data=str(data),
        a_file=str(a_file),
        garbage_cfg=str(garbage_cfg),
        denied_cfg=str(denied_cfg),
        cfg_denied_dir=str(denied),
        unknown_cfg=str(unknown_cfg),
        wrong_type_cfg=str(wrong_type_cfg),
        absurd_cfg=str(absurd_cfg),
        images=str(images),
        empty_images=str(root / "empty-images"),
        good_jpg=str(good_jpg),
        labels=str(labels),
        pack=str(pack),
        tampered=str(tampered),
        ingest_corrupt=str(ingest_corrupt),
        ingest_truncated=str(ingest_truncated),
        coco=str(coco),
        key=str(key),
        csr=str(csr),
        answers=str(answers),
        closed=str(closed),
        long=LONG,
        uni=UNICODE,
    )
    return World(root, mounted, paths)


C = Case
CAMTRAP = "camtrap"
CLOUD = "camtrap-cloud"
PROVISION = "camtrap-provision"
NO_DATA = (int(Exit.NO_DATA_DIR),)
UNREADABLE = (int(Exit.STORE_UNREADABLE),)
NO_INPUT = (int(Exit.NO_INPUT),)
USAGE = (int(Exit.USAGE),)

CASES: list[Case] = [
    # -- configuration, for every command that reads it ------------------------------------
    *(
        C(f"{cmd}-config-{kind}", (CAMTRAP, "--config", path, *cmd.split()), expect=USAGE)
        for cmd in (
            "status",
            "sync",
            "run",
            "simulate --data-dir {out}/sim",
            "ota status",
            "import {root} --dry-run",
            "energy",
        )
        for kind, path in (
            ("missing", "{root}/" + UNICODE + ".toml"),
            ("garbage", "{garbage_cfg}"),
            ("unknown-key", "{unknown_cfg}"),
            ("wrong-type", "{wrong_type_cfg}"),
            ("absurd-number", "{absurd_cfg}"),
            ("long-path", "{root}/{long}.toml"),
            ("a-directory", "{root}"),
        )
    ),
    C("config-check-missing", (CAMTRAP, "config", "check", "{root}/missing.toml"), expect=USAGE),
    C("config-check-garbage", (CAMTRAP, "config", "check", "{garbage_cfg}"), expect=USAGE),
    C("config-check-directory", (CAMTRAP, "config", "check", "{root}"), expect=USAGE),
    C("config-check-unicode", (CAMTRAP, "config", "check", "{root}/{uni}"), expect=USAGE),
    C(
        "config-show-env-wrong-type",
        (CAMTRAP, "--config", "{cfg}", "config", "show"),
        env=(("CAMTRAP_CAPTURE__BURST_FRAMES", "many"),),
        expect=USAGE,
    ),
    C(
        "status-env-absurd",
        (CAMTRAP, "--config", "{cfg}", "status"),
        env=(("CAMTRAP_CAPTURE__BURST_FRAMES", "99999999999"),),
        expect=USAGE,
    ),
    # -- the store: not mounted, not a directory, not a database, read-only ---------------
    C("status-card-not-mounted", (CAMTRAP, "--config", "{cfg_nodata}", "status"), expect=NO_DATA),
    # -- the energy budget: no card, no counters yet, an impossible battery ---------------
    C("energy-card-not-mounted", (CAMTRAP, "--config", "{cfg_nodata}", "energy"), expect=NO_DATA),
    C("energy-no-state-file", (CAMTRAP, "--config", "{cfg}", "energy"), expect=NO_INPUT),
    C(
        "energy-bad-battery",
        (CAMTRAP, "--config", "{cfg}", "energy", "--battery-wh", "-3"),
        expect=USAGE,
    ),
    C("energy-bad-board", (CAMTRAP, "--config", "{cfg}", "energy", "--board", "pi9"), expect=USAGE),
    C("status-data-dir-is-a-file", (CAMTRAP, "--config", "{cfg_filedata}", "status")),
    C("status-not-a-database", (CAMTRAP, "--config", "{cfg_corrupt}", "status"), expect=UNREADABLE),
    C("status-json-not-a-database", (CAMTRAP, "--config", "{cfg_corrupt}", "status", "--json")),
    C(
        "status-permission-denied",
        (CAMTRAP, "--config", "{cfg_denied}", "status"),
        expect=UNREADABLE,
        unprivileged=True,
    ),
    C(
        "sync-permission-denied",
        (CAMTRAP, "--config", "{cfg_denied}", "sync"),
        expect=UNREADABLE,
        unprivileged=True,
    ),
    C(
        "status-config-permission-denied",
        (CAMTRAP, "--config", "{denied_cfg}", "status"),
        expect=USAGE,
        unprivileged=True,
    ),
    C(
        "cloud-report-root-permission-denied",
        (CLOUD, "report", "--out", "{out}/report-denied", "--root", "{cfg_denied_dir}"),
        unprivileged=True,
    ),
    # -- camtrap import: a trail camera's card into a store that cannot take it -------------
    C(
        "import-card-not-mounted",
        (CAMTRAP, "--config", "{cfg_nodata}", "import", "{root}"),
        expect=NO_DATA,
    ),
    C(
        "import-not-a-database",
        (CAMTRAP, "--config", "{cfg_corrupt}", "import", "{root}"),
        expect=UNREADABLE,
    ),
    C(
        "import-dry-run-not-a-database",
        (CAMTRAP, "--config", "{cfg_corrupt}", "import", "{root}", "--dry-run"),
        expect=UNREADABLE,
    ),
    C(
        "import-read-only-card",
        (CAMTRAP, "--config", "{cfg_ro}", "import", "{root}"),
        expect=(int(Exit.STORE_READ_ONLY),),
        needs_mount=True,
    ),
    C(
        "import-missing-source",
        (CAMTRAP, "--config", "{cfg}", "import", "{root}/missing"),
        expect=NO_INPUT,
    ),
    C(
        "import-source-is-a-file",
        (CAMTRAP, "--config", "{cfg}", "import", "{garbage_cfg}"),
        expect=NO_INPUT,
    ),
    C(
        "import-bad-clock-offset",
        (CAMTRAP, "--config", "{cfg}", "import", "{root}", "--dry-run", "--clock-offset", "soon"),
        expect=(int(Exit.DATA_ERROR),),
        # The dry run reads the store as `camtrap status` does; SQLite leaves its empty WAL
        # beside a WAL database in a writable directory (ro-card is the same directory).
        may_change=tuple(
            f"{d}/camtrap.db-{s}" for d in ("trap/data", "ro-card") for s in ["wal", "shm"]
        ),
    ),
    C(
        "import-bad-deployment",
        (CAMTRAP, "--config", "{cfg}", "import", "{root}", "--deployment", "a/b"),
        expect=USAGE,
    ),
    C(
        "card-mount-missing",
        (CAMTRAP, "card", "mount", "{root}/missing", "--at", "{out}/card-at"),
        expect=NO_INPUT,
    ),
    C(
        "card-mount-not-a-card",
        (CAMTRAP, "card", "mount", "{garbage_cfg}", "--at", "{out}/card-at"),
        expect=(int(Exit.DATA_ERROR),),
    ),
    C("card-unmount-not-a-card", (CAMTRAP, "card", "unmount", "/proc"), expect=USAGE),
    C("sync-card-not-mounted", (CAMTRAP, "--config", "{cfg_nodata}", "sync"), expect=NO_DATA),
    C("sync-data-dir-is-a-file", (CAMTRAP, "--config", "{cfg_filedata}", "sync")),
    C("sync-not-a-database", (CAMTRAP, "--config", "{cfg_corrupt}", "sync"), expect=UNREADABLE),
    C(
        "sync-read-only-card",
        (CAMTRAP, "--config", "{cfg_ro}", "sync"),
        expect=(int(Exit.STORE_READ_ONLY),),
        needs_mount=True,
    ),
    C(
        "sync-refused",
        (CAMTRAP, "--config", "{cfg}", "sync", "--plain", "--timeout", "3"),
        changes_world=True,
        expect=(int(Exit.NOT_DONE),),
    ),
    C(
        "sync-name-not-resolved",
        (CAMTRAP, "--config", "{cfg_nowhere}", "sync", "--plain", "--timeout", "3"),
        changes_world=True,
        expect=(int(Exit.NOT_DONE),),
    ),
    C("sync-negative-timeout", (CAMTRAP, "--config", "{cfg}", "sync", "--timeout", "-5")),
    C("sync-timeout-not-a-number", (CAMTRAP, "--config", "{cfg}", "sync", "--timeout", "soon")),
    C("run-card-not-mounted", (CAMTRAP, "--config", "{cfg_nodata}", "run"), expect=NO_DATA),
    C("run-data-dir-is-a-file", (CAMTRAP, "--config", "{cfg_filedata}", "run")),
    C("run-no-picamera2", (CAMTRAP, "--config", "{cfg_camera}", "run"), expect=(69,)),
    C("run-no-gpio", (CAMTRAP, "--config", "{cfg_gpio}", "run"), expect=(69,)),
    C(
        "simulate-data-dir-is-a-file",
        (CAMTRAP, "--config", "{cfg}", "simulate", "--data-dir", "{a_file}"),
    ),
    C(
        "simulate-images-missing",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "simulate",
            "--data-dir",
            "{out}/s1",
            "--images",
            "{root}/missing",
        ),
        expect=NO_INPUT,
    ),
    C(
        "simulate-images-empty",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "simulate",
            "--data-dir",
            "{out}/s2",
            "--images",
            "{empty_images}",
        ),
        expect=(int(Exit.DATA_ERROR),),
    ),
    C(
        "simulate-triggers-negative",
        (CAMTRAP, "--config", "{cfg}", "simulate", "--data-dir", "{out}/s3", "--triggers", "-1"),
    ),
    C(
        "simulate-triggers-absurd",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "simulate",
            "--data-dir",
            "{out}/s4",
            "--triggers",
            "1000000000000",
        ),
    ),
    C(
        "simulate-triggers-not-a-number",
        (CAMTRAP, "--config", "{cfg}", "simulate", "--triggers", "lots"),
    ),
    C(
        "simulate-data-dir-long",
        (CAMTRAP, "--config", "{cfg}", "simulate", "--data-dir", "{out}/{long}"),
    ),
    C("ota-status-card-not-mounted", (CAMTRAP, "--config", "{cfg_nodata}", "ota", "status")),
    # -- vision tools -----------------------------------------------------------------------
    C(
        "classify-missing",
        (CAMTRAP, "--config", "{cfg}", "classify", "{root}/missing.jpg"),
        expect=NO_INPUT,
    ),
    C(
        "classify-empty-dir",
        (CAMTRAP, "--config", "{cfg}", "classify", "{empty_images}"),
        expect=(int(Exit.DATA_ERROR),),
    ),
    C("classify-corrupt-image", (CAMTRAP, "--config", "{cfg}", "classify", "{images}/broken.jpg")),
    C(
        "classify-unicode-path",
        (CAMTRAP, "--config", "{cfg}", "classify", "{root}/{uni}.jpg"),
        expect=NO_INPUT,
    ),
    C("classify-long-path", (CAMTRAP, "--config", "{cfg}", "classify", "{root}/{long}.jpg")),
    C(
        "classify-bad-country",
        (CAMTRAP, "--config", "{cfg}", "classify", "--country", "XXX", "{good_jpg}"),
        expect=USAGE,
    ),
    C(
        "classify-garbage-pack",
        (CAMTRAP, "--config", "{cfg}", "classify", "--pack", "{pack}", "{good_jpg}"),
    ),
    C(
        "classify-tampered-pack",
        (CAMTRAP, "--config", "{cfg}", "classify", "--pack", "{tampered}", "{good_jpg}"),
    ),
    C(
        "classify-missing-pack",
        (CAMTRAP, "--config", "{cfg}", "classify", "--pack", "{root}/missing", "{good_jpg}"),
    ),
    C(
        "eval-missing-dir",
        (CAMTRAP, "--config", "{cfg}", "eval", "{root}/missing", "--labels", "{labels}"),
    ),
    C(
        "eval-missing-labels",
        (CAMTRAP, "--config", "{cfg}", "eval", "{images}", "--labels", "{root}/missing.csv"),
    ),
    C(
        "eval-garbage-labels",
        (CAMTRAP, "--config", "{cfg}", "eval", "{images}", "--labels", "{labels}"),
    ),
    C(
        "eval-plot-unwritable",
        (CAMTRAP, "--config", "{cfg}", "eval", "--synthetic", "4", "--plot", "{a_file}/pr.png"),
        expect=(int(Exit.CANT_CREATE),),
    ),
    C("eval-synthetic-negative", (CAMTRAP, "--config", "{cfg}", "eval", "--synthetic", "-3")),
    C(
        "eval-synthetic-absurd",
        (CAMTRAP, "--config", "{cfg}", "eval", "--synthetic", "100000000000"),
    ),
    C(
        "eval-events-missing-dir",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "eval",
            "{root}/missing",
            "--events",
            "--labels",
            "{labels}",
        ),
    ),
    C(
        "eval-events-garbage-labels",
        (CAMTRAP, "--config", "{cfg}", "eval", "{images}", "--events", "--labels", "{labels}"),
    ),
    C(
        "calibrate-missing-dir",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "calibrate",
            "{root}/missing",
            "--labels",
            "{labels}",
            "--out",
            "{out}/cal1.json",
        ),
    ),
    C(
        "calibrate-garbage-labels",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "calibrate",
            "{images}",
            "--labels",
            "{labels}",
            "--out",
            "{out}/cal2.json",
        ),
    ),
    C(
        "calibrate-out-unwritable",
        (
            CAMTRAP,
            "--config",
            "{cfg}",
            "calibrate",
            "--synthetic",
            "2",
            "--out",
            "{a_file}/cal.json",
        ),
        expect=(int(Exit.CANT_CREATE),),
    ),
    C(
        "calibrate-synthetic-negative",
        (CAMTRAP, "--config", "{cfg}", "calibrate", "--synthetic", "-3", "--out", "{out}/c.json"),
    ),
    C("model-info-missing", (CAMTRAP, "model", "info", "{root}/missing")),
    C("model-info-garbage", (CAMTRAP, "model", "info", "{pack}")),
    C("model-info-tampered", (CAMTRAP, "model", "info", "{tampered}")),
    C("model-import-missing", (CAMTRAP, "model", "import", "{root}/missing", "--out", "{out}/p1")),
    C("model-import-empty", (CAMTRAP, "model", "import", "{empty_images}", "--out", "{out}/p2")),
    C("model-import-out-unwritable", (CAMTRAP, "model", "import", "{pack}", "--out", "{a_file}/p")),
    # -- the cloud tools ----------------------------------------------------------------------
    *(
        C(
            f"cloud-{name}-{kind}",
            (CLOUD, *argv.split(), root_path, *(("list",) if name == "users" else ())),
            # The accounts live beside ingest.sqlite, not in it: users never reads the store.
            expect=() if name == "users" else expect,
        )
        for name, argv in (
            ("report", "report --out {out}/report --root"),
            ("export", "export camtrap-dp {out}/dp --root"),
            ("serve", "serve --insecure-http --host 127.0.0.1 --port {closed} --root"),
            ("users", "users --root"),
            ("model-status", "model status --root"),
            ("handoff", "handoff --out {out}/handoff --ingest-root"),
        )
        for kind, root_path, expect in (
            ("missing-root", "{root}/missing-ingest", ()),
            ("root-is-a-file", "{a_file}", ()),
            ("not-a-database", "{ingest_corrupt}", UNREADABLE),
            ("truncated", "{ingest_truncated}", UNREADABLE),
        )
    ),
    C("cloud-demo-workdir-is-a-file", (CLOUD, "demo", "--workdir", "{a_file}/demo")),
    C(
        "cloud-predict-insecure-off-loopback",
        (CLOUD, "predict", "--host", "0.0.0.0", "--port", "0", "--insecure-no-auth"),
        expect=USAGE,
    ),
    C(
        "cloud-predict-missing-token-file",
        (CLOUD, "predict", "--port", "0", "--token-file", "{root}/missing-token"),
        expect=NO_INPUT,
    ),
    C(
        "cloud-demo-triggers-negative",
        (CLOUD, "demo", "--workdir", "{out}/demo", "--triggers", "-2"),
    ),
    C(
        "cloud-model-publish-missing-pack",
        (CLOUD, "model", "publish", "--to", "trap-1", "--root", "{out}/pub1", "{root}/missing"),
    ),
    C(
        "cloud-model-publish-unreachable-broker",
        (
            CLOUD,
            "model",
            "publish",
            "--to",
            "trap-1",
            "--root",
            "{out}/pub2",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            "{closed}",
            "--wait-timeout",
            "3",
            "{tampered}",
        ),
    ),
    C("cloud-model-serve-root-is-a-file", (CLOUD, "model", "serve", "--root", "{a_file}")),
    C(
        "cloud-model-group-root-is-a-file",
        (CLOUD, "model", "group", "--root", "{a_file}", "north", "trap-1"),
    ),
    C(
        "cloud-model-resign-default-bad-version",
        (CLOUD, "model", "resign-default", "not-a-version", "{out}/rd1"),
    ),
    C(
        "cloud-model-resign-default-out-is-a-file",
        (CLOUD, "model", "resign-default", "1.2.3", "{a_file}/rd"),
    ),
    C(
        "cloud-registry-serve-missing-ca",
        (
            CLOUD,
            "registry",
            "serve",
            "--root",
            "{out}/reg1",
            "--ca-dir",
            "{root}/missing",
            "--port",
            "{closed}",
            "--broker-host",
            "127.0.0.1",
        ),
    ),
    C(
        "cloud-registry-token-root-is-a-file",
        (CLOUD, "registry", "token", "new", "--root", "{a_file}"),
    ),
    C(
        "cloud-registry-token-count-absurd",
        (CLOUD, "registry", "token", "new", "--root", "{out}/reg2", "--count", "100000000000"),
    ),
    C(
        "cloud-registry-push-deployments-corrupt-ingest",
        (
            CLOUD,
            "registry",
            "push-deployments",
            "--root",
            "{root}/missing",
            "--ingest-root",
            "{ingest_corrupt}",
        ),
    ),
    C(
        "cloud-users-add-no-password",
        (CLOUD, "users", "--root", "{out}", "add", "--password-stdin", "ranger"),
    ),
    C(
        "cloud-users-add-long-name",
        (CLOUD, "users", "--root", "{out}", "add", "--password-stdin", LONG),
    ),
    C(
        "cloud-ca-client-missing-ca",
        (CLOUD, "ca", "client", "{root}/missing", "ingest", "{out}/cl"),
    ),
    C("cloud-log-level-bogus", (CLOUD, "--log-level", "loud", "report", "--root", "{out}")),
    C("cloud-export-validate-missing", (CLOUD, "export", "validate", "{root}/missing")),
    C("cloud-export-validate-garbage", (CLOUD, "export", "validate", "{pack}")),
    C(
        "cloud-handoff-coco-missing",
        (CLOUD, "handoff", "--out", "{out}/h1", "--coco", "{root}/missing.json"),
    ),
    C("cloud-handoff-coco-garbage", (CLOUD, "handoff", "--out", "{out}/h2", "--coco", "{coco}")),
    C(
        "cloud-train-ingest-corrupt",
        (CLOUD, "train", "--root", "{ingest_corrupt}", "--out", "{out}/t1"),
        expect=UNREADABLE,
    ),
    C(
        "cloud-train-labels-garbage",
        (CLOUD, "train", "--images", "{images}", "--labels", "{labels}", "--out", "{out}/t2"),
        expect=(1,),
    ),
    C(
        "cloud-train-backbone-garbage",
        (CLOUD, "train", "--backbone", "{pack}", "--root", "{root}/missing", "--out", "{out}/t3"),
        expect=(1,),
    ),
    C("cloud-train-no-source", (CLOUD, "train", "--out", "{out}/t4"), expect=USAGE),
    C(
        "cloud-model-sign-missing-pack",
        (CLOUD, "model", "sign", "--key", "{key}", "{root}/missing"),
    ),
    C("cloud-model-sign-garbage-key", (CLOUD, "model", "sign", "--key", "{key}", "{tampered}")),
    C("cloud-keys-new-dir-is-a-file", (CLOUD, "keys", "new", "{a_file}/keys")),
    C("cloud-ca-init-dir-is-a-file", (CLOUD, "ca", "init", "{a_file}/ca")),
    C(
        "cloud-ca-sign-missing-ca",
        (CLOUD, "ca", "sign", "{root}/missing", "{csr}", "trap-1", "{out}/c.pem"),
    ),
    C(
        "cloud-registry-deployments-missing",
        (CLOUD, "registry", "deployments", "--root", "{root}/missing"),
    ),
    C(
        "cloud-ingest-name-not-resolved",
        (
            CLOUD,
            "ingest",
            "--root",
            "{out}/ingest1",
            "--mqtt-host",
            "ingest.invalid",
            "--connect-timeout",
            "3",
        ),
    ),
    C(
        "cloud-ingest-refused",
        (
            CLOUD,
            "ingest",
            "--root",
            "{out}/ingest2",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            "{closed}",
            "--connect-timeout",
            "3",
        ),
    ),
    C(
        "cloud-ingest-corrupt-root",
        (
            CLOUD,
            "ingest",
            "--root",
            "{ingest_corrupt}",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            "{closed}",
        ),
        expect=UNREADABLE,
    ),
    C(
        "cloud-ingest-port-absurd",
        (
            CLOUD,
            "ingest",
            "--root",
            "{out}/ingest3",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            "99999",
        ),
    ),
    # -- the technician's script --------------------------------------------------------------
    C(
        "provision-answers-missing",
        (PROVISION, "--root", "{out}/p-a", "-n", "--answers", "{root}/missing.toml"),
    ),
    C(
        "provision-answers-garbage",
        (PROVISION, "--root", "{out}/p-b", "-n", "--answers", "{answers}"),
    ),
    C(
        "provision-set-unknown-key",
        (PROVISION, "--root", "{out}/p-c", "-n", "--set", "no.such_key=1"),
    ),
    C(
        "provision-set-absurd-latitude",
        (PROVISION, "--root", "{out}/p-d", "-n", "--set", "deployment.latitude=999"),
    ),
    C(
        "provision-set-bad-country",
        (PROVISION, "--root", "{out}/p-e", "-n", "--set", "deployment.country=XXX"),
    ),
    C("provision-set-unicode", (PROVISION, "--root", "{out}/p-f", "-n", "--set", UNICODE + "=1")),
    C("provision-set-long", (PROVISION, "--root", "{out}/p-g", "-n", "--set", "device.id=" + LONG)),
    C("provision-root-is-a-file", (PROVISION, "--root", "{a_file}", "--retrieve")),
    C("provision-retrieve-unprovisioned", (PROVISION, "--root", "{out}/p-h", "--retrieve")),
    C(
        "provision-retrieve-card-not-mounted",
        (
            PROVISION,
            "--root",
            "{prov_nodata}",
            "--retrieve",
            "--print-commands",
            "--sync-timeout",
            "3",
        ),
        expect=(int(Exit.NOT_SYNCED),),
        may_change=("prov-",),
    ),
    C(
        "provision-retrieve-not-a-database",
        (
            PROVISION,
            "--root",
            "{prov_corrupt}",
            "--retrieve",
            "--print-commands",
            "--sync-timeout",
            "3",
        ),
        expect=(int(Exit.NOT_SYNCED),),
        may_change=("prov-",),
    ),
    C(
        "provision-retrieve-read-only-card",
        (PROVISION, "--root", "{prov_ro}", "--retrieve", "--print-commands", "--sync-timeout", "3"),
        expect=(int(Exit.NOT_SYNCED),),
        needs_mount=True,
        may_change=("prov-",),
    ),
]


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every file under ``root`` (but ``skip``) and its sha256; SQLite's shared-memory index
    (``-shm``) is not data and readers may create it."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if skip in path.parents or path == skip or path.name.endswith("-shm"):
            continue
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            found[str(path.relative_to(root))] = "dir"
    return found


def run_case(world: World, case: Case) -> subprocess.CompletedProcess[str]:
    argv = world.fill(case.argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMTRAP_")}
    env.update(case.env)
    prefix = list(DROP_ROOT_OVERRIDE) if case.unprivileged else []
    return subprocess.run(
        [*prefix, str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=world.paths["out"],
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_line_and_loses_nothing(world: World, case: Case) -> None:
    if case.needs_mount and not world.mounted:
        pytest.skip("a read-only bind mount needs root and mount(8)")
    if case.unprivileged and (os.geteuid() != 0 or not shutil.which("setpriv")):
        pytest.skip("dropping root's permission override needs root and setpriv (util-linux)")
    out = Path(world.paths["out"])
    before = snapshot(world.root, out)
    result = run_case(world, case)
    after = snapshot(world.root, out)
    said = result.stdout + result.stderr
    assert "Traceback" not in said, said[-3000:]
    assert "internal error" not in said, said[-3000:]
    assert result.returncode != 0, f"exit 0 on bad input:\n{said[-2000:]}"
    assert result.returncode in DOCUMENTED, (
        f"undocumented exit {result.returncode}:\n{said[-2000:]}"
    )
    if case.expect:
        assert result.returncode in case.expect, f"exit {result.returncode}:\n{said[-2000:]}"
    assert result.stderr.strip(), "an error must be said on stderr"
    if not case.changes_world:

        def kept(files: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in files.items() if not k.startswith(case.may_change or "\0")}

        assert kept(after) == kept(before), "the command changed files it had no business touching"


def test_the_matrix_covers_every_command_of_the_three_programs() -> None:
    """A new subcommand without a bad-input case fails here, so the matrix keeps up."""
    covered = {(c.argv[0], _command_of(c.argv)) for c in CASES}
    for prog, module in ((CAMTRAP, "device.cli"), (CLOUD, "cloud_stub.cli")):
        for command in _subcommands(module):
            assert (prog, command) in covered, f"no bad-input case for `{prog} {command}`"


def _command_of(argv: tuple[str, ...]) -> str:
    words = [a for a in argv[1:] if not a.startswith("-") and "{" not in a]
    # skip an option's value (--config X) by dropping words that follow an option
    cleaned: list[str] = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a.startswith("--") and a not in _FLAGS:
            skip = True
            continue
        if a.startswith("-") or "{" in a:
            continue
        cleaned.append(a)
    return cleaned[0] if cleaned else (words[0] if words else "")


_FLAGS = {"--json", "--plain", "--all", "--retrieve", "--print-commands", "--insecure-http"}


def _subcommands(module: str) -> list[str]:
    import argparse
    import importlib

    parser = importlib.import_module(module).build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    return []
