"""A real Mosquitto broker on a free port, for the demo, the tests and benchmarks.

Run from its own config file, not as a system service, and stoppable and restartable on
the same port so outages can be staged. Persistence is on, so a clean restart keeps
sessions and queued QoS 1 messages, as the hub's broker would.

Two modes:
- plaintext (default): anonymous MQTT on `host`, no ACL; quick to reason about.
- secure: the hub's reference config, hub/broker/mosquitto.conf and its acl, with
  only these mechanical changes: every file it names (ca.crt, server.crt, server.key,
  acl, the persistence directory, the log file) is in the broker's work dir; the listener
  port is this broker's port, plus a bind address if one is given; `user root` is
  appended (started as root, mosquitto would switch to a user that cannot read the keys).
  The work dir gets its own PKI (provisioning.pki): a CA, the broker's server certificate for
  `host`, 127.0.0.1 and localhost, and client certificates on demand (`identity`).
  The reference config makes a client's id its certificate's name, so every hub-side client
  needs a hub consumer's certificate of its own: `hub_identity()` hands out the names the
  reference ACL grants the hub's rights (hub.<role>), one no other consumer holds;
  `client(HUB)`, `tls(HUB)` and `hub_tls` do the same, and `release()` frees a closed one's.

`wrap` is a command prefix for the broker (e.g. `ip netns exec ns-broker`); readiness is
a TCP connect to host:port from this process, so a broker in a network namespace reached
through a veth at `host` works the same.
"""

from __future__ import annotations

import ipaddress
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt

from contract.link import TlsSection, make_client
from provisioning import pki

