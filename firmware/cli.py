"""`edge-firmware`: release keys and bundles for whoever publishes an update, the state of the
slots for a technician, and the two services systemd runs on the node (install-request,
commit). Errors say what was wrong and what to do, and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from firmware import handoff

if TYPE_CHECKING:
    from firmware.bootctl import BootControl
    from firmware.service import Node

STATE = Path("/var/lib/edge/firmware")
BOOT_DIR = Path("/boot/firmware")


def _boot_control() -> BootControl:
    from firmware.bootctl import BootControlError, detect

    try:
        return detect(BOOT_DIR)
    except BootControlError as e:
        raise SystemExit(f"edge-firmware: {e}") from None


def _node() -> Node:
    from firmware.bootctl import BootControlError, Slot, slot_partuuids
    from firmware.service import Node

    try:
        uuids = slot_partuuids(Path("/proc/cmdline").read_text())
    except BootControlError as e:
        raise SystemExit(f"edge-firmware: {e}; this is not an A/B card") from None

    def device(slot: Slot) -> Path:
        return Path("/dev/disk/by-partuuid") / uuids[slot]

    return Node(state=STATE, slot_device=device)


def _restarts() -> int:
    # S607: systemctl from the PATH systemd gives the unit (its place differs by distribution)
    out = subprocess.run(["systemctl", "show", "-P", "NRestarts", "edge-node.service"],  # noqa: S607
                         capture_output=True, text=True, check=False).stdout.strip()
    return int(out) if out.isdigit() else 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from firmware.keys import ReleaseKeyError, generate, key_id

    try:
        key = generate(args.path)
    except ReleaseKeyError as e:
        raise SystemExit(f"edge-firmware keygen: {e}") from None
    print(f"release key {key_id(key.public_key())}: {args.path} (keep it secret), "
          f"public key {args.path.with_suffix('.pub')} (goes into the image)")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from firmware.bundle import make
    from firmware.keys import ReleaseKeyError, load_private

    try:
        key = load_private(args.key)
    except (ReleaseKeyError, OSError) as e:
        raise SystemExit(f"edge-firmware bundle: {e}") from None
    manifest = make(args.image, args.out, key=key, version=args.version, build=args.build,
                    commit=args.commit, boards=args.boards.split(","), downgrade=args.downgrade)
    print(f"{args.out}: {manifest.release().label()} for {', '.join(manifest.boards)}, "
          f"{manifest.image_size} bytes in {manifest.chunk_count} chunks of "
          f"{manifest.chunk_size} ({manifest.payload_size} stored, index "
          f"{manifest.index_size})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from firmware.bundle import Refused, read_head, verify
    from firmware.keys import load_trusted

    with args.bundle.open("rb") as f:
        try:
            head = read_head(f)
            manifest = head.manifest
            print(manifest.model_dump_json(indent=2))
            if args.keys is not None:
                verify(head, load_trusted(args.keys))
                print(f"signature: good (key {manifest.key_id})")
        except Refused as e:
            print(f"refused ({e.reason}): {e}", file=sys.stderr)
            return 1
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    from firmware.release import installed

    boot = _boot_control()
    state = boot.state()
    running = installed()
    print(f"boot loader: {boot.name}")
    print(f"running: slot {state.booted}, {running.label() if running else 'release unknown'}")
    print(f"committed: slot {state.primary}")
    if state.trial is not None:
        print(f"on trial: slot {state.trial}, boot {state.tries} of {state.limit}")
    if state.damaged:
        print(f"boot state damaged: {state.damaged}")
    for name, model in ((handoff.PROGRESS, handoff.Progress), (handoff.PENDING, handoff.Pending),
                        (handoff.RESULT, handoff.Result)):
        item = handoff.read(STATE, name, model)
        if item is not None:
            print(f"{name}: {item.model_dump_json()}")
    return 0


def cmd_install_request(_args: argparse.Namespace) -> int:
    from firmware.service import install_request

    stage = install_request(_node(), _boot_control())
    return 0 if stage in ("", "installed", "rebooting", "refused") else 1


def cmd_commit(args: argparse.Namespace) -> int:
    from firmware.service import commit

    def say(line: str) -> None:
        print(f"edge-firmware: {line}", flush=True)

    commit(_node(), _boot_control(), timeout_s=args.timeout, restarts=_restarts, say=say)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-firmware", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keygen", help="make an Ed25519 release key pair")
    p.add_argument("path", type=Path, help="the private key file to create (PEM)")
    p.set_defaults(run=cmd_keygen)
    p = sub.add_parser("bundle", help="sign a root filesystem image into an update bundle")
    p.add_argument("image", type=Path, help="the slot's root filesystem image (ext4)")
    p.add_argument("--key", type=Path, required=True, help="the release key (PEM)")
    p.add_argument("--version", required=True, help="e.g. 0.2.0")
    p.add_argument("--build", type=int, required=True, help="orders builds of one version")
    p.add_argument("--commit", default="")
    p.add_argument("--boards", required=True, help="comma separated: pi4,pi3,qemu")
    p.add_argument("--downgrade", action="store_true",
                   help="allow installing over a newer version (signed into the manifest)")
    p.add_argument("-o", "--out", type=Path, required=True)
    p.set_defaults(run=cmd_bundle)
    p = sub.add_parser("inspect", help="print a bundle's manifest; check it with --keys")
    p.add_argument("bundle", type=Path)
    p.add_argument("--keys", type=Path, help="folder of trusted release keys (*.pub)")
    p.set_defaults(run=cmd_inspect)
    p = sub.add_parser("status", help="the slots, the running release, an update under way")
    p.set_defaults(run=cmd_status)
    p = sub.add_parser("install-request", help="(service) carry out the node's request.json")
    p.set_defaults(run=cmd_install_request)
    p = sub.add_parser("commit", help="(service) commit a healthy trial boot, report the end")
    p.add_argument("--timeout", type=float,
                   default=float(os.environ.get("EDGE_TRIAL_TIMEOUT_S", "600")),
                   help="seconds the node has to prove itself on a trial boot")
    p.set_defaults(run=cmd_commit)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
