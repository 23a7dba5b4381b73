"""A node's worker processes die with it, whenever it dies: a `kill -9` (or a stop) at any
moment around a worker's start or restart, even in the first milliseconds of its spawn,
leaves no process of the node's behind.

Each round runs a real node with one camera (camera and detection workers, and the frame
ring's resource tracker) and kills it at one moment: as its first worker appears, or as the
supervisor restarts a worker the test killed, at once or after a random 0–300 ms. The
camera is a named pipe that never delivers a byte, as a camera fed through a pipe by
another program can: its worker blocks reading it, as the one orphan found in the field
did, so a worker that missed its node's death stays to be found. Every round's node gets an
environment variable of its own, which every process it starts inherits, so whatever
outlives the node is found in /proc however it was reparented.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devkit.localbroker import LocalBroker
from tests.support.camera_node import recording_config, vision_config
from tests.support.hub_clients import Desk
from tests.support.node import NodeProcess
from tests.support.paths import ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

MARK = "SAFECITY_ORPHAN_ROUND"
SEED = 1
SETTLE_S = 5.0  # after the node is gone, how long its processes get to go too
WORKER_NICE = 10  # vision.worker_nice's default: a worker with it runs its own code


@dataclass(frozen=True)
class Moment:
    signal: signal.Signals
    respawn: str | None  # the worker killed to make the supervisor restart it; None: first start
    delay_s: float  # from the new worker's pid appearing to the node's kill

    def __str__(self) -> str:
        spawn = f"restart of the {self.respawn} worker" if self.respawn else "first spawn"
        return f"{self.signal.name} {self.delay_s * 1000:.0f} ms into the {spawn}"


def plan(rng: random.Random) -> list[Moment]:
    kill, term = signal.SIGKILL, signal.SIGTERM

    def later() -> float:
        return rng.uniform(0.0, 0.3)

    return [
        Moment(kill, None, 0.0), Moment(kill, None, later()),
        Moment(kill, "camera", 0.0), Moment(kill, "detector", 0.0),
        Moment(kill, "camera", later()), Moment(kill, "detector", later()),
        Moment(kill, "detector", later()), Moment(kill, "camera", later()),
        Moment(term, "detector", 0.0), Moment(term, "camera", later()),
    ]


def children(pid: int) -> set[int]:
    """The processes `pid` started that still are its children (any of its threads)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found.update(int(c) for c in Path(task.path, "children").read_text().split())
    return found


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the state on (3rd) onwards


