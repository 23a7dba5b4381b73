"""The node reads its own certificate's subject and end, and flags it 30 days ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.health.certificate import CertificateError, read_certificate
from provisioning import pki


def test_a_certificate_ending_within_30_days_is_flagged(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    now = datetime.now(UTC)
    soon = pki.issue(ca, "kherson-0042", tmp_path / "soon", not_after=now + timedelta(days=12))
    later = pki.issue(ca, "kherson-0043", tmp_path / "later", days=365)
    s, ok = read_certificate(soon.cert, now), read_certificate(later.cert, now)
    assert (s.subject, s.expiring) == ("kherson-0042", True)
    assert 11.9 < s.days_left <= 12.0
    assert (ok.subject, ok.expiring) == ("kherson-0043", False)
    assert ok.days_left > 300


def test_a_missing_or_garbled_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="cannot read certificate"):
        read_certificate(tmp_path / "node.crt")
    (tmp_path / "node.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(CertificateError, match="cannot read certificate"):
        read_certificate(tmp_path / "node.crt")
