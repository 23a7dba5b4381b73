"""A node with a camera: its config for vision or for recording, and the recording index it
writes, read as another process would."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import yaml

from devkit.localbroker import LocalBroker
from tests.support.node import node_config
from tests.support.recording_footage import h264_footage


def vision_config(tmp_path: Path, broker: LocalBroker, url: str, **camera: Any) -> Path:
    path = node_config(tmp_path, broker)
    cfg = yaml.safe_load(path.read_text())
    cfg["cameras"] = [{"name": "street", "url": url, **camera}]
    cfg["vision"] = {"hang_timeout_s": 3}
    path.write_text(yaml.safe_dump(cfg))
    return path


def recording_config(tmp_path: Path, broker: LocalBroker, **recording: Any) -> Path:
    path = node_config(tmp_path, broker)
    cfg = yaml.safe_load(path.read_text())
    cfg["cameras"] = [{"name": "street", "url": str(h264_footage(300)), "loop": True,
                       "detect": False}]
    cfg["vision"] = {"hang_timeout_s": 3}
    cfg["recording"] = {"segment_s": 2, "min_free": "1MB", **recording}
    path.write_text(yaml.safe_dump(cfg))
    return path


def indexed(root: Path) -> list[tuple[str, int, str]]:
    """(path, bytes, sha256) of every segment the index lists, read as another process would."""
    db = root / "index.sqlite"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("SELECT path, bytes, sha256 FROM segments ORDER BY start").fetchall()
    except sqlite3.OperationalError:  # the node has created the file but not yet its tables
        return []
    finally:
        conn.close()
