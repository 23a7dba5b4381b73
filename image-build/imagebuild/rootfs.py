"""Root A: Debian arm64 by mmdebstrap (qemu-user does the arm64 parts), then the node's venv,
units and the read-only layout. The .debs are kept in a cache that is also an apt repository,
so a rebuild installs exactly the same packages without asking the archive."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imagebuild.config import ImageConfig

IMAGE_BUILD = Path(__file__).resolve().parents[1]
REPO = IMAGE_BUILD.parent
OVERLAY = IMAGE_BUILD / "overlay"
# Excluded from every package: the pole has no one to read them (copyrights stay).
DPKG_EXCLUDES = ["/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
                 "/usr/share/doc/*", "/usr/share/lintian/*", "/usr/share/linda/*"]
DPKG_INCLUDES = ["/usr/share/doc/*/copyright"]
# Services enabled in the image, beyond what Debian's packages enable themselves.
ENABLE = ["edge-node.service", "edge-provision.service", "edge-machine-id.service",
          "edge-grow-data.service", "edge-firmware-install.path",
          "edge-firmware-commit.service", "systemd-networkd.service", "systemd-resolved.service",
          "systemd-timesyncd.service"]
# Installed for checks on site and the boot test, off unless asked for.
DISABLE = ["mosquitto.service"]
# Where the build's wheels folder is bind-mounted (read-only) while pip fills the venv: a
# path inside the root being built, not the host's /tmp (S108); clean() empties it.
WHEELS_IN_ROOT = "/tmp/wheels"  # noqa: S108


class RootfsError(Exception):
    """mmdebstrap or a step inside the new root failed; the message has the command's output."""


