"""Vision events: what the hub hears about a tracked object, as a lifecycle new → update → end.

One event per confirmed track of a label the node reports. `new` once, when the track is
confirmed; `update` only when something a dispatcher acts on changes (entered or left a
zone, started or stopped loitering, stopped or started moving) or, at most once per
`update_interval_s`, as a heartbeat; `end` once, when the track is dropped or the stream
closes. All messages of one event share its `event_id`; its snapshot is named after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from contract.ids import uuid7
from contract.payloads import Event, EventPhase
from edge.vision.geometry import Size, normalise

if TYPE_CHECKING:  # the node's main process imports this module: no numpy or OpenCV here
    from edge.detectors.base import Box
    from edge.vision.tracker import Track
    from edge.vision.zones import ZoneStatus

Phase = Literal["new", "update", "end"]

DEFAULT_LABELS = frozenset({"person", "car", "bus", "truck", "motorcycle", "bicycle"})


@dataclass(frozen=True, slots=True)
class VisionEvent:
    """One message about one tracked object. `box` is normalised (0..1 of the frame)."""

    phase: Phase
    event_id: str
    camera: str
    track_id: int
    label: str
    score: float
    box: Box
    zones: tuple[str, ...]  # zones the object is in now
    entered: tuple[str, ...]  # zones entered since this event's previous message
    left: tuple[str, ...]  # zones left since this event's previous message
    dwell_s: dict[str, float]
    loitering: tuple[str, ...]
    stationary: bool
    started_at: datetime
    time: datetime
    snapshot: str | None = None  # "<camera>/<event_id>.jpg" under the snapshot directory


def event_payload(ev: VisionEvent, node_id: str, seq: int) -> bytes:
    """The `poles/<node>/event` message for one event, numbered `seq` by the backlog."""
    return Event(
        id=ev.event_id, seq=seq, node=node_id, camera=ev.camera, phase=EventPhase(ev.phase),
        track=ev.track_id, label=ev.label, score=round(ev.score, 3),
        box=tuple(round(v, 4) for v in ev.box),  # type: ignore[arg-type]
        zones=list(ev.zones), entered=list(ev.entered), left=list(ev.left),
        dwell_s={k: round(v, 1) for k, v in ev.dwell_s.items()},
        loitering=list(ev.loitering), stationary=ev.stationary,
        started=ev.started_at, time=ev.time, snapshot=ev.snapshot,
    ).to_bytes()


@dataclass(slots=True)
class _Story:
    """What has been said about one track, and what happened since."""

    event_id: str | None = None  # None until `new` is sent
    started_at: datetime | None = None
    entered: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    zones: tuple[str, ...] = ()  # as of the last frame
    dwell_s: dict[str, float] = field(default_factory=dict)
    loitering_now: tuple[str, ...] = ()
    loitering: tuple[str, ...] = ()  # as last said
    stationary: bool = False  # as last said
    last_sent: float = 0.0

    def note(self, status: ZoneStatus | None) -> None:
        if status is None:
            return
        self.entered += [z for z in status.entered if z not in self.entered]
        self.left += [z for z in status.left if z not in self.left]
        self.zones, self.dwell_s = status.zones, status.dwell_s
        self.loitering_now = status.loitering


class EventLifecycle:
    """Turns tracks and their zone status, frame by frame, into the events of one camera.

    `wall_time` maps the pipeline's time `t` (seconds) to the wall clock stamped on events.
    """

    def __init__(
        self,
        camera: str,
        frame_size: Size,
        wall_time: Callable[[float], datetime],
        *,
        labels: Iterable[str] = DEFAULT_LABELS,
        update_interval_s: float | None = 30.0,
    ) -> None:
        self.camera = camera
        self.frame_size = frame_size
        self.labels = frozenset(labels)
        self.update_interval_s = update_interval_s
        self._wall_time = wall_time
        self._stories: dict[int, _Story] = {}

    @property
    def open_event_ids(self) -> dict[int, str]:
        """Track id -> event id of every event that has had `new` and not yet `end`."""
        return {tid: s.event_id for tid, s in self._stories.items() if s.event_id is not None}

    def update(
        self,
        tracks: Sequence[Track],
        zones: Mapping[int, ZoneStatus],
        removed: Sequence[Track],
        t: float,
    ) -> list[VisionEvent]:
        """Events for one frame at time `t`: live `tracks`, their `zones`, tracks `removed`."""
        events: list[VisionEvent] = []
        for track in tracks:
            story = self._stories.setdefault(track.id, _Story())
            story.note(zones.get(track.id))
            if story.event_id is None:
                if track.confirmed and track.label in self.labels:
                    story.event_id = uuid7()
                    story.started_at = self._wall_time(track.first_seen)
                    events.append(self._say("new", track, story, t))
                continue
            changed = (
                bool(story.entered or story.left)
                or story.loitering_now != story.loitering
                or track.stationary != story.stationary
            )
            due = (
                self.update_interval_s is not None
                and t - story.last_sent >= self.update_interval_s
            )
            if changed or due:
                events.append(self._say("update", track, story, t))
        for track in removed:
            story = self._stories.pop(track.id, _Story())
            if story.event_id is not None:
                events.append(self._say("end", track, story, t))
        return events

    def close(self, tracks: Sequence[Track], t: float) -> list[VisionEvent]:
        """`end` for every open event (the stream stopped); forgets all tracks."""
        events = [
            self._say("end", track, self._stories[track.id], t)
            for track in tracks
            if track.id in self._stories and self._stories[track.id].event_id is not None
        ]
        self._stories.clear()
        return events

    def _say(self, phase: Phase, track: Track, story: _Story, t: float) -> VisionEvent:
        if story.event_id is None or story.started_at is None:  # set when `new` is said
            raise RuntimeError(f"track {track.id}: news before its event began")
        event = VisionEvent(
            phase=phase,
            event_id=story.event_id,
            camera=self.camera,
            track_id=track.id,
            label=track.label,
            score=round(track.score, 3),
            box=_rounded(normalise(track.box, self.frame_size)),
            zones=story.zones,
            entered=tuple(story.entered),
            left=tuple(story.left),
            dwell_s=dict(story.dwell_s),
            loitering=story.loitering_now,
            stationary=track.stationary,
            started_at=story.started_at,
            time=self._wall_time(t),
        )
        story.entered, story.left = [], []
        story.loitering = story.loitering_now
        story.stationary = track.stationary
        story.last_sent = t
        return event


def _rounded(box: Box) -> Box:
    x1, y1, x2, y2 = box
    return round(x1, 4), round(y1, 4), round(x2, 4), round(y2, 4)
