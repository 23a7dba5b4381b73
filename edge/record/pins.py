"""Holding footage for alerts and events: the main process's only write to the recordings.

A call-button press pins every camera's footage from `alert_window.before_s` before it to
`after_s` after it; a vision event pins its camera's footage around the object's visit.
Pinning is one index row (no video is touched), done after the alert has been sent. A
recordings disk that refuses it is logged and counted; the alert itself is unaffected.
The window is in wall time (the alert's and event's own); a pin also holds it in recorded
time, and expires after its retention in recorded time (edge/record/timeline.py), so a
clock step neither shortens a pin nor lets footage after the step slip out of it.
"""

from __future__ import annotations

import logging

from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.record.index import Category, RecordingIndexError, SegmentIndex
from edge.record.timeline import Clock, SystemClock, Timeline

log = logging.getLogger(__name__)

DAY_S = 86400.0


class FootagePins:
    def __init__(self, cfg: NodeConfig, counters: Counters, clock: Clock | None = None) -> None:
        self.cfg, self.counters = cfg.recording, counters
        self.root = cfg.recording_dir
        self.clock = clock or SystemClock()
        self._index: SegmentIndex | None = None
        self._timeline: Timeline | None = None

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
        try:
            if self._index is None or self._timeline is None:
                self._index = self._index or SegmentIndex(self.root)
                self._timeline = Timeline(self._index, self.clock)
            now = self._timeline.now()
            self._index.pin(camera, start, end, category, reason, now=now,
                            expires=now.rec + days * DAY_S)
        except (OSError, RecordingIndexError) as e:
            self.counters.inc("pin_errors")
            log.error("footage for %s not pinned: %s", reason, e)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index, self._timeline = None, None
