"""`edge-node`: run the node, check a config file, print the published schemas."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edge.config import ConfigError, NodeConfig, load_config


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(e.report(), file=sys.stderr)
        if not _roll_back_trial(args.config, e):
            return 2
        cfg = load_config(args.config)

    from edge.node import RESTART, Node  # gpiozero and paho only when a node really runs

    code = Node(cfg, config_path=args.config.resolve()).run()
    if code == RESTART:  # same process id, so systemd's watchdog and Type=notify carry on
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, "-m", "edge.cli", *sys.argv[1:]])  # noqa: S606 (the node restarts itself)
    return code


def _roll_back_trial(path: Path, error: ConfigError) -> bool:
    """A config from the hub that does not load goes back to the previous one, if on trial."""
    from edge.config.trial import ConfigTrial

    trial = ConfigTrial(path)
    current = trial.current()
    if current is None or current.state != "trial" or not trial.last_good.exists():
        return False
    trial.roll_back(f"the new config does not load: {'; '.join(error.problems)[:500]}")
    print(f"{path}: rolled back to the previous config", file=sys.stderr)
    return True


def _check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        warnings: list[str] = []
        try:
            cfg = load_config(path, warnings)
        except ConfigError as e:
            print(e.report(), file=sys.stderr)
            failed += 1
            continue
        for note in warnings:
            print(f"{path}: warning: {note}", file=sys.stderr)
        print(f"{path}: ok (node {cfg.node.id}, hub {cfg.hub.host}:{cfg.hub.port})")
    return 1 if failed else 0


def _schema(_args: argparse.Namespace) -> int:
    print(json.dumps(NodeConfig.model_json_schema(), indent=2))
    return 0


def _asyncapi(_args: argparse.Namespace) -> int:
    from contract.asyncapi import render

    sys.stdout.write(render())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-node", description="Safe City pole controller")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the node")
    run.add_argument("--config", "-c", type=Path, required=True, help="the node's YAML config")
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate config files; non-zero exit if bad")
    check.add_argument("files", type=Path, nargs="+")
    check.set_defaults(func=_check)
    sub.add_parser("schema", help="print the config's JSON Schema").set_defaults(func=_schema)
    sub.add_parser("asyncapi", help="print the MQTT API as AsyncAPI 3").set_defaults(
        func=_asyncapi
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pymodbus logs every frame at DEBUG; the bus driver counts and reports failures itself.
    logging.getLogger("pymodbus").setLevel(max(logging.INFO, logging.getLogger().level))
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
