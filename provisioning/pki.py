"""The city's certificate authority for the hub's broker: one CA, one certificate per pole and
per hub consumer.

The broker trusts only this CA and takes each client's MQTT username from its certificate's
common name (`use_identity_as_username`) and makes it the client id too
(`use_username_as_clientid`), so a pole's CN is its node id, its session is its own and the
ACL gives it its own `poles/<node-id>/...` topics only. Each of the hub's consumers has a
certificate of its own named `hub.<role>` (e.g. `hub.console`), granted the hub's rights by
name in the broker's ACL; no node id can be such a name (node ids have no '.'). Keys are EC
P-256, signatures SHA-256, private keys PEM (PKCS#8) written with mode 0600.

    ca = make_ca(Path("ca"))                                   # ca/ca.crt, ca/ca.key
    issue(ca, "server", Path("broker"), server_names=["hub.city.example"])
    pole_files(ca, "kherson-0042", Path("out"))                # out/ca.crt, node.crt, node.key
    hub_files(ca, "hub.console", Path("hub"))    # hub/ca.crt, hub.console.crt, hub.console.key

`edge-pki` is the same for technicians (see docs/hub-broker.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contract.link import TlsSection, certificate_name
from drivers.storage import write_new, write_whole

# The hub's consumers are named `hub.<role>`: the '.' is what no node id has. `hub` alone is
# no pole's name either (it was the one name all the hub's clients once shared).
HUB = "hub"
# Certificates are valid from this long before they are made: a pole's clock can lag after a
# cold boot until NTP or GPS steps it (an hour or more), and a pole that cannot connect
# cannot send a call.
CLOCK_LAG = dt.timedelta(days=1)
# A CN becomes an MQTT username and a file name: no '/', '+', '#' (the ACL's %u would
# refuse them), nothing a shell or file system would read differently. X.509 caps CN at 64.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_POLE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # NodeId in contract/payloads.py
_HUB_NAME = re.compile(rf"^{HUB}\.[a-z0-9][a-z0-9-]{{0,59}}$")  # a role: as a node id


class PkiError(RuntimeError):
    """A name or file the CA cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "Safe City hub CA", days: int = 3650) -> Issued:
    """A new CA in `directory` (ca.crt, ca.key). It may sign pole, hub and server
    certificates, never another CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_LAG)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", cert, key)


def issue(
    ca: Issued, common_name: str, directory: Path, *, days: int = 365,
    server_names: Iterable[str] = (), not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None, stem: str | None = None,
) -> Issued:
    """A certificate for `common_name` signed by `ca`, written as `<stem>.crt`/`<stem>.key`
    (stem: the CN). With `server_names` (DNS names or IP addresses, put in the SAN) it is a
    broker's server certificate; without, a client's (a pole's CN is its node id)."""
    if not _NAME.match(common_name):
        raise PkiError(f"{common_name!r} cannot be a certificate name: use letters, digits, "
                       "'.', '_' and '-' (a pole's name is its node id)")
    ca_cert, ca_key = _load_ca(ca.cert, ca.key, ca.cert.stat().st_mtime_ns)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - CLOCK_LAG
    end = not_after or start + dt.timedelta(days=days)
    names = list(server_names)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH] if names else [ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    return _write(directory, stem or common_name, builder.sign(ca_key, hashes.SHA256()), key)


def pole_files(ca: Issued, node_id: str, directory: Path, *, days: int = 365) -> TlsSection:
    """A new certificate for pole `node_id`, laid out as the node reads it with `hub.tls: {}`:
    `directory` gets ca.crt, node.crt and node.key (copy it to the pole's data_dir/tls/)."""
    if not _POLE.match(node_id) or node_id == HUB:
        raise PkiError(f"{node_id!r} is not a pole's node id: lower-case letters, digits and "
                       f"'-' (e.g. kherson-0042), and never {HUB!r}")
    files = issue(ca, node_id, directory, days=days, stem="node")
    shutil.copyfile(ca.cert, directory / "ca.crt")
    return TlsSection(ca=directory / "ca.crt", cert=files.cert, key=files.key)


def is_hub_name(name: str) -> bool:
    """Whether `name` is one of the hub's consumers (`hub.<role>`, role in the letters of a
    node id). No pole's node id is: NodeId allows no '.'."""
    return bool(_HUB_NAME.match(name))


def hub_files(ca: Issued, name: str, directory: Path, *, days: int = 365) -> TlsSection:
    """A new certificate for the hub's consumer `name` (`hub.<role>`): `directory` gets
    ca.crt, <name>.crt and <name>.key, what `edge-hub --tls-ca/--tls-cert/--tls-key` take.
    The broker grants it the hub's rights only once its ACL has a `user <name>` block."""
    if not is_hub_name(name):
        raise PkiError(f"{name!r} is not a hub consumer's name: {HUB}.<role>, the role in "
                       f"lower-case letters, digits and '-' (e.g. {HUB}.console-2)")
    files = issue(ca, name, directory, days=days)
    shutil.copyfile(ca.cert, directory / "ca.crt")
    return TlsSection(ca=directory / "ca.crt", cert=files.cert, key=files.key)


def common_name(cert: Path) -> str:
    """The CN of a certificate file: the MQTT username, and client id, the broker gives
    its holder."""
    return certificate_name(cert)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@lru_cache(maxsize=8)
def _load_ca(
    cert: Path, key: Path, _mtime_ns: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA, parsed once per file version: a fleet is issued in one loop."""
    try:
        ca_cert = x509.load_pem_x509_certificate(cert.read_bytes())
        ca_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except OSError as e:
        raise PkiError(f"cannot read the CA: {e}") from e
    except ValueError as e:
        raise PkiError(f"{cert} / {key} is not a PEM certificate and key: {e}") from e
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key} is not an EC key made by make_ca")
    return ca_cert, ca_key


def _write(directory: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key_path.unlink(missing_ok=True)  # a new file, so its mode is 0600 from the start
    write_new(key_path, key_pem, 0o600)
    write_whole(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert=cert_path, key=key_path)


def _ca_in(directory: Path) -> Issued:
    ca = Issued(cert=directory / "ca.crt", key=directory / "ca.key")
    if not (ca.cert.exists() and ca.key.exists()):
        raise PkiError(f"no CA in {directory} (ca.crt and ca.key); make one with "
                       f"`edge-pki ca {directory}`")
    return ca


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-pki", description="Certificates for the hub's "
                                "broker: a CA, pole certificates, the hub's and the broker's")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("ca", help="make a new CA in DIR (ca.crt, ca.key)")
    a.add_argument("dir", type=Path)
    a.add_argument("--days", type=int, default=3650)
    a = sub.add_parser("issue", help="a pole's files in OUT_DIR: ca.crt, node.crt, node.key "
                       "(copy them to the pole's /var/lib/edge/tls/)")
    a.add_argument("ca_dir", type=Path)
    a.add_argument("node_id", help="the pole's node id; it becomes the certificate's CN")
    a.add_argument("out_dir", type=Path)
    a.add_argument("--days", type=int, default=365)
    a = sub.add_parser("hub", help="a certificate for one of the hub's consumers in OUT_DIR: "
                       "ca.crt, NAME.crt, NAME.key (the broker's acl must name it)")
    a.add_argument("ca_dir", type=Path)
    a.add_argument("name", help=f"{HUB}.<role>, e.g. {HUB}.console: its MQTT user name and "
                   "client id; one certificate per program")
    a.add_argument("out_dir", type=Path)
    a.add_argument("--days", type=int, default=365)
    a = sub.add_parser("server", help="the broker's server certificate (server.crt, "
                       "server.key) for the names poles connect to")
    a.add_argument("ca_dir", type=Path)
    a.add_argument("out_dir", type=Path)
    a.add_argument("names", nargs="+", help="DNS names and IP addresses of the broker")
    a.add_argument("--days", type=int, default=825)
    args = p.parse_args(argv)
    try:
        if args.command == "ca":
            if (args.dir / "ca.key").exists():
                raise PkiError(f"{args.dir} already holds a CA; a new one would orphan every "
                               "certificate it issued")
            made = make_ca(args.dir, days=args.days)
        elif args.command == "issue":
            tls = pole_files(_ca_in(args.ca_dir), args.node_id, args.out_dir, days=args.days)
            made = Issued(cert=tls.cert, key=tls.key)
        elif args.command == "hub":
            tls = hub_files(_ca_in(args.ca_dir), args.name, args.out_dir, days=args.days)
            made = Issued(cert=tls.cert, key=tls.key)
        else:
            made = issue(_ca_in(args.ca_dir), "server", args.out_dir, days=args.days,
                         server_names=args.names)
    except (PkiError, OSError) as e:
        print(f"edge-pki: {e}", file=sys.stderr)
        return 2
    print(f"{made.cert}\n{made.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
