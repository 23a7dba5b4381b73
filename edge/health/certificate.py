"""What the node's own client certificate says: whose it is and until when it is valid.

Read with the standard library (PEM to DER, then the few DER fields needed: the subject and
the end of validity), not with `cryptography`: the main process reads it at start and for
every heartbeat, and that library alone would add about 10 MB to it. Nothing here trusts
the certificate; OpenSSL checks it when the uplink loads it, and the broker when it is used.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

WARN_DAYS = 30  # telemetry flags a certificate this close to its end, and the log warns

_SEQUENCE, _SET, _OID, _UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x30, 0x31, 0x06, 0x17, 0x18, 0xA0
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be",
            0x1C: "utf-32-be"}
# RFC 4514's names for the attributes a subject usually has; others print dotted
_NAMES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
          "2.5.4.11": "OU", "0.9.2342.19200300.100.1.25": "DC",
          "0.9.2342.19200300.100.1.1": "UID"}


class CertificateError(Exception):
    """The certificate file is missing or not a PEM certificate."""


@dataclass(frozen=True)
class CertInfo:
    subject: str  # the CN: the broker takes it as the MQTT user name
    not_after: datetime
    days_left: float

    @property
    def expiring(self) -> bool:
        return self.days_left <= WARN_DAYS


def read_certificate(path: Path, now: datetime | None = None) -> CertInfo:
    try:
        subject, end = _subject_and_end(_pem_body(path.read_bytes()))
    except (OSError, ValueError) as e:
        raise CertificateError(f"cannot read certificate {path}: {e}") from e
    left = (end - (now or datetime.now(UTC))).total_seconds() / 86400
    return CertInfo(subject, end, round(left, 1))


def _pem_body(data: bytes) -> bytes:
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = data.find(begin)
    stop = data.find(end, start + 1)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate in the file")
    try:
        return base64.b64decode(b"".join(data[start + len(begin):stop].split()), validate=True)
    except binascii.Error as e:
        raise ValueError(f"the PEM certificate is not valid base64 ({e})") from None


def _tlv(der: bytes, at: int) -> tuple[int, bytes, int]:
    """The DER element at `at`: its tag, its contents and where the next element starts."""
    if at + 2 > len(der):
        raise ValueError("the certificate is cut short")
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes are the length
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(der):
            raise ValueError("the certificate has a malformed length")
        length, at = int.from_bytes(der[at:at + count], "big"), at + count
    if at + length > len(der):
        raise ValueError("the certificate is cut short")
    return tag, der[at:at + length], at + length


def _children(der: bytes, tag: int) -> list[bytes]:
    out, at = [], 0
    while at < len(der):
        got, body, at = _tlv(der, at)
        if got != tag:
            raise ValueError(f"the certificate has tag 0x{got:02x} where 0x{tag:02x} belongs")
        out.append(body)
    return out


def _subject_and_end(der: bytes) -> tuple[str, datetime]:
    tag, cert, _ = _tlv(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not an X.509 certificate")
    tag, tbs, _ = _tlv(cert, 0)
    if tag != _SEQUENCE:
        raise ValueError("not an X.509 certificate")
    fields: list[tuple[int, bytes]] = []
    at = 0
    while at < len(tbs) and len(fields) < 6:
        tag, body, at = _tlv(tbs, at)
        if not fields and tag == _VERSION:
            continue
        fields.append((tag, body))
    if len(fields) < 5:
        raise ValueError("the certificate is cut short")
    # serial, signature algorithm, issuer, validity, subject
    (_, validity), (tag, subject) = fields[3], fields[4]
    if fields[3][0] != _SEQUENCE or tag != _SEQUENCE:
        raise ValueError("not an X.509 certificate")
    _, _, after = _tlv(validity, 0)
    end_tag, end, _ = _tlv(validity, after)
    return _name(subject), _time(end_tag, end)


def _name(der: bytes) -> str:
    """The CN; without one, the whole name as RFC 4514 writes it (last part first)."""
    rdns: list[list[tuple[str, str]]] = []
    for rdn in _children(der, _SET):
        rdns.append([])
        for attribute in _children(rdn, _SEQUENCE):
            tag, oid_der, at = _tlv(attribute, 0)
            value_tag, raw, _ = _tlv(attribute, at)
            if tag != _OID or value_tag not in _STRINGS:
                raise ValueError("the certificate's subject is malformed")
            rdns[-1].append((_dotted(oid_der), raw.decode(_STRINGS[value_tag], errors="replace")))
    for oid, text in (part for rdn in rdns for part in rdn):
        if oid == "2.5.4.3":
            return text
    return ",".join("+".join(f"{_NAMES.get(oid, oid)}={_escaped(text)}" for oid, text in rdn)
                    for rdn in reversed(rdns))


def _escaped(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def _dotted(oid: bytes) -> str:
    numbers, n = [], 0
    for byte in oid:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            numbers.append(n)
            n = 0
    if not numbers:
        raise ValueError("the certificate has an empty object identifier")
    first = min(numbers[0] // 40, 2)
    return ".".join(str(v) for v in (first, numbers[0] - 40 * first, *numbers[1:]))


def _time(tag: int, value: bytes) -> datetime:
    text = value.decode("ascii", errors="replace")
    if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"  # RFC 5280 4.1.2.5.1
    elif not (tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith("Z")):
        raise ValueError(f"the certificate's end of validity {text!r} is not a UTC time")
    if not text[:14].isdigit():
        raise ValueError(f"the certificate's end of validity {text!r} is not a UTC time")
    y, mo, d, h, mi, s = (int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10),
                                                       (10, 12), (12, 14)))
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


class CertificateWatch:
    """The node's client certificate, read again each time it is asked for (a technician may
    renew it): errors are logged once per change, a near end once a day."""

    def __init__(self, cert: Path | None, node_id: str) -> None:
        self.cert = cert
        self.node_id = node_id
        self._problem = ""
        self._warned_at = -1e9

    def current(self) -> CertInfo | None:
        """The certificate's subject and end; None without TLS or when it cannot be read."""
        if self.cert is None:
            return None
        try:
            info = read_certificate(self.cert)
        except CertificateError as e:
            if self._problem != str(e):
                log.error("%s", e)
            self._problem = str(e)
            return None
        self._problem = ""
        if info.expiring and time.monotonic() >= self._warned_at + 86400:
            self._warned_at = time.monotonic()
            log.warning("client certificate %s ends %s (%.0f days): renew it before the hub "
                        "refuses this node", info.subject, info.not_after.date(), info.days_left)
        return info

    def check_identity(self) -> None:
        """Say at start if the certificate names another node: the broker would refuse us."""
        info = self.current()
        if info is not None and info.subject != self.node_id:
            log.error("the client certificate is for %r but this node is %r: the hub's broker "
                      "will refuse everything it publishes", info.subject, self.node_id)
