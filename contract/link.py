"""How a party speaks to the hub's broker: MQTT 5 over mutual TLS. The pole's uplink, the
hub console and the tools all connect through `make_client`, with the files of a `TlsSection`."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import BaseModel, ConfigDict, Field


class TlsSection(BaseModel):
    """Mutual TLS files. In a node's config, relative paths are inside data_dir, so
    `tls: {}` means the data partition's tls/ca.crt, tls/node.crt and tls/node.key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: Path = Field(default=Path("tls/ca.crt"),
                     description="The hub's CA certificate (PEM); the only CA trusted")
    cert: Path = Field(default=Path("tls/node.crt"),
                       description="This node's client certificate (PEM); its CN is the node id")
    key: Path = Field(default=Path("tls/node.key"),
                      description="This node's private key (PEM); never leaves the node")

    def under(self, base: Path) -> TlsSection:
        """The same files with relative paths taken from `base`."""
        return TlsSection(ca=base / self.ca, cert=base / self.cert, key=base / self.key)


def certificate_name(cert: Path) -> str:
    """The CN of a PEM certificate: the MQTT user name the hub's broker gives its holder, and
    its client id there too (`use_username_as_clientid`), whatever id the client asks for."""
    from cryptography import x509  # only tools and consoles read names; the uplink never does
    from cryptography.x509.oid import NameOID

    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    value = loaded.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()


def make_client(client_id: str, tls: TlsSection | None) -> mqtt.Client:
    """A paho MQTT 5 client with VERSION2 callbacks, mutual TLS if given, and Nagle off."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    if tls is not None:
        c.tls_set(
            ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key),
            cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    c.on_socket_open = _no_delay
    return c


def _no_delay(_c: mqtt.Client, _u: Any, sock: Any) -> None:
    # An alert or an ack is one small packet: never let Nagle hold it behind an unacknowledged
    # PUBACK until the peer's delayed ACK (measured: 25-40 ms stalls on loopback).
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
