"""Network namespaces for fault tests: a pole and its broker on two sides of a real link.

PoleNetwork makes two namespaces, `node` and `broker`, joined by a veth pair (the pole's
uplink: the one faults are applied to), and a second veth pair from the root namespace
(where the test process plays the hub) to the broker namespace, which is never faulted.
The broker's address is on the broker namespace's loopback and routed from both sides,
so the node and the hub use the same address (and the broker's certificate names one).

Faults: the uplink's veth taken down and up, and random packet loss both ways with
nftables (`numgen random mod 100 < N drop`) inside the node namespace. The kernel has no
netem, so latency and stalls are the fault proxy's job (tests/support/faultproxy.py).

Names carry the owning process id (`sctf-<pid>-<n>-node`), so runs at the same time do
not collide, and sweep() removes what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
from types import TracebackType

PREFIX = "sctf"
SUBNETS = ipaddress.ip_network("10.213.0.0/16")  # one /24 per PoleNetwork, 10.213.N.0
_counter = itertools.count(1)
_NAME = re.compile(rf"^{PREFIX}-?(\d+)[-a-z]")


def ip(*args: str, stdin: str | None = None) -> str:
    """Run `ip ARGS`; fail naming the command and why."""
    cmd = ["ip", *args]
    run = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {run.stderr.strip()}")
    return run.stdout


def unavailable() -> str | None:
    """Why namespaces cannot be made here (a reason for pytest.skip), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing: apt-get install {package}"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    try:
        ip("netns", "add", probe)
    except RuntimeError as e:
        return f"cannot make a network namespace: {e}"
    ip("netns", "del", probe)
    return None


def sweep() -> None:
    """Remove namespaces and links left by test runs whose process is gone."""
    for name in ip("netns", "list").split():
        owner = _owner(name)
        if owner is None or _alive(owner):
            continue
        for pid in ip("netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)  # a broker or node the dead run started
        with contextlib.suppress(RuntimeError):
            ip("netns", "del", name)
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        owner = _owner(name)
        if owner is not None and not _alive(owner):
            with contextlib.suppress(RuntimeError):
                ip("link", "del", name)


def _owner(name: str) -> int | None:
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_subnet() -> int:
    """A third octet no address or route in the root namespace uses yet."""
    used = ip("-4", "-o", "addr", "show") + ip("-4", "route", "show")
    base = str(SUBNETS.network_address).rsplit(".", 2)[0]  # "10.213"
    for n in range(256):
        if f"{base}.{n}." not in used:
            return n
    raise RuntimeError(f"no free /24 left in {SUBNETS} for a test network")


class PoleNetwork:
    """A node namespace and a broker namespace joined by a faultable link, and the root
    namespace joined to the broker by a link that is never faulted."""

    def __init__(self) -> None:
        sweep()
        pid, n = os.getpid(), next(_counter)
        self.node_ns = f"{PREFIX}-{pid}-{n}-node"
        self.broker_ns = f"{PREFIX}-{pid}-{n}-brk"
        self.node_if = f"{PREFIX}{pid}n{n}"  # the node's end of the uplink
        self._broker_if = f"{PREFIX}{pid}b{n}"
        self._root_if = f"{PREFIX}{pid}h{n}"  # the hub's end, in the root namespace
        self._hub_if = f"{PREFIX}{pid}r{n}"
        net = f"{str(SUBNETS.network_address).rsplit('.', 2)[0]}.{_free_subnet()}"
        self._node_ip, self._broker_uplink_ip = f"{net}.1", f"{net}.2"
        self._root_ip, self._broker_hub_ip = f"{net}.5", f"{net}.6"
        self.broker_ip = f"{net}.9"
        self._made = False
        self._loss = False

    def wrap(self, ns: str) -> list[str]:
        """A command prefix that runs a process inside namespace `ns`."""
        return ["ip", "netns", "exec", ns]

    @property
    def node_wrap(self) -> list[str]:
        return self.wrap(self.node_ns)

    @property
    def broker_wrap(self) -> list[str]:
        return self.wrap(self.broker_ns)

    def create(self) -> PoleNetwork:
        self._made = True
        node, brk = self.node_ns, self.broker_ns
        ip("netns", "add", node)
        ip("netns", "add", brk)
        ip("link", "add", self.node_if, "netns", node, "type", "veth",
           "peer", "name", self._broker_if, "netns", brk)
        ip("link", "add", self._root_if, "type", "veth", "peer", "name", self._hub_if,
           "netns", brk)
        ip("-n", node, "addr", "add", f"{self._node_ip}/30", "dev", self.node_if)
        ip("-n", brk, "addr", "add", f"{self._broker_uplink_ip}/30", "dev", self._broker_if)
        ip("-n", brk, "addr", "add", f"{self._broker_hub_ip}/30", "dev", self._hub_if)
        ip("-n", brk, "addr", "add", f"{self.broker_ip}/32", "dev", "lo")
        ip("addr", "add", f"{self._root_ip}/30", "dev", self._root_if)
        for ns, dev in ((node, "lo"), (node, self.node_if), (brk, "lo"),
                        (brk, self._broker_if), (brk, self._hub_if)):
            ip("-n", ns, "link", "set", dev, "up")
        ip("link", "set", self._root_if, "up")
        ip("route", "add", f"{self.broker_ip}/32", "via", self._broker_hub_ip)
        self._route_node()
        return self

    def _route_node(self) -> None:
        ip("-n", self.node_ns, "route", "replace", f"{self.broker_ip}/32",
           "via", self._broker_uplink_ip)

    # --- faults on the node's uplink ---

    def link(self, up: bool) -> None:
        """Take the node's end of the uplink down (cable pulled) or bring it back."""
        ip("-n", self.node_ns, "link", "set", self.node_if, "up" if up else "down")
        if up:
            self._route_node()  # the kernel drops routes through a link that went down

    def drop(self, percent: int) -> None:
        """Drop `percent` % of the packets either way on the node's uplink, at random;
        0 clears it."""
        if self._loss:
            ip("netns", "exec", self.node_ns, "nft", "delete", "table", "inet", PREFIX)
            self._loss = False
        if percent <= 0:
            return
        dev, rule = f'"{self.node_if}"', (
            "drop" if percent >= 100 else f"numgen random mod 100 < {int(percent)} drop")
        ip("netns", "exec", self.node_ns, "nft", "-f", "-", stdin=(
            f"table inet {PREFIX} {{\n"
            f"  chain in {{ type filter hook input priority 0; iifname {dev} {rule}; }}\n"
            f"  chain out {{ type filter hook output priority 0; oifname {dev} {rule}; }}\n"
            "}\n"))
        self._loss = True

    # --- life ---

    def close(self) -> None:
        if not self._made:
            return
        for ns in (self.node_ns, self.broker_ns):
            for pid in ip("netns", "pids", ns).split() if _exists(ns) else []:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)  # nothing of ours may outlive the test
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", ns)
        with contextlib.suppress(RuntimeError):
            ip("link", "del", self._root_if)  # gone with the broker namespace, normally
        self._made = False

    def __enter__(self) -> PoleNetwork:
        try:
            return self.create()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def _exists(ns: str) -> bool:
    return ns in ip("netns", "list").split()
