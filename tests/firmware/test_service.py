"""The two update services (firmware.service) on a pole made of real parts: a card whose boot
partition is a folder holding the U-Boot state copies written by the real fw_setenv, root
slots that are files the size of a partition, each slot's release.json, the trusted release
keys, a device tree that says "qemu", the node's hand-off files and a release server on
127.0.0.1 serving signed bundles. Only the reboot is recorded instead of done; the power-on
after it is played by `Pole.power_on`, which changes the state as the boot script does and
boots the slot it picks (a UBoot with that slot's kernel command line on the same card)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from firmware import handoff, keys, release
from firmware.bootctl import BootState, Slot, UBoot
from firmware.bootctl.uboot import COPIES, DEFAULTS, fw_env_config, read_copy
from firmware.release import Release
from firmware.service import MAX_ATTEMPTS, Node, commit, install_request
from tests.support.bundles import IMAGE_SIZE, NEW, MiB, make_bundle, write_image
from tests.support.release_server import ReleaseServer
from tests.support.uboot_env import booted_from, printenv
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
SLOT_SIZE = 8 * MiB
PREVIOUS = Release("0.1.0", 1763000000, "0badc0d", ("qemu",))  # what slot B held before
RUNNING = Release("0.2.0", 1763730000, "1234abc", ("qemu",))  # slot A, running
UPDATE = Release(NEW["version"], NEW["build"], NEW["commit"], ("qemu",))  # in the bundle
REPLY = handoff.Reply(id="cmd-7f3a", topic="hub/replies/test-0001", correlation="c0ffee01")
COMMITTED_A = BootState(Slot.A, Slot.A, None, 0, 3, "")
T = TypeVar("T", bound=BaseModel)


class Pole:
    """One pole controller: its card (boot partition, root slots A and B, each with the
    release.json of the system in it), its data folder, trusted keys and device tree; it
    runs `running` and records every reboot the services ask for."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.boot_dir = root / "boot-firmware"
        self.state = root / "var/lib/edge/firmware"
        self.keys = root / "usr/lib/safecity-edge/release-keys"
        self.slots = {slot: root / f"mmcblk0p{2 if slot is Slot.A else 3}" for slot in Slot}
        self.running = Slot.A
        self.reboots: list[list[str]] = []

    def release_file(self, slot: Slot) -> Path:
        return self.root / f"rootfs-{slot.value.lower()}" / "release.json"

    def carries(self, slot: Slot, what: Release) -> None:
        """The system in `slot` is release `what` (its image's release.json)."""
        self.release_file(slot).parent.mkdir(parents=True, exist_ok=True)
        self.release_file(slot).write_bytes(release.to_json(what))

    def node(self) -> Node:
        return Node(state=self.state, slot_device=self.slots.__getitem__, keys=self.keys,
                    release=self.release_file(self.running), proc=self.root,
                    reboot=self.reboots.append, reboot_grace_s=0)

    def boot(self) -> UBoot:
        """The boot control of the running system, as `detect` makes it from /proc/cmdline."""
        return UBoot(self.boot_dir, cmdline=booted_from(self.running))

    def power_on(self) -> UBoot:
        """The reboot the services asked for: the boot script counts a trial boot or gives
        the trial up, and the slot it picks runs."""
        self.running = loader_boots(self.boot_dir)
        return self.boot()

    def request(self, url: str, reply: handoff.Reply = REPLY, **changes: Any) -> None:
        """The node hands the hub's cmd/firmware.update to the installer."""
        handoff.write(self.state, handoff.REQUEST, handoff.Request(reply=reply, url=url,
                                                                   **changes))

    def read(self, name: str, model: type[T]) -> T | None:
        return handoff.read(self.state, name, model)

    def has(self, name: str) -> bool:
        return (self.state / name).exists()