REFERENCE = Path(str(resources.files("hub") / "broker"))  # the hub's reference config
# reference config keys whose value is a file: the value becomes <workdir>/<its file name>
_FILE_KEYS = ("cafile", "certfile", "keyfile", "acl_file")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def reference_config(directory: Path, port: int, bind: str | None = None) -> str:
    """hub/broker/mosquitto.conf with its files in `directory`, listening on `port`
    (`bind`: one address, else all), run as root. Fails if the reference changed shape so
    that a substitution no longer applies."""
    out: list[str] = []
    done: list[str] = []
    for line in (REFERENCE / "mosquitto.conf").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in _FILE_KEYS:
            line = f"{key} {directory / Path(value).name}"
        elif key == "persistence_location":
            line = f"{key} {directory}/"
        elif key == "log_dest" and value.startswith("file "):
            line = f"{key} file {directory / Path(value.removeprefix('file ')).name}"
        elif key == "listener":
            line = f"listener {port}" + (f" {bind}" if bind else "")
        else:
            out.append(line)
            continue
        done.append(key)
        out.append(line)
    expected = sorted([*_FILE_KEYS, "persistence_location", "log_dest", "listener"])
    if sorted(done) != expected:
        raise RuntimeError(f"{REFERENCE / 'mosquitto.conf'} no longer has exactly one of each "
                           f"of {', '.join(expected)}; update devkit/localbroker.py with it")
    out.append("user root")
    return "\n".join(out) + "\n"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalBroker:
    def __init__(
        self, workdir: Path | None = None, port: int | None = None, *, secure: bool = False,
        host: str = "127.0.0.1", bind: str | None = None, wrap: Sequence[str] = (),
    ) -> None:
        """`host`: where clients reach the broker. `bind`: the address it listens on;
        by default `host` if that is loopback, else every address."""
        self.port = port or free_port()
        self.host = host
        self.secure = secure
        self._own_dir = workdir is None
        self.dir = (workdir or Path(tempfile.mkdtemp(prefix="edge-broker-"))).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        self._exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._wrap = list(wrap)
        self._proc: subprocess.Popen[bytes] | None = None
        self._identities: dict[str, TlsSection] = {}
        self._hub_keys: dict[str, str] = {}  # hub_identity's key → the hub name it got
        self._pooled: set[str] = set()  # hub names hub_identity has given out, ever
        self._held: set[str] = set()  # ... and those not released since
        if bind is None and _loopback(host):
            bind = host
        if secure:
            self.ca = pki.make_ca(self.dir, name="Safe City test CA")
            pki.issue(self.ca, "server", self.dir, stem="server",
                      server_names=dict.fromkeys([host, "127.0.0.1", "localhost"]))
            shutil.copyfile(REFERENCE / "acl", self.dir / "acl")
            self.conf.write_text(reference_config(self.dir, self.port, bind))
            return
        self.conf.write_text(
            f"listener {self.port}{f' {bind}' if bind else ''}\n"
            "allow_anonymous true\n"
            "user root\n"  # started as root, mosquitto would drop to a user that cannot write here
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_queued_messages 100000\n"
            "set_tcp_nodelay true\n"  # as the hub's broker should: alerts are small packets
        )

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.secure else 'mqtt'}://{self.host}:{self.port}"

    # --- identities (secure mode) ---

    def identity(self, name: str) -> TlsSection:
        """Mutual TLS files for a client whose certificate CN (its MQTT username and, on the
        reference config, its client id) is `name`: a node id, or a hub consumer's name.
        Issued once per broker and kept: every client given it shares one session."""
        self._need_certificates()
        if name == pki.HUB:
            raise ValueError(f"no client is named {pki.HUB!r}: each of the hub's consumers "
                             "has its own name; use hub_identity()")
        if name in self._pooled:
            raise ValueError(f"{name} is held by a hub consumer hub_identity() made on this "
                             "broker; a second client with it would take its session")
        return self._issue(name)

    def _issue(self, name: str) -> TlsSection:
        if name not in self._identities:
            issued = pki.issue(self.ca, name, self.dir / "clients")
            self._identities[name] = TlsSection(ca=self.ca.cert, cert=issued.cert, key=issued.key)
        return self._identities[name]

    def hub_names(self) -> list[str]:
        """The hub consumers' names this broker's ACL (the reference one) grants the hub's
        rights, in its order."""
        names = [line.removeprefix("user ").strip()
                 for line in (self.dir / "acl").read_text().splitlines()
                 if line.startswith("user ")]
        return [name for name in names if pki.is_hub_name(name)]

    def hub_identity(self, key: str = "") -> TlsSection:
        """A hub consumer's certificate: reads every pole, writes acks and commands. The
        same non-empty `key` (e.g. the client id a consumer asked for) gets the same one,
        so a consumer that returns resumes its session; no key, or a new one, gets a name
        not held by another consumer, so two consumers never knock each other off."""
        self._need_certificates()
        name = self._hub_keys.get(key) if key else None
        if name is None:
            free = [n for n in self.hub_names() if n not in self._held
                    and (n in self._pooled or n not in self._identities)]
            if not free:
                raise RuntimeError(
                    f"all {len(self.hub_names())} hub consumers' names in the reference "
                    f"ACL ({REFERENCE / 'acl'}) are held on this broker; release() those of "
                    "closed clients, or add `user hub.<role>` blocks (docs/hub-broker.md)")
            name = free[0]
            self._pooled.add(name)
            self._held.add(name)
            if key:
                self._hub_keys[key] = name
        return self._issue(name)

    def release(self, tls: TlsSection | None) -> None:
        """The hub consumer holding `tls` (from hub_identity) has disconnected for good and
        left no session behind: its name may be handed out again."""
        for name in [n for n in self._held if self._identities[n] == tls]:
            self._held.discard(name)
            self._hub_keys = {k: n for k, n in self._hub_keys.items() if n != name}

    def _need_certificates(self) -> None:
        if not self.secure:
            raise RuntimeError("a plaintext LocalBroker has no certificates; use secure=True")

    @property
    def hub_tls(self) -> TlsSection:
        """A hub consumer's certificate not handed out before: each read is a new one."""
        return self.hub_identity()

    def tls(self, name: str, key: str = "") -> TlsSection | None:
        """`identity(name)` on a secure broker (`hub_identity(key)` for `HUB`: a hub
        consumer), None (plain MQTT) on a plaintext one."""
        if not self.secure:
            return None
        return self.hub_identity(key) if name == pki.HUB else self.identity(name)

    def client(self, identity: str | TlsSection | None, client_id: str = "") -> mqtt.Client:
        """A paho MQTT 5 client (VERSION2 callbacks) holding `identity` (a name for
        `tls()`, `HUB` for a hub consumer of its own, files, or None for plain MQTT), not yet
        connected. An empty client id lets the broker assign one; on a secure broker the
        client id becomes the certificate's name anyway, and with `HUB` it picks the
        certificate."""
        tls = self.tls(identity, client_id) if isinstance(identity, str) else identity
        return make_client(client_id, tls)

    def node_tls_dir(self, node_id: str, data_dir: Path) -> TlsSection:
        """A new certificate for `node_id` in `<data_dir>/tls/` (ca.crt, node.crt,
        node.key): where a node with `hub.tls: {}` looks for it."""
        self._need_certificates()
        return pki.pole_files(self.ca, node_id, data_dir / "tls")

    # --- life ---

    def start(self, timeout_s: float = 10.0) -> None:
        if not Path(self._exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        # S603: the mosquitto found above (behind its fixed wrapper, if any), no shell
        self._proc = subprocess.Popen(  # noqa: S603
            [*self._wrap, self._exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err.strip()} (log: {self.log})")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGCONT)  # a frozen broker cannot act on SIGTERM
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def freeze(self) -> None:
        """Stop the broker answering without closing its sockets (SIGSTOP): a hung hub."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
