"""What the node's own client certificate says: whose it is and until when it is valid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

WARN_DAYS = 30  # telemetry flags a certificate this close to its end, and the log warns


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
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as e:
        raise CertificateError(f"cannot read certificate {path}: {e}") from e
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    end = cert.not_valid_after_utc
    left = (end - (now or datetime.now(UTC))).total_seconds() / 86400
    return CertInfo(subject, end, round(left, 1))