def marked(value: str) -> dict[int, str]:
    """Living processes (not zombies) that carry MARK=value: the round's node and its kin."""
    entry = f"\0{MARK}={value}\0".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        with contextlib.suppress(OSError):
            if entry not in b"\0" + Path(f"/proc/{pid}/environ").read_bytes():
                continue
            stat = _stat(pid)
            if stat is None or stat[0] in "ZX":
                continue
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            rss_kb = int(stat[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
            found[pid] = f"{cmd[:110]} [state {stat[0]}, in {wchan or '-'}, {rss_kb} kB]"
    return found


def runs_own_code(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and int(stat[16]) >= WORKER_NICE  # field 19: nice


def worker_pid(node: NodeProcess, kind: str, since: int) -> int | None:
    """The pid of the newest `kind` worker in the node's log from offset `since` on."""
    line = f"camera street: {kind} worker started (pid "
    starts = [part.split(")", 1)[0] for part in node.log()[since:].split(line)[1:]]
    return int(starts[-1]) if starts else None


def run_round(node: NodeProcess, moment: Moment, mark: str, since: int) -> dict[int, str]:
    """Kill `node` (started with MARK=`mark`; its log is its own from offset `since` on) at
    `moment`; the processes of its round still alive SETTLE_S after it is gone."""
    assert node.proc is not None
    pid = node.proc.pid
    known: set[int] = set()
    if moment.respawn is not None:
        wait_for(lambda: all(worker_pid(node, k, since) for k in ("camera", "detector")), 30,
                 "both workers started")
        victim = worker_pid(node, moment.respawn, since)
        assert victim is not None
        wait_for(lambda: runs_own_code(victim), 30, f"the {moment.respawn} worker running")
        known = children(pid)
        os.kill(victim, signal.SIGKILL)
    # Caught within a poll (5 ms) of the fork. At the first start, the frame ring's resource
    # tracker comes before the first worker.
    wait_for(lambda: len(children(pid) - known) >= (1 if known else 2), 30,
             "a new worker process under the node")
    if moment.delay_s:
        time.sleep(moment.delay_s)
    if moment.signal is signal.SIGKILL:
        node.kill9()
    else:
        node.stop()
    with contextlib.suppress(AssertionError):  # what is left then is the verdict
        wait_for(lambda: not marked(mark), SETTLE_S, "the node's processes to go")
    left = marked(mark)
    for orphan in left:  # so that one failing round does not load the machine for the next
        with contextlib.suppress(OSError):
            os.kill(orphan, signal.SIGKILL)
    return left


def test_a_node_killed_around_a_worker_start_or_restart_leaves_no_process_behind(
    tmp_path: Path, broker: LocalBroker, start_node: Callable[..., NodeProcess],
) -> None:
    camera = tmp_path / "camera.fifo"
    os.mkfifo(camera)
    writer = os.open(camera, os.O_RDWR)  # held open and silent: a reader waits for data
    config = vision_config(tmp_path, broker, str(camera))
    rng = random.Random(SEED)
    orphans: list[str] = []
    try:
        for number, moment in enumerate(plan(rng)):
            since = len((tmp_path / "node.log").read_text()) if number else 0
            mark = f"{os.getpid()}-{number}"
            node = start_node(config, env={MARK: mark})
            for pid, what in run_round(node, moment, mark, since).items():
                orphans.append(f"round {number} ({moment}): pid {pid} {what}")
    finally:
        os.close(writer)
    assert not orphans, f"{len(orphans)} processes outlived their node:\n" + "\n".join(orphans)


def test_a_child_whose_parent_died_before_its_first_line_never_runs_its_program(
    tmp_path: Path,
) -> None:
    """The other half of the death signal: set too late to fire, it is followed by a look
    at who the parent is now. A parent starts a child, freezes it before its interpreter
    gets to its first line, and exits; the child, thawed as an orphan, must not run on."""
    ran = tmp_path / "ran"
    (tmp_path / "orphan_probe.py").write_text(
        f"def main():\n    open({str(ran)!r}, 'w').close()\n")
    parent = textwrap.dedent(f"""
        import os, signal, subprocess, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(tmp_path)!r}]
        from drivers.platform.parent_death import python_child
        child = subprocess.Popen(python_child("orphan_probe:main"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.kill(child.pid, signal.SIGSTOP)
        print(child.pid, flush=True)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, check=True,
                         text=True, timeout=30)
    child = int(out.stdout)
    # Gone already if the stop came after its first line: the parent's death killed it.
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signal.SIGCONT)
    wait_for(lambda: (_stat(child) or ["X"])[0] in "ZX", 10, "the orphan to die")
    assert not ran.exists(), "the orphaned child ran its program"


def test_a_node_killed_while_it_exports_a_clip_leaves_no_process_behind(
    tmp_path: Path, broker: LocalBroker, start_node: Callable[..., NodeProcess],
) -> None:
    """The hub asks for an alert's clip whose after-window is still to come, so the export's
    child has pinned the footage and waits for the camera to record the rest; the node is
    killed then. The export's child (and anything it keeps alive) goes with it."""
    mark = f"{os.getpid()}-clip"
    index = tmp_path / "data" / "recordings" / "index.sqlite"

    def pinned(reason: str) -> bool:  # read as another process would
        if not index.exists():
            return False
        with contextlib.closing(sqlite3.connect(index, timeout=5)) as db:
            try:
                return bool(db.execute("SELECT 1 FROM pins WHERE reason = ?", (reason,)).fetchall())
            except sqlite3.OperationalError:  # the tables are not made yet
                return False

    node = start_node(recording_config(tmp_path, broker), env={MARK: mark})
    desk = Desk(broker)
    try:
        desk.listening()
        now = datetime.now(UTC)
        cid = desk.send("clip.request", {
            "camera": "street", "start": (now - timedelta(seconds=5)).isoformat(),
            "end": (now + timedelta(seconds=30)).isoformat(),
            "upload_url": "http://127.0.0.1:9/clip.mp4"})
        wait_for(lambda: desk.of(cid), 30, "the clip request accepted")
        assert [a["status"] for a in desk.of(cid)] == ["accepted"], desk.of(cid)
        wait_for(lambda: pinned(f"request {cid}"), 30, "the export pinning its window")
    finally:
        desk.close()
    node.kill9()
    with contextlib.suppress(AssertionError):  # what is left then is the verdict
        wait_for(lambda: not marked(mark), SETTLE_S, "the node's processes to go")
    left = marked(mark)
    for orphan in left:
        with contextlib.suppress(OSError):
            os.kill(orphan, signal.SIGKILL)
    assert not left, f"{len(left)} processes outlived their node:\n" + "\n".join(
        f"pid {pid} {what}" for pid, what in left.items())

