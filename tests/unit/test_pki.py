"""The city's CA (provisioning.pki): what it writes, what the certificates say, what it refuses."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from provisioning import pki


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_pole_certificate_names_the_pole_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    issued = pki.issue(ca, "kherson-0042", tmp_path / "out", days=30)
    assert (issued.cert.name, issued.key.name) == ("kherson-0042.crt", "kherson-0042.key")
    cert = load(issued.cert)
    assert pki.common_name(issued.cert) == "kherson-0042"
    cert.verify_directly_issued_by(load(ca.cert))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30)
    for key in (ca.key, issued.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_server_certificate_carries_its_names_and_addresses(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    issued = pki.issue(ca, "server", tmp_path, server_names=["hub.city.example", "10.0.0.1"])
    san = load(issued.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.city.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]


def test_certificate_and_key_load_as_a_tls_client_identity(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    tls = pki.pole_files(ca, "pole-1", tmp_path / "tls")
    assert [p.name for p in (tls.ca, tls.cert, tls.key)] == ["ca.crt", "node.crt", "node.key"]
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))  # raises if key and certificate differ


def test_an_explicit_validity_window_is_kept(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = load(pki.issue(ca, "old", tmp_path, not_before=start,
                          not_after=start + dt.timedelta(days=1)).cert)
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (
        start, start + dt.timedelta(days=1))


def test_reissuing_replaces_the_files_and_keeps_the_key_private(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    first = pki.issue(ca, "pole-1", tmp_path)
    old = first.key.read_bytes()
    first.key.chmod(0o644)
    second = pki.issue(ca, "pole-1", tmp_path)
    assert second.key.read_bytes() != old
    assert stat.S_IMODE(second.key.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["", "pole/1", "pole+", "pole#", "-x", "a" * 65, "pole 1"])
def test_names_that_cannot_be_an_mqtt_username_are_refused(tmp_path: Path, name: str) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    with pytest.raises(pki.PkiError, match="cannot be a certificate name"):
        pki.issue(ca, name, tmp_path)


@pytest.mark.parametrize("node_id", ["hub", "Pole-1", "pole_1"])
def test_a_pole_cannot_be_issued_the_hubs_name_or_a_name_that_is_no_node_id(
        tmp_path: Path, node_id: str) -> None:
    ca = pki.make_ca(tmp_path / "ca")
    with pytest.raises(pki.PkiError, match="not a pole's node id"):
        pki.pole_files(ca, node_id, tmp_path / "tls")


def test_edge_pki_makes_a_ca_and_a_poles_files(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert pki.main(["ca", str(tmp_path / "ca")]) == 0
    assert pki.main(["issue", str(tmp_path / "ca"), "kherson-0042", str(tmp_path / "pole")]) == 0
    assert sorted(p.name for p in (tmp_path / "pole").iterdir()) == [
        "ca.crt", "node.crt", "node.key"]
    assert pki.common_name(tmp_path / "pole" / "node.crt") == "kherson-0042"
    capsys.readouterr()
    assert pki.main(["ca", str(tmp_path / "ca")]) == 2  # never overwrite a CA
    assert "already holds a CA" in capsys.readouterr().err
    assert pki.main(["issue", str(tmp_path / "none"), "pole-1", str(tmp_path / "x")]) == 2
    assert "edge-pki ca" in capsys.readouterr().err