def loader_boots(boot_dir: Path) -> Slot:
    """What firmware/uboot/boot.cmd does to the state at power-on, with fw_setenv standing in
    for U-Boot's fatwrite: copy 1, else copy 2, else slot A with no trial; a trial boot is
    counted, or after `bootlimit` of them the other slot is primary again."""
    values = read_copy(boot_dir / COPIES[0])[0] or read_copy(boot_dir / COPIES[1])[0]
    if values is None:
        return Slot.A
    slot = Slot(values["slot"])
    if values.get("upgrade_available") != "1":
        return slot
    count, limit = int(values.get("bootcount", "0")), int(values.get("bootlimit", "3"))
    if count >= limit:
        slot, changes = slot.other, {"slot": slot.other.value, "upgrade_available": "0",
                                     "bootcount": "0"}
    else:
        changes = {"bootcount": str(count + 1)}
    script = boot_dir.parent / "loader.txt"
    script.write_text("".join(f"{name}={value}\n" for name, value in changes.items()))
    for copy in (1, 2):
        config = boot_dir.parent / f"loader-{copy}.config"
        config.write_text(fw_env_config(boot_dir, copy))
        subprocess.run(["fw_setenv", "-c", str(config), "-s", str(script)], check=True,
                       capture_output=True)
    return slot


def mark_healthy(pole: Pole, boot_id: str | None = None) -> None:
    """The node on the trial boot: uplink connected, cameras delivering, watchdog fed."""
    handoff.write(pole.state, handoff.HEALTHY, handoff.Healthy(
        boot_id=handoff.boot_id() if boot_id is None else boot_id,
        checks={"uplink": True, "cameras": True, "watchdog": True}))


@pytest.fixture
def image(tmp_path: Path) -> bytes:
    return write_image(tmp_path / "rootfs.img")


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return keys.generate(tmp_path / "release-signing" / "release.pem")


@pytest.fixture
def pole(tmp_path: Path, key: Ed25519PrivateKey) -> Pole:
    """A pole running 0.2.0 from slot A, committed, with 0.1.0 left in slot B."""
    pole = Pole(tmp_path / "pole")
    (pole.root / "proc/device-tree").mkdir(parents=True)
    (pole.root / "proc/device-tree/compatible").write_bytes(b"linux,dummy-virt\0")
    pole.keys.mkdir(parents=True)
    public = keys.public_path(tmp_path / "release-signing" / "release.pem")
    (pole.keys / "release.pub").write_bytes(public.read_bytes())
    for seed, slot in enumerate(Slot, start=2):
        pole.slots[slot].write_bytes(random.Random(seed).randbytes(SLOT_SIZE))
    pole.carries(Slot.A, RUNNING)
    pole.carries(Slot.B, PREVIOUS)
    pole.boot_dir.mkdir()
    pole.boot().commit()  # as the card leaves the image build: slot A, no trial
    return pole


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    server = ReleaseServer({}, [])
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def publish(server: ReleaseServer, image: bytes, key: Ed25519PrivateKey,
            tmp_path: Path) -> Callable[..., str]:
    """Put a bundle of the test image on the release server and return its (presigned) URL:
    release 0.3.0 for qemu, signed with the pole's release key, unless `changes` say else."""

    def put(name: str = "0.3.0.scfw", **changes: Any) -> str:
        made = make_bundle(tmp_path / "rootfs.img", tmp_path / name,
                           **{"key": key, "boards": ["qemu"], **changes})
        server.files[f"/{name}"] = made.read_bytes()
        return server.url(f"/{name}")

    return put


def updated(pole: Pole, publish: Callable[..., str]) -> UBoot:
    """The hub's update installed and the pole rebooted into its trial boot of slot B."""
    pole.request(publish())
    assert install_request(pole.node(), pole.boot()) == "rebooting"
    pole.carries(Slot.B, UPDATE)  # the installed image's own release.json
    boot = pole.power_on()
    assert boot.state() == BootState(Slot.B, Slot.A, Slot.B, 1, 3, "")
    return boot


# --- the installer ---------------------------------------------------------------------

