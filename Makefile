# camtrap: the two commands are `make demo` and `make test` (see README.md).
# Each installs what it needs, Debian packages included (with sudo when not root).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= .demo

# Debian packages each target needs.
APT_BASE := python3-venv python3-dev
# libatomic1: the node binary inside playwright (which drives chromium) links against it.
# dosfstools, mtools, exfatprogs, fusefat, exfat-fuse: the trail-camera card images the
# import tests build and mount through FUSE (tests/support/fatcard.py).
# postgresql: the suite starts servers of its own from its binaries (tests/support/postgres.py);
# the cluster the package may start on 5432 is never used.
APT_TEST := mosquitto mosquitto-clients chromium libatomic1 dosfstools mtools exfatprogs fusefat exfat-fuse postgresql
APT_DEMO := mosquitto

# Install the Debian packages given in $(1) that are missing; apt-get update only if needed.
# Another apt (unattended-upgrades, a second make) may hold the dpkg lock: apt-get install
# waits for it (DPkg::Lock::Timeout), and apt-get update, which has no such option for the
# lists lock, is retried.
APT_LOCK_WAIT := 600
APT_GET := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT)
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  tries=0; until $(APT_GET) update -q; do \
	    tries=$$((tries + 1)); [ $$tries -ge 60 ] && { echo "apt-get update kept failing" >&2; exit 1; }; \
	    echo "apt-get update failed (another apt running?); retrying in 10 s" >&2; sleep 10; \
	  done; \
	  $(APT_GET) install -y -q $$missing; \
	fi
endef

.PHONY: demo test bench lint venv apt-base apt-test apt-demo clean review deb deb-test deb-test-arm64 calibrate-default-pack

apt-base:
	$(call apt_ensure,$(APT_BASE))

apt-test:
	$(call apt_ensure,$(APT_TEST))

apt-demo:
	$(call apt_ensure,$(APT_DEMO))

$(VENV)/.installed: pyproject.toml
	$(MAKE) apt-base
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# The trap captures offline, then reaches "Wi-Fi" and syncs through a real mosquitto (TLS,
# per-device certificate, ACL) to the ingest (docs/uplink.md); then it learns: its events are
# reviewed through the review page, a head is trained on them, sent over the air and serves the
# next day's events (docs/learning.md, "The demo").
demo: venv apt-demo
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/camtrap-cloud demo --workdir $(DEMO_DIR) --triggers 40

test: venv apt-test
	$(VENV)/bin/pytest -q

bench: venv apt-test
	$(PY) tests/bench/run.py

# Dev-time: re-measure the default pack's blank-threshold table (synthetic bursts, about 8
# minutes) after any change to the engine's scoring or the model (docs/vision.md, "Calibration").
calibrate-default-pack: venv
	$(PY) device/models/calibrate_default_pack.py

# ruff, the type checker (mypy with pydantic's plugin, [tool.mypy]) and the import contracts
# between the rooms ([tool.importlinter], docs/architecture.md).
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The review page over the demo's captures (docs/review.md); serves until Ctrl-C.
REVIEW_ROOT ?= $(DEMO_DIR)/cloud/ingest
REVIEW_PORT ?= 8088

review: venv
	@if [ ! -f "$(REVIEW_ROOT)/ingest.sqlite" ]; then \
	  echo "no captures to review in $(REVIEW_ROOT): run 'make demo' first (or make review REVIEW_ROOT=<ingest root>)"; \
	  exit 1; \
	fi
	$(VENV)/bin/camtrap-cloud serve --root $(REVIEW_ROOT) --host 127.0.0.1 --port $(REVIEW_PORT) --insecure-http --demo-login

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info

# Debian packages (docs/packaging.md): camtrap-agent for amd64 and arm64, built on x86.
DEB_DIR ?= build/deb
DEB_ARCHES ?= amd64 arm64
# The release the upgrade/downgrade tests start from (git ref; its schema is older).
DEB_PREV_REF ?= 7c24dd7
# Where deb-test-arm64 keeps its Debian 12 arm64 chroot between runs.
DEB_CHROOT_CACHE ?= /var/cache/camtrap-build
# python3-tomli-w: gen_conffile.py writes the conffile with it (Build-Depends lists it too).
APT_DEB := dpkg-dev debhelper dh-python python3-all python3-pip python3-tomli-w python3-packaging lintian git
APT_DEB_ARM64 := qemu-user-static binfmt-support debootstrap

deb:
	$(call apt_ensure,$(APT_DEB))
	debian/tools/build-debs $(DEB_DIR) $(DEB_ARCHES)
	lintian --fail-on error,warning $(DEB_DIR)/camtrap-agent_*_*.deb

deb-test: deb
	debian/tools/deb-test $(DEB_DIR) $(DEB_PREV_REF)

deb-test-arm64: deb
	$(call apt_ensure,$(APT_DEB) $(APT_DEB_ARM64))
	debian/tools/deb-test-arm64 $(DEB_DIR) $(DEB_PREV_REF) $(DEB_CHROOT_CACHE)
