"""Every command's --help shows an example; the top-level help documents shell completion."""

from __future__ import annotations

import itertools
import json

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
        "serve",
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


def description_lines(*args: str, width: int) -> list[str]:
    """The help screen's text above its first box, at `width` columns (CliRunner's stdout is a pipe)."""
    result = CliRunner().invoke(
        app, [*args, "--help"], env={"COLUMNS": str(width), "TERMINAL_WIDTH": str(width)}
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("╭")[0].splitlines()
    assert max(len(line) for line in lines) <= width, "wider than the screen"
    return [line.strip() for line in lines]


@pytest.mark.parametrize("width", [80, 100])
def test_help_breaks_lines_only_where_the_screen_ends(width: int) -> None:
    # A line that ends a sentence early although the next word would have fit on it is a break kept from
    # the docstring's source, in the middle of a sentence.
    commands = [[command] for command in COMMANDS if command != "data"] + [
        ["data", "list"],
        ["data", "fetch"],
    ]
    for command in commands:
        lines = description_lines(*command, width=width)
        for line, following in itertools.pairwise(lines):
            if not line or not following or line.startswith("Usage:"):
                continue
            room = width - 2  # one space of padding each side
            assert len(line) + 1 + len(following.split()[0]) > room, (command, width, line, following)


def test_data_list_fits_100_columns_in_a_pipe_and_json_is_complete() -> None:
    from rnnclf.fetch import catalog

    result = CliRunner().invoke(app, ["data", "list"])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 100
    for row in catalog():
        assert row["name"] in result.stdout, row["name"]  # names are never broken over lines
    listed = CliRunner().invoke(app, ["data", "list", "--json"]).stdout
    assert [row["source"] for row in catalog()] == [row["source"] for row in json.loads(listed)]