def test_a_good_bundle_is_installed_into_slot_b_byte_for_byte_and_its_trial_armed(
        pole: Pole, publish: Callable[..., str], image: bytes, server: ReleaseServer) -> None:
    url = publish()
    running_a = pole.slots[Slot.A].read_bytes()
    old_b = pole.slots[Slot.B].read_bytes()
    sha = hashlib.sha256(server.files["/0.3.0.scfw"]).hexdigest().upper()
    pole.request(url, sha256=sha)  # the hub's digest, in whatever case it wrote it

    assert install_request(pole.node(), pole.boot()) == "rebooting"

    after = pole.slots[Slot.B].read_bytes()
    assert after[:IMAGE_SIZE] == image
    assert after[IMAGE_SIZE:] == old_b[IMAGE_SIZE:]
    assert pole.slots[Slot.A].read_bytes() == running_a
    assert pole.boot().state() == BootState(Slot.A, Slot.A, Slot.B, 0, 3, "")
    assert printenv(pole.boot_dir, 1) == printenv(pole.boot_dir, 2) == {
        "slot": "B", "upgrade_available": "1", "bootcount": "0", "bootlimit": "3"}
    pending = pole.read(handoff.PENDING, handoff.Pending)
    assert pending is not None
    assert (pending.reply, pending.version, pending.slot, pending.from_slot,
            pending.from_version) == (REPLY, UPDATE.label(), "B", "A", RUNNING.label())
    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None
    assert (progress.id, progress.stage, progress.bytes, progress.total, progress.version,
            progress.slot, progress.attempt, progress.error) == (
        REPLY.id, "rebooting", IMAGE_SIZE, IMAGE_SIZE, UPDATE.label(), "B", 1, "")
    assert not pole.has(handoff.REQUEST)
    assert pole.reboots == [pole.boot().reboot_argv()] == [["systemctl", "reboot"]]


def test_an_update_asked_not_to_reboot_waits_installed_with_its_trial_armed(
        pole: Pole, publish: Callable[..., str]) -> None:
    pole.request(publish(), reboot=False)
    assert install_request(pole.node(), pole.boot()) == "installed"
    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None and progress.stage == "installed"
    assert pole.boot().state().trial is Slot.B
    assert pole.reboots == []


def _stranger(tmp_path: Path) -> dict[str, Any]:
    return {"key": keys.generate(tmp_path / "elsewhere" / "stranger.pem")}


@pytest.mark.parametrize(("reason", "said", "bundle_for"), [
    ("untrusted_key", "which this node does not trust", _stranger),
    ("wrong_board", "bundle 0.3.0 is for pi4, pi3; this node is a qemu",
     lambda _: {"boards": ["pi4", "pi3"]}),
    ("older", "is older than the installed 0.2.0", lambda _: {"version": "0.1.5"}),
])
def test_a_refused_bundle_leaves_the_card_as_it_was_and_says_why(
        reason: str, said: str, bundle_for: Callable[[Path], dict[str, Any]], pole: Pole,
        publish: Callable[..., str], tmp_path: Path) -> None:
    card = {slot: path.read_bytes() for slot, path in pole.slots.items()}
    pole.request(publish(**bundle_for(tmp_path)))

    assert install_request(pole.node(), pole.boot()) == "refused"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None
    assert (progress.id, progress.stage, progress.reason, progress.slot) == (
        REPLY.id, "refused", reason, "B")
    assert said in progress.error
    assert not pole.has(handoff.REQUEST)
    assert {slot: path.read_bytes() for slot, path in pole.slots.items()} == card
    assert pole.boot().state() == COMMITTED_A
    assert not pole.has(handoff.PENDING)
    assert pole.reboots == []


def test_a_bundle_whose_sha256_is_not_the_one_the_hub_named_is_not_armed(
        pole: Pole, publish: Callable[..., str]) -> None:
    pole.request(publish(), sha256="0" * 64)

    assert install_request(pole.node(), pole.boot()) == "failed"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None and progress.stage == "failed"
    assert f"not the {'0' * 64} the hub named" in progress.error
    assert "not armed" in progress.error
    assert pole.boot().state() == COMMITTED_A
    assert not pole.has(handoff.PENDING) and not pole.has(handoff.REQUEST)
    assert pole.reboots == []


def test_a_bundle_the_server_does_not_have_fails_naming_the_status_not_the_token(
        pole: Pole, server: ReleaseServer) -> None:
    pole.request(server.url("/0.9.0.scfw"))

    assert install_request(pole.node(), pole.boot()) == "failed"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None and progress.stage == "failed"
    assert "HTTP 404" in progress.error and "s3cr3t" not in progress.error
    assert pole.boot().state() == COMMITTED_A
    assert pole.reboots == []