def deb_cache_key(config: ImageConfig) -> str:
    """Names the package cache: a change of suite, mirror or package list starts a new one."""
    d = config.debian
    text = json.dumps([d.suite, d.mirror, d.components, sorted(d.packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mmdebstrap_command(config: ImageConfig, target: Path, debs: Path, *,
                       customize: list[str]) -> list[str]:
    """The mmdebstrap call. With a complete cache (debs/Packages) it installs from that local
    repository only; otherwise from the mirror, and the .debs it fetched are kept."""
    d = config.debian
    modules = "\n".join(d.initramfs_modules)
    cmd = ["mmdebstrap", "--verbose", "--arch=arm64", "--variant=minbase", "--mode=root",
           "--format=directory", f"--components={','.join(d.components)}",
           f"--include={','.join(d.packages)}", "--aptopt=APT::Install-Recommends false",
           "--skip=essential/unlink",
           # No fsync per file: the tree is copied into a filesystem image afterwards anyway.
           "--dpkgopt=force-unsafe-io"]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
    cmd += [f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES]
    # Before the kernel is installed: a short module list makes the initramfs in ~1 min.
    hook = ['mkdir -p "$1/etc/initramfs-tools/conf.d"',
            'echo MODULES=list > "$1/etc/initramfs-tools/conf.d/edge-modules.conf"',
            f'printf "%s\\n" {shlex.quote(modules)} > "$1/etc/initramfs-tools/modules"']
    # What takes minutes under emulation and seconds natively is answered by stand-ins while
    # the packages install, and done by the host afterwards: udev's hardware database, and
    # Python's byte-compiling (see restore_stand_ins and byte_compile).
    for path, stub in stand_ins(config).items():
        hook += [f'mkdir -p "$1{Path(path).parent}"',
                 f'chroot "$1" dpkg-divert --quiet --local --rename --add {path}',
                 f'printf %s {shlex.quote(stub)} > "$1{path}"', f'chmod 755 "$1{path}"']
    cmd.append("--essential-hook=" + " && ".join(hook))
    complete = (debs / COMPLETE).exists()
    if complete:
        # Mounts the cache at its own path inside the root while packages install; placed
        # before our hooks so that it is unmounted before the customize step cleans up.
        cmd.append("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount")
    else:
        # The .debs, and the mirror's index: its Priority fields decide what minbase means,
        # and a .deb alone does not carry them.
        index = shlex.quote(str(debs / MIRROR_INDEX))
        cmd.append(f'--customize-hook=mkdir -p {shlex.quote(str(debs))} && '
                   f'cp -a "$1"/var/cache/apt/archives/*.deb {shlex.quote(str(debs))}/ && '
                   f'cat "$1"/var/lib/apt/lists/*_Packages > {index}')
    cmd += [f"--customize-hook={c}" for c in customize]
    cmd += [d.suite, str(target)]
    if complete:
        cmd.append(f"deb [trusted=yes] file://{debs} ./")
    else:
        cmd.append(f"deb {d.mirror} {d.suite} {' '.join(d.components)}")
    return cmd


def index_debs(debs: Path, config: ImageConfig) -> None:
    """Turn the folder of kept .debs into a flat apt repository for the next build."""
    override = debs / "override"
    override.write_text(priorities(debs / MIRROR_INDEX))
    packages = subprocess.run(["apt-ftparchive", "packages", ".", override.name], cwd=debs,
                              capture_output=True, check=True).stdout
    (debs / "Packages").write_bytes(packages)
    suite = config.debian.suite
    release = subprocess.run(
        ["apt-ftparchive", "-o", f"APT::FTPArchive::Release::Suite={suite}",
         "-o", f"APT::FTPArchive::Release::Codename={suite}",
         "-o", "APT::FTPArchive::Release::Architectures=arm64 all", "release", "."],
        cwd=debs, capture_output=True, check=True).stdout
    (debs / "Release").write_bytes(release)
    # Last: its presence marks the cache complete.
    (debs / COMPLETE).write_text(f"{len(list(debs.glob('*.deb')))} packages\n")


COMPLETE = "complete"
MIRROR_INDEX = "mirror.Packages"


def priorities(index: Path) -> str:
    """apt-ftparchive's override file (package, priority, section) from the mirror's index,
    so the cache says which packages are 'required' exactly as the archive did."""
    lines = []
    for stanza in index.read_text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if "Package" in fields:
            lines.append(f"{fields['Package']} {fields.get('Priority', 'optional')} "
                         f"{fields.get('Section', 'misc')}")
    return "\n".join(sorted(set(lines))) + "\n"


def run_mmdebstrap(cmd: list[str], env: dict[str, str], log: Path,
                   on_line: Callable[[str], None]) -> None:
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, errors="replace")
        assert proc.stdout is not None  # noqa: S101 (for mypy: stdout=PIPE always sets it)
        for line in proc.stdout:
            # Seconds since the start on each line: where the emulated time goes.
            out.write(f"{time.monotonic() - started:7.1f} {line}")
            on_line(line.rstrip())
        if proc.wait() != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
            raise RootfsError(f"mmdebstrap failed (full log: {log}):\n{tail}")


def chroot_env(source_date_epoch: int) -> dict[str, str]:
    """A clean environment for commands inside the new root: none of the host's pip or locale
    settings leak in, and Python writes hash-checked .pyc files the same on every build."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LC_ALL": "C.UTF-8", "SOURCE_DATE_EPOCH": str(source_date_epoch),
            "PYTHONHASHSEED": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_CACHE_DIR": "1", "PIP_ROOT_USER_ACTION": "ignore"}


def in_root(root: Path, args: list[str], env: dict[str, str]) -> str:
    run = subprocess.run(["chroot", str(root), *args], capture_output=True, text=True, env=env,
                         check=False)
    if run.returncode != 0:
        raise RootfsError(f"in the image: {shlex.join(args)} failed ({run.returncode}):\n"
                          f"{run.stdout[-2000:]}{run.stderr[-4000:]}")
    return run.stdout


def customize(root: Path, plan: dict[str, str]) -> None:
    """Runs as mmdebstrap's customize hook (proc, sys and dev are mounted in root); prints
    each step with its time into the build log."""
    from imagebuild.config import load

    config = load(Path(plan["config"]))
    env = chroot_env(int(plan["source_date_epoch"]))
    venv = str(config.python.venv)

    def files() -> None:
        # The files every pole has: mount table, services, udev and journald settings.
        copy_overlay(root)
        write_generated(root, config)
        install_units(root)

    def fill_venv() -> None:
        # From the wheels folder only (bind-mounted, read-only), by pip run from its own
        # wheel, so the venv holds no pip.
        wheels = root / WHEELS_IN_ROOT.lstrip("/")
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", "-o", "ro", plan["wheels"], str(wheels)], check=True)
        try:
            pip = sorted(Path(plan["wheels"]).glob("pip-*.whl"))[-1].name
            in_root(root, ["python3", "-m", "venv", "--system-site-packages", "--without-pip",
                           venv], env)
            in_root(root, [f"{venv}/bin/python", f"{WHEELS_IN_ROOT}/{pip}/pip", "install",
                           "--quiet", "--no-index", "--find-links", WHEELS_IN_ROOT,
                           "--constraint", f"{WHEELS_IN_ROOT}/constraints.txt", "--no-compile",
                           "--no-warn-script-location", f"safecity-edge=={plan['version']}"],
                    env)
        finally:
            subprocess.run(["umount", str(wheels)], check=True)
            wheels.rmdir()

    def check_imports() -> None:
        # The node imports systemd-python from Debian's python3-systemd (no wheel exists).
        in_root(root, [f"{venv}/bin/python", "-c", "import systemd.daemon, edge.cli"], env)

    def services() -> None:
        in_root(root, ["systemd-sysusers"], env)
        in_root(root, ["systemctl", "enable", *ENABLE], env)
        in_root(root, ["systemctl", "disable", *DISABLE], env)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("cache mount point removed", lambda: remove_unowned_dirs(root, Path(plan["debs"]))),
        ("files, units", files),
        ("stand-ins removed, hwdb (native)", lambda: restore_stand_ins(root, config, env)),
        ("kernel modules compressed (native)", lambda: compress_modules(root)),
        ("initramfs", lambda: make_initramfs(root, env)),
        ("release, keys, kernel links", lambda: write_release(root, plan)),
        ("venv filled", fill_venv),
        ("byte-compiled", lambda: byte_compile(root, config, env)),
        ("imports checked", check_imports),
        ("users, services", services),
        ("cleaned", lambda: clean(root)),
    ]
    for name, run in steps:
        began = time.monotonic()
        run()
        print(f"I: customize: {name} ({time.monotonic() - began:.1f} s)", flush=True)


def remove_unowned_dirs(root: Path, path: Path) -> None:
    """The package cache was mounted at its host path inside the root (a cached build); its
    empty folders stay behind. Remove them up to the first folder a package owns (/root,
    /tmp), so a cached build leaves the same tree as one from the mirror."""
    owned = {"/"}
    for listing in (root / "var/lib/dpkg/info").glob("*.list"):
        owned.update(listing.read_text().splitlines())
    here = path
    while str(here) not in owned and here != here.parent:
        folder = root / here.relative_to("/")
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        elif folder.exists():
            break
        here = here.parent


def copy_overlay(root: Path) -> None:
    """image-build/overlay/ into the root, with modes set here rather than taken from the
    checkout (a clone's umask would otherwise end up in the image)."""
    for src in sorted(OVERLAY.rglob("*")):
        dest = root / src.relative_to(OVERLAY)
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            dest.chmod(0o755)
        else:
            shutil.copyfile(src, dest)
            dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)


def stand_ins(config: ImageConfig) -> dict[str, str]:
    """Programs replaced while the packages install (path: stand-in script)."""
    py = config.python.version
    return {
        "/usr/bin/systemd-hwdb": "#!/bin/sh\nexit 0\n",
        "/usr/bin/py3compile": "#!/bin/sh\nexit 0\n",
        # Made once at the end with every hook in place, not on each package's trigger.
        "/usr/sbin/update-initramfs": "#!/bin/sh\nexit 0\n",
        # python3.X's own postinst runs this file as a script; nothing imports it meanwhile.
        f"/usr/lib/python{py}/py_compile.py": "raise SystemExit(0)\n",
    }


def restore_stand_ins(root: Path, config: ImageConfig, env: dict[str, str]) -> None:
    """Put the real programs back, then do natively what they would have done: udev's
    hardware database by the host's systemd-hwdb."""
    for path in stand_ins(config):
        (root / path.lstrip("/")).unlink()
        in_root(root, ["dpkg-divert", "--quiet", "--local", "--rename", "--remove", path], env)
    # Not --root: systemd-hwdb then records each source file under the build's path. In a
    # private mount namespace the image's udev folders are where the pole has them.
    script = (f'mount --bind "{root}/usr/lib/udev" /usr/lib/udev && '
              f'mkdir -p "{root}/etc/udev" && mount --bind "{root}/etc/udev" /etc/udev && '
              "systemd-hwdb --usr update")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not (root / "usr/lib/udev/hwdb.bin").exists():
        raise RootfsError(f"systemd-hwdb (host) failed on the image's hwdb.d:\n{done.stderr}")


def compress_modules(root: Path) -> None:
    """bookworm ships kernel modules uncompressed (~300 MB); xz them as later Debian kernels
    do (kmod loads .ko.xz), natively and in parallel, then rebuild modules.dep with the host's
    depmod. A third of the root filesystem and of the download goes."""
    modules = sorted((root / "usr/lib/modules").glob("*/kernel/**/*.ko"))
    # The kernel's own settings for compressed modules (CRC32 check, 1 MiB dictionary), at
    # preset 0: six times faster than 6 and 10 % larger.
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 0, "dict_size": 1 << 20}]

    def squeeze(path: Path) -> None:
        packed = lzma.compress(path.read_bytes(), format=lzma.FORMAT_XZ,
                               check=lzma.CHECK_CRC32, filters=filters)
        target = path.with_name(path.name + ".xz")
        target.write_bytes(packed)
        shutil.copystat(path, target)
        path.unlink()

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(squeeze, modules))
    for kernel in sorted(p.name for p in (root / "usr/lib/modules").iterdir()):
        done = subprocess.run(["depmod", "-b", str(root), kernel], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise RootfsError(f"depmod (host) failed for {kernel}:\n{done.stderr}")


def make_initramfs(root: Path, env: dict[str, str]) -> None:
    """The initramfs, once, with every package's hooks in place (while the packages
    installed, the kernel's postinst and each trigger met a stand-in)."""
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    for kernel in kernels:
        (root / "boot" / f"initrd.img-{kernel}").unlink(missing_ok=True)
        in_root(root, ["update-initramfs", "-c", "-k", kernel], env)


def byte_compile(root: Path, config: ImageConfig, env: dict[str, str]) -> None:
    """Every .py of the image's Python compiled once, as unchecked-hash .pyc files: the root
    is read-only, so sources never change and nothing is compiled at each start. With the
    same Python minor version on the host (bookworm's 3.11 on Debian 12) this runs natively;
    otherwise under emulation."""
    py = config.python.version
    venv = str(config.python.venv).lstrip("/")
    folders = [f"usr/lib/python{py}", "usr/lib/python3/dist-packages",
               f"{venv}/lib/python{py}/site-packages"]
    args = ["-m", "compileall", "-q", "-j", "2", "--invalidation-mode", "unchecked-hash",
            "-x", r"(lib2to3/tests|test/bad|/tests?/.*bad)"]
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == py:
        native = subprocess.run(
            [sys.executable, *args, "-s", str(root), "-p", "/",
             *(str(root / f) for f in folders if (root / f).is_dir())],
            capture_output=True, text=True, check=False,
            env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        if native.returncode not in (0, 1):
            raise RootfsError(f"compileall failed:\n{native.stdout[-2000:]}{native.stderr[-2000:]}")
    else:
        run = subprocess.run(["chroot", str(root), f"/usr/bin/python{py}", *args,
                              *("/" + f for f in folders if (root / f).is_dir())],
                             capture_output=True, text=True, env=env, check=False)
        if run.returncode not in (0, 1):
            raise RootfsError(f"compileall failed in the image:\n{run.stderr[-2000:]}")


def write_generated(root: Path, config: ImageConfig) -> None:
    ids = config.ids
    # Mount points must exist in a root that is never writable.
    for mountpoint in ("data", "var/lib/edge", "var/log/journal", "boot/firmware"):
        (root / mountpoint).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "fstab").write_text(FSTAB.format(boot=ids.partuuid(1),
                                                     data=ids.partuuid(4)))
    (root / "etc" / "hostname").write_text(f"{config.name}\n")
    (root / "etc" / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{config.name}\n::1\tlocalhost ip6-localhost\n")
    for old in [root / "etc/apt/sources.list", *(root / "etc/apt/sources.list.d").glob("*")]:
        old.unlink(missing_ok=True)
    d = config.debian
    (root / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {d.mirror}\nSuites: {d.suite} {d.suite}-updates\n"
        f"Components: {' '.join(d.components)}\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def write_release(root: Path, plan: dict[str, str]) -> None:
    """What the updates need in every slot: which release this is, the keys a bundle must be
    signed with, stable names for U-Boot to load the kernel by, and where the A/B state is."""
    from firmware.bootctl.uboot import fw_env_config

    lib = root / "usr/lib/safecity-edge"
    (lib / "release-keys").mkdir(parents=True, exist_ok=True)
    (lib / "release.json").write_text(plan["release"] + "\n")
    public = Path(plan["public_key"])
    shutil.copyfile(public, lib / "release-keys" / public.name)
    for name in ("vmlinuz", "initrd.img"):
        found = sorted((root / "boot").glob(f"{name}-*"))
        link = root / "boot" / name
        link.unlink(missing_ok=True)
        if found:
            link.symlink_to(found[-1].name)
    boot_dir = Path("/boot/firmware")
    (root / "etc/fw_env.config").write_text(fw_env_config(boot_dir, 1))
    (root / "etc/safecity-edge").mkdir(parents=True, exist_ok=True)
    (root / "etc/safecity-edge/fw_env-2.config").write_text(fw_env_config(boot_dir, 2))


def install_units(root: Path) -> None:
    """systemd/, the one home of the unit files: the node's unit, its users and folders, the
    watchdog settings, the image's own units (provisioning, data partition, firmware updates)
    and the image's drop-in for the node."""
    systemd = REPO / "systemd"
    copies = {systemd / "edge-node.sysusers.conf": "usr/lib/sysusers.d/edge-node.conf",
              systemd / "edge-node.tmpfiles.conf": "usr/lib/tmpfiles.d/edge-node.conf"}
    for unit in sorted([*systemd.glob("*.service"), *systemd.glob("*.path")]):
        copies[unit] = f"usr/lib/systemd/system/{unit.name}"
    for conf in sorted((systemd / "system.conf.d").glob("*.conf")):
        copies[conf] = f"etc/systemd/system.conf.d/{conf.name}"
    for conf in sorted((systemd / "edge-node.service.d").glob("*.conf")):
        copies[conf] = f"etc/systemd/system/edge-node.service.d/{conf.name}"
    for src, dest in copies.items():
        for folder in reversed((root / dest).relative_to(root).parents[:-1]):
            (root / folder).mkdir(exist_ok=True)
            (root / folder).chmod(0o755)
        shutil.copyfile(src, root / dest)
        (root / dest).chmod(0o644)


def clean(root: Path) -> None:
    """What a build leaves that differs between builds or must not be shared between poles."""
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")
    for path in ["var/lib/systemd/random-seed", "var/cache/ldconfig/aux-cache",
                 "etc/resolv.conf.bak"]:
        (root / path).unlink(missing_ok=True)
    for folder in ["tmp", "var/tmp", "var/log", "var/lib/apt/lists", "var/cache/apt",
                   "var/cache/debconf"]:
        base = root / folder
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            if folder == "var/cache/debconf" and not entry.name.endswith("-old"):
                continue
            if folder == "tmp" and entry.name.startswith("mmdebstrap."):
                continue  # mmdebstrap's own, removed by it at the end
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


FSTAB = """\
# The root filesystem is whichever slot (A or B) the boot loader chose; it stays read-only.
/dev/root        /                  ext4   ro,noatime                         0 0
PARTUUID={boot}  /boot/firmware     vfat   ro,noatime,nofail,umask=0022       0 2
PARTUUID={data}  /data              ext4   rw,noatime,commit=5,errors=remount-ro 0 2
# Writable state lives on the data partition; scratch space in memory.
/data/edge       /var/lib/edge      none   bind,x-systemd.requires-mounts-for=/data 0 0
/data/journal    /var/log/journal   none   bind,x-systemd.requires-mounts-for=/data 0 0
/data/systemd    /var/lib/systemd   none   bind,x-systemd.requires-mounts-for=/data 0 0
tmpfs            /tmp               tmpfs  mode=1777,nosuid,nodev,size=64M    0 0
tmpfs            /var/tmp           tmpfs  mode=1777,nosuid,nodev,size=32M    0 0
tmpfs            /var/log           tmpfs  mode=0755,nosuid,nodev,size=32M    0 0
tmpfs            /var/cache         tmpfs  mode=0755,nosuid,nodev,size=16M    0 0
"""


def main() -> None:
    """Entry for mmdebstrap's customize hook: python -m imagebuild.rootfs ROOT PLAN.json"""
    root, plan = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    try:
        customize(root, plan)
    except RootfsError as exc:
        print(f"image customisation failed: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    os.umask(0o022)
    main()
