"""`edge-hub` tells the operator what is wrong with its arguments before touching a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.ids import uuid7
from hub.console import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_an_operator_name_too_long_for_an_ack_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run(["--operator", "x" * 65, "--duration", "0"], capsys)
    assert code == 2 and "--operator is not valid" in err


def test_a_node_id_that_cannot_be_a_topic_segment_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run(["--ack", "Pole/7", uuid7()], capsys)
    assert code == 2 and "NODE of --ack is not valid" in err


def test_tls_needs_all_three_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["--tls-ca", "ca.pem", "--duration", "0"], capsys)
    assert code == 2 and "give all three" in err


def test_missing_tls_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = [str(tmp_path / f) for f in ("ca.pem", "hub.pem", "hub.key")]
    argv = ["--tls-ca", missing[0], "--tls-cert", missing[1], "--tls-key", missing[2]]
    code, err = run([*argv, "--duration", "0"], capsys)
    assert code == 2 and "cannot load the TLS files" in err
