"""Holding footage for alerts and events: the main process's only write to the recordings.

A call-button press pins every camera's footage from `alert_window.before_s` before it to
`after_s` after it; a vision event pins its camera's footage around the object's visit.
Pinning is one index row (no video is touched), done after the alert has been sent. A
recordings disk that refuses it is logged and counted; the alert itself is unaffected.
"""

from __future__ import annotations

import logging
import time

from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.record.index import Category, RecordingIndexError, SegmentIndex

log = logging.getLogger(__name__)

DAY_S = 86400.0


class FootagePins:
    def __init__(self, cfg: NodeConfig, counters: Counters) -> None:
        self.cfg, self.counters = cfg.recording, counters
        self.root = cfg.recording_dir
        self._index: SegmentIndex | None = None

    def alert(self, alert_id: str, at: float) -> None:
        w = self.cfg.alert_window
        self._pin(None, at - w.before_s, at + w.after_s, Category.ALERT, f"alert {alert_id}",
                  self.cfg.retention_days.alert)

    def event(self, camera: str, event_id: str, started: float, latest: float) -> None:
        w = self.cfg.event_window
        self._pin(camera, started - w.before_s, latest + w.after_s, Category.EVENT,
                  f"event {event_id}", self.cfg.retention_days.event)

    def _pin(self, camera: str | None, start: float, end: float, category: Category,
             reason: str, days: float) -> None:
        now = time.time()
        try:
            if self._index is None:
                self._index = SegmentIndex(self.root)
            self._index.pin(camera, start, end, category, reason, now=now,
                            expires=now + days * DAY_S)
        except (OSError, RecordingIndexError) as e:
            self.counters.inc("pin_errors")
            log.error("footage for %s not pinned: %s", reason, e)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