def test_a_pole_without_its_trusted_keys_fails_the_request_at_once_naming_the_folder(
        pole: Pole, publish: Callable[..., str]) -> None:
    (pole.keys / "release.pub").unlink()
    pole.keys.rmdir()  # an image built without its release keys
    pole.request(publish())

    assert install_request(pole.node(), pole.boot()) == "failed"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None and progress.stage == "failed"
    assert str(pole.keys) in progress.error
    assert not pole.has(handoff.REQUEST)
    assert pole.boot().state() == COMMITTED_A


def test_a_trial_that_could_be_armed_in_one_state_copy_only_is_not_left_armed(
        pole: Pole, publish: Callable[..., str]) -> None:
    copy_2 = pole.boot_dir / COPIES[1]
    copy_2.unlink()
    copy_2.mkdir()  # the FAT entry of copy 2 damaged: fw_setenv cannot write it
    pole.request(publish())

    assert install_request(pole.node(), pole.boot()) == "failed"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None
    assert progress.error.startswith("installed, but the trial could not be armed")
    assert pole.reboots == []
    assert pole.boot().state().trial is None  # the hub was told it failed: it must not boot
    assert pole.power_on().state().booted is Slot.A

_INSTALLER = """
import json, sys
from pathlib import Path
from firmware.bootctl import Slot, UBoot
from firmware.service import Node, install_request

p = json.loads(sys.argv[1])
node = Node(state=Path(p["state"]), slot_device=lambda slot: Path(p["slots"][slot.value]),
            keys=Path(p["keys"]), release=Path(p["release"]), proc=Path(p["proc"]),
            reboot=lambda argv: sys.exit(f"asked to reboot: {argv}"), reboot_grace_s=0)
install_request(node, UBoot(Path(p["boot_dir"]), cmdline=p["cmdline"]))
"""


def test_an_install_cut_by_a_power_cut_starts_again_as_attempt_2_and_completes(
        pole: Pole, publish: Callable[..., str], image: bytes, server: ReleaseServer) -> None:
    pole.request(publish())
    server.faults.append(("stall", 3 * MiB))  # the power goes while this GET is under way
    where = {"state": str(pole.state), "keys": str(pole.keys), "proc": str(pole.root),
             "release": str(pole.release_file(Slot.A)), "boot_dir": str(pole.boot_dir),
             "cmdline": booted_from(Slot.A),
             "slots": {slot.value: str(path) for slot, path in pole.slots.items()}}
    installer = subprocess.Popen([sys.executable, "-c", _INSTALLER, json.dumps(where)],
                                 cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: (p := pole.read(handoff.PROGRESS, handoff.Progress)) is not None
                 and p.bytes > 0 and installer.poll() is None, what="the download under way")
    finally:
        installer.kill()  # the power cut
        installer.wait()
        server.release.set()

    cut = pole.read(handoff.PROGRESS, handoff.Progress)
    assert cut is not None and (cut.stage, cut.attempt) == ("downloading", 1)
    assert pole.has(handoff.REQUEST)
    assert pole.boot().state() == COMMITTED_A
    assert pole.slots[Slot.B].read_bytes()[:1 << 20] == bytes(1 << 20)  # no valid start

    # the next boot: the path unit finds request.json still there
    assert install_request(pole.node(), pole.boot()) == "rebooting"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None and (progress.stage, progress.attempt) == ("rebooting", 2)
    assert pole.slots[Slot.B].read_bytes()[:IMAGE_SIZE] == image
    assert pole.boot().state().trial is Slot.B
    assert len(server.seen) == 3  # attempt 1's head; attempt 2's head and its one span
    assert pole.reboots == [["systemctl", "reboot"]]


