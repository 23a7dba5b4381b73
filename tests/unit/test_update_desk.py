"""The node's side of a firmware update without a broker: when it tells the commit service it
is healthy (edge/uplink/firmware.py). The command's round trip runs on a real node in
tests/integration/test_firmware_commands.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract.commands import FirmwareUpdate, Response
from edge.uplink import firmware as update
from edge.uplink.client import ReplyTo
from edge.uplink.firmware import FirmwareDesk, booted_slot
from firmware import handoff
from firmware.handoff import Healthy, Pending, Reply

ALL_WELL = {"watchdog": True, "uplink": True, "cameras": True}


def make_desk(tmp_path: Path, root: str = "/dev/mmcblk0p2") -> tuple[FirmwareDesk, list[Response]]:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"console=serial0,115200 root={root} rootwait\n")
    answers: list[Response] = []
    desk = FirmwareDesk(tmp_path / "firmware", lambda _reply, r: answers.append(r),
                        lambda: True, cmdline=cmdline)
    return desk, answers


def arm(tmp_path: Path, slot: str = "B") -> None:
    """What the installer leaves for the commit service: slot B armed for a trial boot."""
    handoff.write(tmp_path / "firmware", handoff.PENDING, Pending(
        reply=Reply(id="fw-1"), version="0.2.0 (build 1763730000)", slot=slot,
        from_slot="A", from_version="0.1.0 (build 1763000000)"))


def healthy(tmp_path: Path) -> Healthy | None:
    return handoff.read(tmp_path / "firmware", handoff.HEALTHY, Healthy)


def test_a_node_not_on_trial_writes_nothing(tmp_path: Path) -> None:
    desk, _ = make_desk(tmp_path)
    desk.mark_healthy(ALL_WELL)
    assert not (tmp_path / "firmware" / handoff.HEALTHY).exists()


def test_the_marker_waits_for_every_check_then_is_written_once_a_boot(tmp_path: Path) -> None:
    arm(tmp_path)
    desk, _ = make_desk(tmp_path)
    desk.mark_healthy({**ALL_WELL, "cameras": False})
    desk.mark_healthy({**ALL_WELL, "uplink": False})
    assert healthy(tmp_path) is None
    desk.mark_healthy(ALL_WELL)
    mark = healthy(tmp_path)
    assert mark is not None and mark.boot_id == handoff.boot_id() and mark.checks == ALL_WELL
    (tmp_path / "firmware" / handoff.HEALTHY).unlink()  # the commit service took it
    desk.mark_healthy(ALL_WELL)
    assert healthy(tmp_path) is None, "written twice in one boot"

    handoff.write(tmp_path / "firmware", handoff.HEALTHY, mark)
    again, _ = make_desk(tmp_path)  # the node restarted in the same boot
    again.mark_healthy(ALL_WELL)
    assert healthy(tmp_path) == mark

    handoff.write(tmp_path / "firmware", handoff.HEALTHY, Healthy(boot_id="an earlier boot"))
    later, _ = make_desk(tmp_path)
    later.mark_healthy(ALL_WELL)
    mark = healthy(tmp_path)
    assert mark is not None and mark.boot_id == handoff.boot_id()


def test_an_update_armed_for_the_next_boot_is_not_proved_by_this_one(tmp_path: Path) -> None:
    arm(tmp_path, slot="B")
    desk, _ = make_desk(tmp_path, root="PARTUUID=4f1c2a9e-02")
    assert desk.slot == "A"
    desk.mark_healthy(ALL_WELL)
    assert healthy(tmp_path) is None
    on_trial, _ = make_desk(tmp_path, root="PARTUUID=4f1c2a9e-03")
    on_trial.mark_healthy(ALL_WELL)
    assert healthy(tmp_path) is not None
    assert on_trial.stats().slot == "B" and on_trial.stats().update is None


def test_the_booted_slot_comes_from_the_root_partition(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    for line, slot in (("root=PARTUUID=4f1c2a9e-02 rootwait", "A"),
                       ("quiet root=PARTUUID=4f1c2a9e-03", "B"),
                       ("root=PARTUUID=4f1c2a9e-04", ""), ("root=/dev/sda2", "")):
        cmdline.write_text(line)
        assert booted_slot(cmdline) == slot, line
    assert booted_slot(tmp_path / "missing") == ""


def test_a_request_no_installer_takes_fails_and_frees_the_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(update, "TAKE_S", 0.0)
    desk, answers = make_desk(tmp_path)
    command = FirmwareUpdate(id="fw-1", issued=datetime.now(UTC), url="https://hub/fw.sfw")
    assert desk.start(command, ReplyTo()).status == "accepted"
    assert (tmp_path / "firmware" / handoff.REQUEST).exists()
    desk.poll()
    assert [a.status for a in answers] == ["failed"]
    assert "installer did not take" in answers[0].error
    assert not (tmp_path / "firmware" / handoff.REQUEST).exists()
    assert desk.start(command.model_copy(update={"id": "fw-2"}), ReplyTo()).status == "accepted"
