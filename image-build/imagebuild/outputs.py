"""Release artefacts made from a finished `<name>.img`: the .img.xz a technician flashes, its
.bmap, SHA256SUMS, the Raspberry Pi Imager os_list, and an SPDX SBOM of the debs and Python
dists inside. Every writer is byte-reproducible: no clock, no host-dependent output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    source: str  # source package name, without "(version)"; equals name when absent


@dataclass(frozen=True)
class PythonDist:
    name: str  # PEP 503 normalised
    version: str


def _partial(dest: Path) -> Path:
    # name + ".partial", not with_suffix: foo.img.xz and foo.img.bmap must not share a temp file
    return dest.with_name(dest.name + ".partial")


def _sha256(path: Path) -> str:
    # The Imager list and SHA256SUMS both need the card's hash: read its gigabytes once.
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


_HASHED: dict[tuple[str, int, int, int], str] = {}


def installed_debs(rootfs: Path) -> list[DebPackage]:
    text = (rootfs / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    packages = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation of a multi-line field (Description, Conffiles)
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        if not fields.get("status", "").endswith(" installed"):
            continue  # deinstalled, config-files, half-installed: not in the image
        name = fields["package"]
        source = fields.get("source", "").split(" (")[0].strip() or name
        packages.append(DebPackage(name, fields["version"], fields["architecture"], source))
    return sorted(packages, key=lambda p: (p.name, p.architecture))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_dists(site_packages: Path) -> list[PythonDist]:
    dists = []
    for metadata in site_packages.glob("*.dist-info/METADATA"):
        with metadata.open("rb") as f:
            headers = BytesHeaderParser().parse(f)
        name, version = headers.get("Name"), headers.get("Version")
        if not name or not version:
            raise ValueError(f"{metadata}: no Name or Version header")
        dists.append(PythonDist(_normalise(str(name).strip()), str(version).strip()))
    return sorted(dists, key=lambda d: (d.name, d.version))


def write_sha256sums(files: list[Path], dest: Path) -> None:
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate basenames in {names}")
    for f in files:
        # the file names bare basenames, so `sha256sum -c` only works next to the files
        if f.resolve().parent != dest.resolve().parent:
            raise ValueError(f"{f} is not in {dest.parent}")
        if "\n" in f.name or "\\" in f.name:
            raise ValueError(f"{f.name!r}: sha256sum would escape this name")
    lines = [f"{_sha256(f)}  {f.name}\n" for f in sorted(files, key=lambda f: f.name)]
    _write_bytes("".join(lines).encode(), dest)


def compress_xz(img: Path, dest: Path, *, threads: int = 0, level: int = 6,
                on_progress: Callable[[int, int], None] | None = None) -> None:
    if threads < 0 or not 0 <= level <= 9:
        raise ValueError(f"threads={threads} level={level}")
    # -T1 means single-threaded mode, which writes different bytes; "+1" stays multi-threaded
    thread_arg = "+1" if threads == 1 else str(threads)
    cmd = ["xz", f"--threads={thread_arg}", f"-{level}", "--block-size=16MiB",
           "--check=crc64", "-c"]
    # XZ_OPT/XZ_DEFAULTS from the caller's shell would change the output bytes
    env = {k: v for k, v in os.environ.items() if k not in ("XZ_OPT", "XZ_DEFAULTS")}
    total = img.stat().st_size
    partial = _partial(dest)
    try:
        with img.open("rb") as src, partial.open("wb") as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=env)
            try:
                _feed(src, proc, total, on_progress)
            except BaseException:
                proc.kill()  # a failing progress callback or ^C must not leave xz running
                raise
            finally:
                proc.wait()
            if proc.returncode != 0:
                err.seek(0)
                message = err.read().decode(errors="replace").strip()
                raise RuntimeError(f"xz failed ({proc.returncode}): {message}")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)


def _feed(src: BinaryIO, proc: subprocess.Popen[bytes], total: int,
          on_progress: Callable[[int, int], None] | None) -> None:
    assert proc.stdin is not None  # noqa: S101 (for mypy: the caller opens stdin=PIPE)
    done = 0
    if on_progress:
        on_progress(done, total)
    try:
        while block := src.read(CHUNK):
            proc.stdin.write(block)
            done += len(block)
            if on_progress:
                on_progress(done, total)
        proc.stdin.close()
    except BrokenPipeError:
        # xz died; its exit status and stderr say why
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def make_bmap(img: Path, dest: Path) -> None:
    # bmaptool 3.6 writes no date, host or path: two runs give the same bytes, nothing to strip.
    # The map follows the file's holes, so a de-sparsified copy of the same bytes maps more.
    partial = _partial(dest)
    try:
        result = subprocess.run(["bmaptool", "create", "-o", str(partial), str(img)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"bmaptool create failed: {result.stderr.strip()}")
        size = re.search(r"<ImageSize>\s*(\d+)\s*</ImageSize>", partial.read_text())
        if not size or int(size.group(1)) != img.stat().st_size:
            raise RuntimeError(f"{partial}: ImageSize does not match {img}")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)


def imager_os_list(*, name: str, description: str, version: str, release_date: str,
                   image_url: str, img: Path, img_xz: Path, devices: list[str],
                   icon: str = "") -> dict[str, object]:
    # `version` is unused: Imager's entries have no version field, the name shows it
    # Imager shows release_date as given; a bad one is a typo in the release, not a date
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", release_date):
        raise ValueError(f"release_date {release_date!r} is not YYYY-MM-DD")
    date.fromisoformat(release_date)
    entry: dict[str, object] = {"name": name, "description": description}
    if icon:
        entry["icon"] = icon
    entry |= {
        "url": image_url,
        "extract_size": img.stat().st_size,
        "extract_sha256": _sha256(img),
        "image_download_size": img_xz.stat().st_size,
        "image_download_sha256": _sha256(img_xz),
        "release_date": release_date,
        "devices": list(devices),
        # no "init_format": Imager would offer OS customisation, which this image ignores
    }
    return {"imager": {}, "os_list": [entry]}


def _spdx_id(kind: str, *parts: str) -> str:
    return "SPDXRef-" + re.sub(r"[^A-Za-z0-9.-]", "-", "-".join((kind, *parts)))


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _package(spdx_id: str, name: str, version: str, purl: str | None,
             extra: Iterable[tuple[str, object]] = ()) -> dict[str, object]:
    package: dict[str, object] = {
        "SPDXID": spdx_id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,  # SPDX 2.3 defaults to true, which demands a verification code
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    }
    package.update(extra)
    if purl:
        package["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER",
                                     "referenceType": "purl", "referenceLocator": purl}]
    return package


def spdx_sbom(*, name: str, version: str, source_date_epoch: int, namespace_seed: str,
              debs: list[DebPackage], dists: list[PythonDist], suite: str) -> dict[str, object]:
    seed = hashlib.sha256(namespace_seed.encode()).hexdigest()[:16]
    created = datetime.fromtimestamp(source_date_epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    packages = [_package("SPDXRef-Image", name, version, None,
                         [("primaryPackagePurpose", "OPERATING-SYSTEM")])]
    for deb in sorted(debs, key=lambda d: (d.name, d.architecture, d.version)):
        purl = (f"pkg:deb/debian/{_quote(deb.name)}@{_quote(deb.version)}"
                f"?arch={_quote(deb.architecture)}&distro=debian-{_quote(suite)}")
        packages.append(_package(
            _spdx_id("deb", deb.name, deb.architecture), deb.name, deb.version, purl,
            [("supplier", "Organization: Debian"),
             ("sourceInfo", f"built package from: {deb.source}")]))
    for dist in sorted(dists, key=lambda d: (d.name, d.version)):
        purl = f"pkg:pypi/{_quote(dist.name)}@{_quote(dist.version)}"
        packages.append(_package(_spdx_id("pypi", dist.name), dist.name, dist.version, purl))
    ids = [str(p["SPDXID"]) for p in packages]
    if len(set(ids)) != len(ids):
        # two packages sanitised to one SPDXID (or listed twice) would merge in every consumer
        raise ValueError(f"duplicate SPDXIDs: {sorted({i for i in ids if ids.count(i) > 1})}")
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    relationships += [{"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                       "relatedSpdxElement": i} for i in ids[1:]]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{version}",
        "documentNamespace": f"https://safecity-edge.invalid/spdx/{name}-{version}-{seed}",
        "creationInfo": {"created": created, "creators": ["Tool: safecity-edge image-build"]},
        "packages": packages,
        "relationships": relationships,
    }


def _write_bytes(data: bytes, dest: Path) -> None:
    partial = _partial(dest)
    partial.write_bytes(data)
    partial.replace(dest)


def write_json(doc: dict[str, object], dest: Path) -> None:
    text = json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    _write_bytes(text.encode("utf-8"), dest)
