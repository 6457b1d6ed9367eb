# camtrap: the two commands are `make demo` and `make test` (see README.md).
# Each installs what it needs, Debian packages included (with sudo when not root).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= .demo

# Debian packages each target needs.
APT_BASE := python3-venv python3-dev
APT_TEST := mosquitto mosquitto-clients

# Install the Debian packages given in $(1) that are missing; apt-get update only if needed.
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi
endef

.PHONY: demo test bench lint venv apt-base apt-test clean

apt-base:
	$(call apt_ensure,$(APT_BASE))

apt-test:
	$(call apt_ensure,$(APT_TEST))

$(VENV)/.installed: pyproject.toml
	$(MAKE) apt-base
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/camtrap simulate --triggers 5 --data-dir $(DEMO_DIR)/data

test: venv apt-test
	$(VENV)/bin/pytest -q

bench: venv apt-test
	$(PY) tests/bench/run.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info
