"""`config.set` from the hub: the changed config is written on trial and the node restarts
with it; once the node is healthy and connected it is committed, else the previous config
comes back (edge/config/trial.py keeps the files)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from contract.commands import ConfigSet, Response
from edge.config.loader import ConfigError, parse_config
from edge.config.model import NodeConfig
from edge.config.trial import ConfigTrial, TrialError, changed, sha256_of
from edge.uplink.client import ReplyTo

log = logging.getLogger(__name__)

Answer = Callable[[ReplyTo, Response], None]


class ConfigChange:
    """The hub's config changes for one node, from the command to the commit or roll-back."""

    def __init__(self, cfg: NodeConfig, config_path: Path | None, answer: Answer,
                 restart: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.trial = ConfigTrial(config_path) if config_path is not None else None
        self._started = time.monotonic()
        self._answer = answer
        self._restart = restart

    def apply(self, command: ConfigSet, reply: ReplyTo) -> None:
        """On the command thread: write the changed config on trial and restart with it."""
        def fail(status: str, why: str) -> None:
            self._answer(reply, Response(id=command.id, command="config.set",
                                         status=status, error=why))  # type: ignore[arg-type]

        if self.trial is None or self.config_path is None:
            fail("rejected", "this node was started without a config file it may rewrite")
            return
        try:
            text = self.config_path.read_text(encoding="utf-8")
            new_text = changed(text, command.set)
            new_cfg = parse_config(new_text, source="the changed config")
        except TrialError as e:
            fail("rejected", str(e))
            return
        except ConfigError as e:
            fail("rejected", "; ".join(e.problems)[:1000])
            return
        except OSError as e:
            fail("failed", f"cannot read {self.config_path.name}: {e}")
            return
        if new_cfg == self.cfg:
            self._answer(reply, Response(id=command.id, command="config.set", status="done",
                                         error="no change",
                                         config_sha256=sha256_of(self.config_path)))
            return
        trial_s = command.trial_s or self.cfg.commands.config_trial_s
        try:
            sha = self.trial.begin(command.id, new_text, trial_s=trial_s,
                                   reply_topic=reply.topic, correlation=reply.correlation)
        except TrialError as e:
            fail("rejected", str(e))
            return
        except OSError as e:
            fail("failed", f"cannot write the config: {e}")
            return
        self._answer(reply, Response(
            id=command.id, command="config.set", status="accepted", config_sha256=sha,
            error=f"restarting with it; the previous config comes back unless the node is "
            f"healthy and connected within {trial_s:.0f} s"))
        self._restart(f"config change {command.id}")

    def settle(self, unhealthy: str, connected: bool) -> None:
        """From the main loop: a change on trial commits once the node is healthy (`unhealthy`
        is empty) and connected, or rolls back when its time is up."""
        trial = self.trial.current() if self.trial is not None else None
        if self.trial is None or trial is None:
            return
        reply = ReplyTo(trial.reply_topic,
                        bytes.fromhex(trial.correlation) if trial.correlation else None)
        if trial.state == "rolled_back":
            if connected:
                self._answer(reply, Response(
                    id=trial.command_id, command="config.set", status="failed",
                    error=f"rolled back to the previous config: {trial.reason}",
                    config_sha256=sha256_of(self.trial.config)))
                self.trial.finish()
            return
        if not unhealthy and connected:
            self.trial.commit()
            self._answer(reply, Response(id=trial.command_id, command="config.set",
                                         status="done", config_sha256=trial.sha256))
        elif trial.overdue(self._started):
            why = unhealthy or "not connected to the hub"
            self.trial.roll_back(f"not healthy within the trial: {why}")
            self._restart("config change rolled back")
