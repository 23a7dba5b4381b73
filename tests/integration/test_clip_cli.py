"""`edge-clip` as a technician and the node run it: the installed console script, a node
config file, recordings made by the real segmenter; export around an alert, verify, and see
a flipped byte named by its segment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import pytest
import yaml

from tests.support.node import NODE_ID, node_config
from tests.support.recording_footage import CAMERA, T0, recorded

EDGE_CLIP = Path(sys.executable).parent / "edge-clip"


def edge_clip(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EDGE_CLIP), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, check=False, timeout=60)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A node's config (hub never contacted) whose data_dir holds 40 s of recordings."""
    path = node_config(tmp_path, SimpleNamespace(host="127.0.0.1", port=1883, secure=False))  # type: ignore[arg-type]
    cfg = yaml.safe_load(path.read_text())
    cfg["recording"] = {"alert_window": {"before_s": 6, "after_s": 9}}
    path.write_text(yaml.safe_dump(cfg))
    recorded(Path(cfg["data_dir"]) / "recordings", seconds=40, segment_s=4).close()
    return path


def export(config: Path, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    run = edge_clip("export", "--config", config, "--camera", CAMERA, *args, "--json", cwd=cwd)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def test_a_clip_around_an_alert_exports_with_the_config_window_and_verifies(
        config: Path, tmp_path: Path) -> None:
    alert = "2026-11-21T14:59:30Z"  # T0 + 20 s
    result = export(config, "--around", alert, cwd=tmp_path)

    clip, manifest = Path(result["clip"]), Path(result["manifest"])
    assert clip == tmp_path / "street-20261121T145924Z.mp4"
    assert manifest == tmp_path / "street-20261121T145924Z.manifest.json"
    assert (result["start"], result["end"]) == (T0 + 14, T0 + 29)  # 6 s before, 9 s after
    assert result["gaps"] == [] and result["bytes"] == clip.stat().st_size
    with av.open(str(clip)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 150
    signed = json.loads(manifest.read_text())
    assert signed["node"] == NODE_ID and signed["camera"] == CAMERA

    key = edge_clip("key", "--config", config)
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert signed["key_fingerprint"] in key.stdout
    public = tmp_path / "data" / "identity" / "evidence-ed25519.pub.pem"

    check = edge_clip("verify", clip, "--key", public,
                      "--segments", tmp_path / "data" / "recordings")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith(f"OK: {clip.name} is camera street of node {NODE_ID}")


def test_a_flipped_byte_fails_verification_and_names_the_segment(
        config: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    result = export(config, "--start", str(T0 + 5), "--end", "2026-11-21T16:59:29+02:00",
                    "-o", str(tmp_path / "out" / "case-17.mp4"))  # T0 + 19 s
    assert (result["start"], result["end"]) == (T0 + 4, T0 + 19)
    clip = Path(result["clip"])
    signed = json.loads(Path(result["manifest"]).read_text())
    public = tmp_path / "data" / "identity" / "evidence-ed25519.pub.pem"
    second = signed["segments"][1]
    with av.open(str(clip)) as container:
        payload = [bytes(p) for p in container.demux(video=0) if p.size][
            second["in_clip"]["first"] + 5]
    data = bytearray(clip.read_bytes())
    data[data.find(payload) + len(payload) // 2] ^= 0x01
    clip.write_bytes(bytes(data))

    check = edge_clip("verify", clip, Path(result["manifest"]), "--key", public)

    assert check.returncode == 1
    assert check.stdout.startswith("FAILED: case-17.mp4: segment " + second["path"])
    assert "(14:59:18–14:59:22 UTC)" in check.stdout


def test_a_bad_time_is_one_clear_line_and_exit_2(config: Path) -> None:
    run = edge_clip("export", "--config", config, "--camera", CAMERA, "--around", "half past 3")

    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "'half past 3' is not a time" in lines[0]
    assert "ISO 8601" in lines[0] and "unix seconds" in lines[0]


def test_no_footage_is_one_clear_line_and_exit_1(config: Path, tmp_path: Path) -> None:
    run = edge_clip("export", "--config", config, "--camera", CAMERA,
                    "--start", "2026-11-22T08:00:00", "--end", "2026-11-22T08:01:00",
                    cwd=tmp_path)

    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "edge-clip: no footage from camera 'street' between 2026-11-22T08:00:00.000Z and "
        "2026-11-22T08:01:00.000Z; its recordings span 2026-11-21T14:59:10.000Z to "
        "2026-11-21T14:59:50.000Z"]
    assert not list(tmp_path.glob("*.mp4"))


def test_a_bad_config_is_reported_by_field_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "node.yaml"
    bad.write_text("node: {id: x}\n")

    run = edge_clip("key", "--config", bad)

    assert run.returncode == 2
    assert "node.site: required field is missing" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_legal_hold_keeps_footage_until_it_is_released(config: Path) -> None:
    from edge.config.loader import load_config
    from edge.record.budget import Budget, Keeper
    from edge.record.index import SegmentIndex

    held = edge_clip("hold", "--config", config, "--camera", CAMERA, "--start",
                     "2026-11-21T14:59:20Z", "--end", "2026-11-21T14:59:28Z",
                     "--reason", "case 77/2026")
    assert held.returncode == 0, held.stderr
    assert "legal hold 1:" in held.stdout and "3 segment(s) held" in held.stdout
    listed = edge_clip("holds", "--config", config)
    assert "case 77/2026" in listed.stdout and listed.stdout.startswith("1\t")

    root = load_config(config).recording_dir
    index = SegmentIndex(root)
    years_later = T0 + 3650 * 86400.0
    keeper = Keeper(index, Budget(max_bytes=1, max_fraction=None, min_free_bytes=0),
                    continuous_days=7, now=lambda: years_later)
    keeper.sweep()
    keeper.make_room(1)
    assert [s.start for s in index.segments()] == [T0 + 8, T0 + 12, T0 + 16]
    index.close()

    bad = edge_clip("release", "--config", config, "9")
    assert bad.returncode == 1 and "no legal hold 9" in bad.stderr
    released = edge_clip("release", "--config", config, "1")
    assert released.returncode == 0, released.stderr
    assert edge_clip("holds", "--config", config).stdout.strip() == "no legal holds"
