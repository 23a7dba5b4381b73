"""`edge-clip`: export a camera's footage as a signed evidence clip, check a clip, show the key.

On the node a technician (or the node itself, for a hub's request, with `--json`) runs
`export`; wherever the clip ends up, `verify` checks it against its manifest and the node's
public key, which `key` prints. Exit status: 0 done, 1 failed (no footage, a clip that does
not verify, an unreadable file), 2 the command line or the config file is wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from contract.evidence.hashing import ClipError, utc_iso
from contract.evidence.keyfiles import PUBLIC_FILE
from contract.evidence.keys import EvidenceKeyError, fingerprint, load_public, public_pem
from contract.evidence.manifest import ManifestError, manifest_path, read_manifest, span, verify
from edge.clock import sync_state
from edge.config import ConfigError, NodeConfig, load_config
from edge.record.clips import Clip, export_clip
from edge.record.index import INDEX_FILE, Category, RecordingIndexError, SegmentIndex
from edge.record.manifest import build_manifest, write_manifest
from edge.record.signing import evidence_key
from edge.record.timeline import SystemClock, Timeline

_TIME_HELP = ("ISO 8601 (2026-11-21T14:59:00Z, or with an offset such as +02:00; a time "
              "without an offset is UTC) or unix seconds")
_EARLIEST, _LATEST = 946684800.0, 4102444800.0  # 2000-01-01 .. 2100-01-01


class _Failed(Exception):
    """A failure to report in one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parse_time(text: str) -> float:
    """A command-line time: ISO 8601 (no offset: UTC) or unix seconds."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not (math.isfinite(value) and _EARLIEST <= value < _LATEST):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a time between 2000 and 2100 in unix seconds; or write "
                "ISO 8601 such as 2026-11-21T14:59:00Z")
        return value
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: write {_TIME_HELP}") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _window(args: argparse.Namespace, cfg: NodeConfig) -> tuple[float, float]:
    if args.around is not None:
        if args.start is not None or args.end is not None:
            raise _Failed("give either --around or --start and --end, not both", 2)
        before = cfg.recording.alert_window.before_s if args.before is None else args.before
        after = cfg.recording.alert_window.after_s if args.after is None else args.after
        if before < 0 or after < 0 or before + after <= 0:
            raise _Failed("--before and --after are seconds, not negative, not both 0", 2)
        return args.around - before, args.around + after
    if args.start is None or args.end is None:
        raise _Failed("give --start and --end, or --around (with --before/--after)", 2)
    if args.before is not None or args.after is not None:
        raise _Failed("--before and --after go with --around", 2)
    if args.end <= args.start:
        raise _Failed(f"--end ({utc_iso(args.end)}) must be after --start "
                      f"({utc_iso(args.start)})", 2)
    return args.start, args.end


def _export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    start, end = _window(args, cfg)
    if not (cfg.recording_dir / INDEX_FILE).exists():
        raise _Failed(f"no recordings at {cfg.recording_dir} (no {INDEX_FILE}): is this the "
                      "node's config, and has it recorded?")
    stamp = datetime.fromtimestamp(start, UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.output or Path.cwd() / f"{args.camera}-{stamp}.mp4"
    key = evidence_key(cfg.identity_dir)  # first: a key problem must not leave a bare clip
    index = SegmentIndex(cfg.recording_dir)
    try:
        clip = export_clip(index, args.camera, start, end, out)
    finally:
        index.close()
    sync = sync_state()
    manifest = build_manifest(clip, node_id=cfg.node.id, key=key, clock_synced=sync.synced,
                              clock_source=sync.source, clock_offset_s=sync.offset_s,
                              created=time.time())
    mpath = manifest_path(out)
    try:
        write_manifest(manifest, mpath)
    except ManifestError:
        out.unlink(missing_ok=True)  # a clip without its manifest is no evidence
        raise
    if args.json:
        print(json.dumps(_summary(clip, mpath, manifest)))
    else:
        _print_summary(clip, mpath, manifest)
    return 0


def _summary(clip: Clip, mpath: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    return {"clip": str(clip.path.resolve()), "manifest": str(mpath.resolve()),
            "camera": clip.camera, "bytes": clip.bytes, "sha256": clip.sha256,
            "start": manifest["covered"]["start_unix"], "end": manifest["covered"]["end_unix"],
            "gaps": [[g["start_unix"], g["end_unix"]] for g in manifest["gaps"]],
            "clock_steps": manifest["clock_steps"], "clock_synced": manifest["clock_synced"]}


def _print_summary(clip: Clip, mpath: Path, manifest: dict[str, Any]) -> None:
    gaps = ", ".join(f"{span(a, b)} ({b - a:.1f} s)" for a, b in clip.gaps) or "none"
    print(f"clip      {clip.path}")
    print(f"covered   {utc_iso(clip.start)} to {utc_iso(clip.end)} ({clip.end - clip.start:.1f}"
          f" s from {len(clip.parts)} segment(s), camera {clip.camera})")
    print(f"gaps      {gaps}")
    for path, step in clip.clock_steps:
        print(f"clock     stepped {step:+.1f} s before {path}: its times are by the new clock")
    print(f"size      {clip.bytes} bytes")
    print(f"sha256    {clip.sha256}")
    print(f"manifest  {mpath} (signed by key {manifest['key_fingerprint']})")
    if not manifest["clock_synced"]:
        print("clock     NOT synchronised at export: the times may be off")


def _verify(args: argparse.Namespace) -> int:
    key = load_public(args.key)
    mpath: Path = args.manifest or manifest_path(args.clip)
    manifest = read_manifest(mpath)
    if not args.clip.is_file():
        raise _Failed(f"cannot read the clip {args.clip}: no such file")
    verdict = verify(args.clip, manifest, key, segments_root=args.segments)
    if not verdict.ok:
        print(f"FAILED: {args.clip.name}: {verdict.problem}")
        return 1
    covered = manifest["covered"]
    checked = f"; original segments in {args.segments} match" if args.segments else ""
    if manifest["gaps"]:
        checked += f"; {len(manifest['gaps'])} gap(s) in the footage, listed in the manifest"
    print(f"OK: {args.clip.name} is camera {manifest['camera']} of node {manifest['node']}, "
          f"{span(covered['start_unix'], covered['end_unix'])}, unchanged from "
          f"{len(manifest['segments'])} recorded segment(s), signed by key "
          f"{fingerprint(key)}{checked}")
    if not manifest["clock_synced"]:
        print("note: the node's clock was not synchronised when it exported the clip")
    return 0


def _key(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    key = evidence_key(cfg.identity_dir)
    sys.stdout.write(public_pem(key).decode("ascii"))
    print(f"fingerprint {fingerprint(key)}  ({cfg.identity_dir / PUBLIC_FILE})")
    return 0


def _hold(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    start, end = _window(args, cfg)
    index = SegmentIndex(cfg.recording_dir)
    try:
        # A camera since removed from the config may still have footage worth holding.
        cameras = {c.name for c in cfg.cameras} | {s.camera for s in index.segments()}
        if args.camera is not None and args.camera not in cameras:
            raise _Failed(f"no camera {args.camera!r} in the config or the recordings; "
                          f"there are {', '.join(sorted(cameras)) or 'none'}", 2)
        pin = index.pin(args.camera, start, end, Category.LEGAL_HOLD, args.reason,
                        now=Timeline(index, SystemClock()).now(), expires=None)
        held = sum(len(index.between(c, start, end)) for c in
                   ([args.camera] if args.camera else sorted(cameras)))
    finally:
        index.close()
    print(f"legal hold {pin.id}: {args.camera or 'all cameras'} {utc_iso(start)} to "
          f"{utc_iso(end)} ({args.reason}); {held} segment(s) held until released")
    return 0


def _holds(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    index = SegmentIndex(cfg.recording_dir)
    try:
        now = Timeline(index, SystemClock()).now()
        pins = [p for p in index.pins(now.rec) if p.category is Category.LEGAL_HOLD]
    finally:
        index.close()
    for p in pins:
        print(f"{p.id}\t{p.camera or 'all'}\t{utc_iso(p.start)}\t{utc_iso(p.end)}\t{p.reason}")
    if not pins:
        print("no legal holds")
    return 0


def _release(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    index = SegmentIndex(cfg.recording_dir)
    try:
        now = Timeline(index, SystemClock()).now()
        hold = next((p for p in index.pins(now.rec) if p.id == args.hold
                     and p.category is Category.LEGAL_HOLD), None)
        if hold is None:
            raise _Failed(f"no legal hold {args.hold} in force (see edge-clip holds)")
        index.release(hold.id, now=now.rec)
    finally:
        index.close()
    print(f"legal hold {hold.id} released: its footage now follows the normal retention")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edge-clip", description="Export and check evidence clips")
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a camera's footage as a clip with its manifest",
                        description="Times: " + _TIME_HELP + ".")
    ex.add_argument("--config", "-c", type=Path, required=True, help="the node's YAML config")
    ex.add_argument("--camera", required=True, help="camera name, as in the config")
    ex.add_argument("--start", type=parse_time, help="window start; " + _TIME_HELP)
    ex.add_argument("--end", type=parse_time, help="window end (same forms)")
    ex.add_argument("--around", type=parse_time, help="a moment (e.g. an alert); the window "
                    "is --before seconds before it to --after seconds after it")
    ex.add_argument("--before", type=float, help="seconds before --around "
                    "(default: recording.alert_window.before_s)")
    ex.add_argument("--after", type=float, help="seconds after --around "
                    "(default: recording.alert_window.after_s)")
    ex.add_argument("-o", "--output", type=Path,
                    help="the clip's path (default: <camera>-<start>.mp4 here); the manifest "
                    "goes next to it as .manifest.json")
    ex.add_argument("--json", action="store_true", help="print one JSON object (for programs)")
    ex.set_defaults(func=_export)
    ve = sub.add_parser("verify", help="check a clip against its manifest and the node's key")
    ve.add_argument("clip", type=Path)
    ve.add_argument("manifest", type=Path, nargs="?",
                    help="default: the clip's .manifest.json next to it")
    ve.add_argument("--key", type=Path, required=True,
                    help=f"the node's public key ({PUBLIC_FILE}, from `edge-clip key`)")
    ve.add_argument("--segments", type=Path,
                    help="the node's recordings folder: also check the original segments")
    ve.set_defaults(func=_verify)
    ky = sub.add_parser("key", help="print the node's public evidence key (made on first use)")
    ky.add_argument("--config", "-c", type=Path, required=True, help="the node's YAML config")
    ky.set_defaults(func=_key)
    ho = sub.add_parser("hold", help="keep footage until released (a legal hold)",
                        description="Times: " + _TIME_HELP + ".")
    ho.add_argument("--config", "-c", type=Path, required=True, help="the node's YAML config")
    ho.add_argument("--camera", help="one camera (default: all)")
    ho.add_argument("--start", type=parse_time, help="window start")
    ho.add_argument("--end", type=parse_time, help="window end")
    ho.add_argument("--around", type=parse_time, help="a moment; with --before/--after")
    ho.add_argument("--before", type=float, help="seconds before --around")
    ho.add_argument("--after", type=float, help="seconds after --around")
    ho.add_argument("--reason", required=True, help="the case or request, e.g. 'case 77/2026'")
    ho.set_defaults(func=_hold)
    hs = sub.add_parser("holds", help="list the legal holds in force")
    hs.add_argument("--config", "-c", type=Path, required=True, help="the node's YAML config")
    hs.set_defaults(func=_holds)
    rl = sub.add_parser("release", help="lift a legal hold")
    rl.add_argument("--config", "-c", type=Path, required=True, help="the node's YAML config")
    rl.add_argument("hold", type=int, help="the hold's number (from edge-clip holds)")
    rl.set_defaults(func=_release)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="edge-clip: %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except _Failed as e:
        print(f"edge-clip: {e}", file=sys.stderr)
        return e.code
    except ConfigError as e:
        print(e.report(), file=sys.stderr)
        return 2
    except (ClipError, EvidenceKeyError, ManifestError, RecordingIndexError) as e:
        print(f"edge-clip: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"edge-clip: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