def test_an_install_cut_short_max_attempts_times_gives_up_without_downloading(
        pole: Pole, publish: Callable[..., str], server: ReleaseServer) -> None:
    pole.request(publish())
    handoff.write(pole.state, handoff.PROGRESS, handoff.Progress(
        id=REPLY.id, stage="downloading", bytes=2 * MiB, total=IMAGE_SIZE, slot="B",
        attempt=MAX_ATTEMPTS))  # as the last power cut left it
    old_b = pole.slots[Slot.B].read_bytes()

    assert install_request(pole.node(), pole.boot()) == "failed"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None
    assert (progress.stage, progress.attempt) == ("failed", MAX_ATTEMPTS + 1)
    assert f"cut short {MAX_ATTEMPTS} times" in progress.error
    assert not pole.has(handoff.REQUEST)
    assert server.seen == []
    assert pole.slots[Slot.B].read_bytes() == old_b
    assert pole.boot().state() == COMMITTED_A
    assert pole.reboots == []


def test_a_request_the_installer_finished_before_a_crash_removed_it_is_not_done_twice(
        pole: Pole, publish: Callable[..., str], server: ReleaseServer) -> None:
    url = publish()
    pole.request(url)
    assert install_request(pole.node(), pole.boot()) == "rebooting"
    fetched = len(server.seen)
    pole.request(url)  # as if the crash came between progress.json and removing request.json

    assert install_request(pole.node(), pole.boot()) == "rebooting"

    assert not pole.has(handoff.REQUEST)
    assert len(server.seen) == fetched  # nothing fetched the second time
    assert len(pole.reboots) == 1


def test_a_request_while_a_trial_is_armed_is_refused_busy(
        pole: Pole, publish: Callable[..., str], server: ReleaseServer) -> None:
    pole.request(publish(), reboot=False)
    assert install_request(pole.node(), pole.boot()) == "installed"
    fetched = len(server.seen)
    later = handoff.Reply(id="cmd-8b41", topic=REPLY.topic, correlation="c0ffee02")
    pole.request(publish("0.3.1.scfw", version="0.3.1"), reply=later)

    assert install_request(pole.node(), pole.boot()) == "refused"

    progress = pole.read(handoff.PROGRESS, handoff.Progress)
    assert progress is not None
    assert (progress.id, progress.stage, progress.reason) == (later.id, "refused", "busy")
    assert "slot B is on trial" in progress.error
    assert not pole.has(handoff.REQUEST)
    assert pole.boot().state() == BootState(Slot.A, Slot.A, Slot.B, 0, 3, "")
    pending = pole.read(handoff.PENDING, handoff.Pending)
    assert pending is not None and pending.reply == REPLY  # the first update's, kept
    assert len(server.seen) == fetched  # refused before any download
    assert pole.reboots == []


# --- the commit service ----------------------------------------------------------------

def test_the_commit_service_leaves_a_trial_armed_on_this_boot_for_the_next(
        pole: Pole, publish: Callable[..., str]) -> None:
    pole.request(publish(), reboot=False)
    assert install_request(pole.node(), pole.boot()) == "installed"
    said: list[str] = []

    assert commit(pole.node(), pole.boot(), timeout_s=60, poll_s=0.01,
                  say=said.append) == "idle"

    assert pole.boot().state() == BootState(Slot.A, Slot.A, Slot.B, 0, 3, "")
    assert pole.has(handoff.PENDING) and not pole.has(handoff.RESULT)
    assert said == ["slot B is armed for a trial from slot A; not this boot"]
    assert pole.reboots == []


def test_a_trial_boot_of_b_that_proves_healthy_is_committed_and_answered_on_its_route(
        pole: Pole, publish: Callable[..., str]) -> None:
    boot = updated(pole, publish)
    mark_healthy(pole)
    said: list[str] = []

    assert commit(pole.node(), boot, timeout_s=60, poll_s=0.01, say=said.append) == "committed"

    assert boot.state() == BootState(Slot.B, Slot.B, None, 0, 3, "")
    assert printenv(pole.boot_dir, 1) == printenv(pole.boot_dir, 2) == {
        "slot": "B", "upgrade_available": "0", "bootcount": "0", "bootlimit": "3"}
    result = pole.read(handoff.RESULT, handoff.Result)
    assert result is not None
    assert (result.reply, result.status, result.version, result.slot, result.error) == (
        REPLY, "done", UPDATE.label(), "B", "")
    assert not pole.has(handoff.PENDING) and not pole.has(handoff.HEALTHY)
    assert "committing slot B: the node is healthy (uplink ok, cameras ok, watchdog ok)" in said
    assert pole.reboots == [["systemctl", "reboot"]]  # the installer's, none since
    # the next power-on is an ordinary boot of B, with nothing left to do
    assert commit(pole.node(), pole.power_on(), timeout_s=60, say=said.append) == "idle"
    assert pole.running is Slot.B


