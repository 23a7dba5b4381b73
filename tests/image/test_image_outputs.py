"""Release artefacts of the image build, made from a small real sparse image with the real
xz, bmaptool and sha256sum: contents, round trips and byte reproducibility."""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from imagebuild.outputs import (
    DebPackage,
    PythonDist,
    compress_xz,
    imager_os_list,
    installed_debs,
    installed_dists,
    make_bmap,
    spdx_sbom,
    write_json,
    write_sha256sums,
)

MIB = 1 << 20
IMAGE_SIZE = 40 * MIB  # three 16 MiB xz blocks
DATA = ((1 * MIB, 1 * MIB), (33 * MIB + 4096, MIB // 2))  # (offset, length) of random bytes


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 MiB sparse image with random data at two offsets, one not MiB-aligned."""
    img = tmp_path_factory.mktemp("image") / "edge.img"
    subprocess.run(["truncate", "-s", str(IMAGE_SIZE), str(img)], check=True)
    rng = random.Random(1234)
    with img.open("r+b") as f:
        for offset, length in DATA:
            f.seek(offset)
            f.write(rng.randbytes(length))
    return img


@pytest.fixture(scope="module")
def image_xz(image: Path) -> Path:
    dest = image.with_name(image.name + ".xz")
    compress_xz(image, dest)
    return dest


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- dpkg status and dist-info ----------------------------------------------------------

DPKG_STATUS = """\
Package: zlib1g
Status: install ok installed
Priority: optional
Architecture: arm64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime
 zlib is a library implementing the deflate compression method found
 in gzip and PKZIP.
 .
 Status: deinstall ok config-files
Homepage: http://zlib.net/

Package: old-tool
Status: deinstall ok config-files
Architecture: arm64
Version: 0.9-1
Conffiles:
 /etc/old-tool.conf 0123456789abcdef

Package: libfoo1
Status: install ok installed
Architecture: arm64
Source: foo (1.2-3)
Version: 1.2-3+b1
Description: foo runtime

Package: zlib1g
Status: install ok installed
Architecture: armhf
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime (32-bit)

Package: broken
Status: install reinstreq half-installed
Architecture: arm64
Version: 1.0

Package: base-files
Status: install ok installed
Architecture: arm64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
"""


def test_installed_debs_keeps_installed_packages_and_parses_source(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(DPKG_STATUS)

    debs = installed_debs(tmp_path)

    assert debs == [
        DebPackage("base-files", "12.4+deb12u5", "arm64", "base-files"),
        DebPackage("libfoo1", "1.2-3+b1", "arm64", "foo"),
        DebPackage("zlib1g", "1:1.2.13.dfsg-1", "arm64", "zlib"),
        DebPackage("zlib1g", "1:1.2.13.dfsg-1", "armhf", "zlib"),
    ]


def write_dist(site: Path, dirname: str, name: str, version: str) -> None:
    info = site / dirname
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        "Summary: naïve summary\n\nLong description\nName: not-a-header\n",
        encoding="utf-8")


def test_installed_dists_normalises_names_and_sorts(tmp_path: Path) -> None:
    write_dist(tmp_path, "Paho_MQTT-2.1.0.dist-info", "Paho_MQTT", "2.1.0")
    write_dist(tmp_path, "ai_edge_litert-2.0.2.dist-info", "ai-edge.LiteRT", "2.0.2")
    (tmp_path / "paho").mkdir()  # a package directory, not metadata
    (tmp_path / "paho" / "METADATA").write_text("Name: decoy\nVersion: 9\n")

    assert installed_dists(tmp_path) == [
        PythonDist("ai-edge-litert", "2.0.2"),
        PythonDist("paho-mqtt", "2.1.0"),
    ]


def test_installed_dists_rejects_metadata_without_version(tmp_path: Path) -> None:
    info = tmp_path / "bad-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad\n")
    with pytest.raises(ValueError, match="Version"):
        installed_dists(tmp_path)


# --- SHA256SUMS --------------------------------------------------------------------------

def test_sha256sums_verify_with_sha256sum(tmp_path: Path) -> None:
    files = []
    for name, content in [("edge.img.xz", b"xz bytes"), ("edge.bmap", b"<bmap/>"),
                          ("SBOM.spdx.json", b"{}\n")]:
        (tmp_path / name).write_bytes(content)
        files.append(tmp_path / name)
    dest = tmp_path / "SHA256SUMS"

    write_sha256sums(files, dest)

    lines = dest.read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["SBOM.spdx.json", "edge.bmap",
                                                       "edge.img.xz"]
    assert lines[1] == f"{hashlib.sha256(b'<bmap/>').hexdigest()}  edge.bmap"
    ok = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == 3

    (tmp_path / "edge.bmap").write_bytes(b"<bmap/> tampered")
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode != 0
    assert "edge.bmap: FAILED" in bad.stdout


def test_sha256sums_refuses_files_sha256sum_could_not_find(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    elsewhere = tmp_path / "sub" / "edge.img.xz"
    elsewhere.write_bytes(b"x")
    with pytest.raises(ValueError, match="not in"):
        write_sha256sums([elsewhere], tmp_path / "SHA256SUMS")
    assert not (tmp_path / "SHA256SUMS").exists()


# --- xz ----------------------------------------------------------------------------------

def test_compress_xz_round_trips_reports_progress_and_is_reproducible(
        image: Path, image_xz: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    # one thread versus two: -T1 would be single-threaded mode, which writes other bytes
    again = tmp_path / "again.img.xz"
    compress_xz(image, again, threads=1, on_progress=lambda done, total: calls.append(
        (done, total)))
    other = tmp_path / "other.img.xz"
    compress_xz(image, other, threads=2)

    assert again.read_bytes() == image_xz.read_bytes() == other.read_bytes()
    assert image_xz.stat().st_size < 2 * MIB  # 1.5 MiB of random data, the rest holes
    restored = subprocess.run(["xz", "-dc", str(image_xz)], capture_output=True, check=True)
    assert hashlib.sha256(restored.stdout).hexdigest() == sha256(image)
    assert calls[-1] == (IMAGE_SIZE, IMAGE_SIZE)
    assert len(calls) > 2
    assert all(total == IMAGE_SIZE for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("variable", ["XZ_OPT", "XZ_DEFAULTS"])
def test_compress_xz_ignores_xz_options_from_the_environment(
        variable: str, image: Path, image_xz: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # an option the command line does not set again, so xz would apply it
    monkeypatch.setenv(variable, "--block-list=1MiB")
    dest = tmp_path / "env.img.xz"
    compress_xz(image, dest)
    assert dest.read_bytes() == image_xz.read_bytes()


def test_compress_xz_failure_raises_with_stderr_and_leaves_nothing(
        image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "xz"
    fake.write_text("#!/bin/sh\nhead -c 100 >/dev/null\necho 'xz: disk on fire' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    dest = tmp_path / "out" / "edge.img.xz"
    dest.parent.mkdir()

    with pytest.raises(RuntimeError, match="disk on fire"):
        compress_xz(image, dest)
    assert list(dest.parent.iterdir()) == []


# --- bmap --------------------------------------------------------------------------------

def test_make_bmap_is_reproducible_and_restores_the_image(image: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.bmap", tmp_path / "second.bmap"
    make_bmap(image, first)
    time.sleep(1.1)  # a timestamp with second resolution would now differ
    make_bmap(image, second)

    text = first.read_text()
    assert first.read_bytes() == second.read_bytes()
    assert f"<ImageSize> {IMAGE_SIZE} </ImageSize>" in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text)
    assert str(image.parent) not in text
    # only the two data regions are mapped, not the holes
    mapped = re.search(r"<MappedBlocksCount> (\d+)", text)
    assert mapped and int(mapped.group(1)) * 4096 == sum(length for _, length in DATA)

    out = tmp_path / "restored.img"
    copy = subprocess.run(["bmaptool", "copy", "--bmap", str(first), str(image), str(out)],
                          capture_output=True, text=True)
    assert copy.returncode == 0, copy.stderr
    assert sha256(out) == sha256(image)


def test_make_bmap_failure_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="bmaptool create failed"):
        make_bmap(tmp_path / "missing.img", tmp_path / "missing.bmap")
    assert not list(tmp_path.iterdir())


# --- Raspberry Pi Imager -----------------------------------------------------------------

def test_imager_os_list_describes_the_real_files(
        image: Path, image_xz: Path, tmp_path: Path) -> None:
    doc = imager_os_list(
        name="SafeCity Edge 1.4.0", description="Camera pole controller", version="1.4.0",
        release_date="2025-03-01", image_url="https://hub.invalid/edge-1.4.0.img.xz",
        img=image, img_xz=image_xz, devices=["pi4-64bit", "pi3-64bit"])

    assert list(doc) == ["imager", "os_list"]
    os_list = doc["os_list"]
    assert isinstance(os_list, list) and len(os_list) == 1
    entry: dict[str, object] = os_list[0]
    img_sum = subprocess.run(["sha256sum", str(image)], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    xz_sum = subprocess.run(["sha256sum", str(image_xz)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    assert entry == {
        "name": "SafeCity Edge 1.4.0",
        "description": "Camera pole controller",
        "url": "https://hub.invalid/edge-1.4.0.img.xz",
        "extract_size": IMAGE_SIZE,
        "extract_sha256": img_sum,
        "image_download_size": image_xz.stat().st_size,
        "image_download_sha256": xz_sum,
        "release_date": "2025-03-01",
        "devices": ["pi4-64bit", "pi3-64bit"],
    }
    assert "init_format" not in entry and "icon" not in entry

    with_icon = imager_os_list(
        name="n", description="d", version="1", release_date="2025-03-01", image_url="u",
        img=image, img_xz=image_xz, devices=["pi4-64bit"], icon="https://hub.invalid/i.png")
    assert with_icon["os_list"][0]["icon"] == "https://hub.invalid/i.png"  # type: ignore[index]

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_json(doc, first)
    write_json(doc, second)
    assert first.read_bytes() == second.read_bytes()
    assert json.loads(first.read_text()) == doc


@pytest.mark.parametrize("bad", ["2025-3-1", "2025-02-30", "01.03.2025"])
def test_imager_os_list_rejects_bad_release_dates(
        bad: str, image: Path, image_xz: Path) -> None:
    with pytest.raises(ValueError):
        imager_os_list(name="n", description="d", version="1", release_date=bad,
                       image_url="u", img=image, img_xz=image_xz, devices=["pi4-64bit"])


# --- SPDX --------------------------------------------------------------------------------

DEBS = [
    DebPackage("zlib1g", "1:1.2.13.dfsg-1", "arm64", "zlib"),
    DebPackage("libfoo1", "1:2.3+dfsg-1", "arm64", "foo"),
    DebPackage("libstdc++6", "12.2.0-14", "arm64", "gcc-12"),
    DebPackage("zlib1g", "1:1.2.13.dfsg-1", "armhf", "zlib"),
]
DISTS = [PythonDist("paho-mqtt", "2.1.0"), PythonDist("ai-edge-litert", "2.0.2+local")]

PURL = {"type": "object", "required": ["referenceCategory", "referenceType", "referenceLocator"],
        "properties": {"referenceCategory": {"const": "PACKAGE-MANAGER"},
                       "referenceType": {"const": "purl"},
                       "referenceLocator": {"type": "string", "pattern": "^pkg:(deb|pypi)/"}}}
NOASSERT = {"const": "NOASSERTION"}
SPDX_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace",
                 "creationInfo", "packages", "relationships"],
    "properties": {
        "spdxVersion": {"const": "SPDX-2.3"},
        "dataLicense": {"const": "CC0-1.0"},
        "SPDXID": {"const": "SPDXRef-DOCUMENT"},
        "documentNamespace": {"type": "string", "pattern": "^https://[^#]+$"},
        "creationInfo": {
            "type": "object", "required": ["created", "creators"],
            "properties": {
                "created": {"type": "string",
                            "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"},
                "creators": {"type": "array", "minItems": 1,
                             "items": {"type": "string", "pattern": "^(Tool|Organization|"
                                                                    "Person): "}}}},
        "packages": {"type": "array", "items": {
            "type": "object",
            "required": ["SPDXID", "name", "versionInfo", "downloadLocation", "filesAnalyzed",
                         "licenseConcluded", "licenseDeclared", "copyrightText"],
            "properties": {
                "SPDXID": {"type": "string", "pattern": r"^SPDXRef-[A-Za-z0-9.\-]+$"},
                "filesAnalyzed": {"const": False},
                "downloadLocation": NOASSERT, "licenseConcluded": NOASSERT,
                "licenseDeclared": NOASSERT, "copyrightText": NOASSERT,
                "externalRefs": {"type": "array", "minItems": 1, "maxItems": 1,
                                 "items": PURL}}}},
        "relationships": {"type": "array", "items": {
            "type": "object", "required": ["spdxElementId", "relationshipType",
                                           "relatedSpdxElement"],
            "properties": {"relationshipType": {"enum": ["DESCRIBES", "CONTAINS"]}}}},
    },
}


def sbom(debs: list[DebPackage] = DEBS, dists: list[PythonDist] = DISTS) -> dict[str, Any]:
    return spdx_sbom(name="safecity-edge", version="1.4.0", source_date_epoch=1740787200,
                     namespace_seed="git:3fd597b", debs=debs, dists=dists, suite="bookworm")


def test_spdx_sbom_structure_and_references() -> None:
    doc = sbom()

    jsonschema.validate(doc, SPDX_SHAPE)
    assert doc["name"] == "safecity-edge-1.4.0"
    seed = hashlib.sha256(b"git:3fd597b").hexdigest()[:16]
    assert doc["documentNamespace"] == (
        f"https://safecity-edge.invalid/spdx/safecity-edge-1.4.0-{seed}")
    assert doc["creationInfo"] == {"created": "2025-03-01T00:00:00Z",
                                   "creators": ["Tool: safecity-edge image-build"]}
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids)) == 1 + len(DEBS) + len(DISTS)
    known = {*ids, "SPDXRef-DOCUMENT"}
    for rel in doc["relationships"]:
        assert rel["spdxElementId"] in known and rel["relatedSpdxElement"] in known
    assert doc["relationships"][0] == {"spdxElementId": "SPDXRef-DOCUMENT",
                                       "relationshipType": "DESCRIBES",
                                       "relatedSpdxElement": "SPDXRef-Image"}
    contained = [r["relatedSpdxElement"] for r in doc["relationships"]
                 if r["relationshipType"] == "CONTAINS"]
    assert all(r["spdxElementId"] == "SPDXRef-Image" for r in doc["relationships"][1:])
    assert sorted(contained) == sorted(set(ids) - {"SPDXRef-Image"})


def test_spdx_sbom_lists_every_package_once_with_encoded_purls() -> None:
    packages = {p["SPDXID"]: p for p in sbom()["packages"]}

    assert set(packages) == {
        "SPDXRef-Image", "SPDXRef-deb-libfoo1-arm64", "SPDXRef-deb-libstdc--6-arm64",
        "SPDXRef-deb-zlib1g-arm64", "SPDXRef-deb-zlib1g-armhf", "SPDXRef-pypi-ai-edge-litert",
        "SPDXRef-pypi-paho-mqtt"}
    foo = packages["SPDXRef-deb-libfoo1-arm64"]
    assert foo["versionInfo"] == "1:2.3+dfsg-1"
    assert foo["supplier"] == "Organization: Debian"
    assert foo["externalRefs"][0]["referenceLocator"] == (
        "pkg:deb/debian/libfoo1@1%3A2.3%2Bdfsg-1?arch=arm64&distro=debian-bookworm")
    assert packages["SPDXRef-deb-libstdc--6-arm64"]["externalRefs"][0][
        "referenceLocator"].startswith("pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?")
    assert packages["SPDXRef-pypi-ai-edge-litert"]["externalRefs"][0][
        "referenceLocator"] == "pkg:pypi/ai-edge-litert@2.0.2%2Blocal"
    assert "supplier" not in packages["SPDXRef-pypi-paho-mqtt"]
    assert "externalRefs" not in packages["SPDXRef-Image"]


def test_spdx_sbom_is_reproducible_whatever_the_input_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.spdx.json", tmp_path / "b.spdx.json"
    write_json(sbom(), first)
    write_json(sbom(list(reversed(DEBS)), list(reversed(DISTS))), second)

    assert first.read_bytes() == second.read_bytes()
    names = [p["name"] for p in json.loads(first.read_text())["packages"]]
    assert names == ["safecity-edge", "libfoo1", "libstdc++6", "zlib1g", "zlib1g",
                     "ai-edge-litert", "paho-mqtt"]


def test_spdx_sbom_refuses_two_packages_with_one_spdxid() -> None:
    with pytest.raises(ValueError, match="SPDXRef-deb-libstdc--6-arm64"):
        sbom(debs=[*DEBS, DebPackage("libstdc--6", "1", "arm64", "x")])


def test_write_json_format(tmp_path: Path) -> None:
    dest = tmp_path / "doc.json"
    write_json({"zeta": "Zürich", "alpha": [1]}, dest)
    assert dest.read_bytes() == '{\n  "zeta": "Zürich",\n  "alpha": [\n    1\n  ]\n}\n'.encode()
