"""Every command's --help shows an example; the top-level help documents shell completion."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from rnnclf.cli.app import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.replace("│", " ").split())  # unwrap rich's boxes and line breaks


def test_the_commands() -> None:
    assert COMMANDS == [
        "data",
        "eval",
        "export",
        "info",
        "init-config",
        "predict",
        "pretrain",
        "runs",
        "train",
        "tune",
    ]


def test_every_command_help_shows_an_example() -> None:
    for command in COMMANDS:
        assert f"Example: rnnclf {command}" in help_text(command), command


def test_data_subcommands_show_an_example() -> None:
    for command in ("list", "fetch"):
        assert f"Example: rnnclf data {command}" in help_text("data", command), command


def test_top_level_help_shows_an_example_and_shell_completion() -> None:
    text = help_text()
    assert "Example: rnnclf train" in text
    assert "--install-completion" in text and "rnnclf --install-completion" in text
    for command in COMMANDS:
        assert command in text


def test_completion_script_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer otherwise detects the shell from the parent process and ignores the argument: under a plain
    # `sh` (a CI runner's, a cron job's) it fails with "Shell sh not supported". Name the shell instead.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="rnnclf")
    assert result.exit_code == 0, result.output
    assert "_rnnclf_completion" in result.stdout