def test_a_healthy_mark_from_another_boot_does_not_commit_and_the_loader_counts_the_try(
        pole: Pole, publish: Callable[..., str]) -> None:
    boot = updated(pole, publish)
    mark_healthy(pole, boot_id="a1b2c3d4-the-boot-before")  # left by 0.2.0 on slot A
    said: list[str] = []

    assert commit(pole.node(), boot, timeout_s=1, poll_s=0.1, say=said.append) == "rebooting"

    assert "the node was not healthy within 1 s; rebooting" in said[-1]
    assert pole.reboots[-1] == ["systemctl", "reboot"] and len(pole.reboots) == 2
    pending = pole.read(handoff.PENDING, handoff.Pending)
    assert pending is not None and pending.reply == REPLY
    assert not pole.has(handoff.RESULT)
    assert pole.power_on().state() == BootState(Slot.B, Slot.A, Slot.B, 2, 3, "")


def test_a_node_that_keeps_restarting_on_its_trial_boot_is_rebooted_before_the_deadline(
        pole: Pole, publish: Callable[..., str]) -> None:
    boot = updated(pole, publish)
    restarts = itertools.count()  # systemd's NRestarts of edge-node, one more each look
    said: list[str] = []

    # an hour's deadline: only the restarts can end this
    assert commit(pole.node(), boot, timeout_s=3600, max_restarts=3,
                  restarts=lambda: next(restarts), poll_s=0.01, say=said.append) == "rebooting"

    assert next(restarts) == 4  # it looked at 0, 1, 2 and 3
    assert "the node restarted 3 times; rebooting" in said[-1]
    assert pole.reboots[-1] == ["systemctl", "reboot"]
    assert pole.has(handoff.PENDING) and not pole.has(handoff.RESULT)


def test_after_the_loader_went_back_to_a_the_update_is_answered_rolled_back(
        pole: Pole, publish: Callable[..., str]) -> None:
    boot = updated(pole, publish)
    said: list[str] = []
    for _ in range(3):  # every trial boot the node crashes over and over
        assert commit(pole.node(), boot, timeout_s=3600, restarts=lambda: 3, poll_s=0.01,
                      say=said.append) == "rebooting"
        boot = pole.power_on()
    assert boot.state() == COMMITTED_A  # the boot script gave slot B up after 3 tries
    assert pole.running is Slot.A

    assert commit(pole.node(), boot, timeout_s=3600, say=said.append) == "reported"

    result = pole.read(handoff.RESULT, handoff.Result)
    assert result is not None
    assert (result.reply, result.status, result.version, result.slot) == (
        REPLY, "failed", RUNNING.label(), "A")
    assert result.error.startswith(f"rolled back: {UPDATE.label()} in slot B did not prove "
                                   "healthy")
    assert not pole.has(handoff.PENDING)
    assert boot.state() == COMMITTED_A
    assert len(pole.reboots) == 4  # the installer's and one per failed trial boot


def test_with_both_state_copies_gone_the_commit_service_writes_them_again(
        pole: Pole) -> None:
    for name in COPIES:  # e.g. a technician's fsck of the boot partition
        (pole.boot_dir / name).unlink()
    boot = pole.power_on()  # the boot script falls back to slot A with no trial
    assert boot.state().damaged.startswith(
        "safecity-ab-1.env is missing and safecity-ab-2.env is missing")
    said: list[str] = []

    assert commit(pole.node(), boot, timeout_s=60, say=said.append) == "healed"

    assert said[0].startswith("boot state damaged (safecity-ab-1.env is missing")
    assert boot.state() == COMMITTED_A
    for name in COPIES:
        assert read_copy(pole.boot_dir / name) == (DEFAULTS, "")
    assert printenv(pole.boot_dir, 1) == printenv(pole.boot_dir, 2) == DEFAULTS
    assert pole.reboots == []
