"""The docs keep up with the code: docs/settings.md has a row for every key `rnnclf init-config` prints
(with the schema's default), and README.md's tables name every command and every config section, each
with a link to its guide. Also bench/gpu_check.py checks every cell and pooling the schema accepts.

The keys come from rnnclf.config.default_yaml, the code behind `init-config`, so a section or key added
to the schema (e.g. a `tune:` section) fails here until docs/settings.md documents it.
"""

from __future__ import annotations

import importlib.util
import re
import typing
from pathlib import Path

import typer
import yaml

from rnnclf.cli.app import app
from rnnclf.config import default_yaml
from rnnclf.schema import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "docs" / "settings.md"
README = ROOT / "README.md"
# A reference row in docs/settings.md: | `section.key` | `default` | meaning |
ROW = re.compile(r"^\| `([a-z_]+)\.([a-z_]+)` \| `([^`]*)` \| (.+) \|$", re.MULTILINE)


def printed() -> dict[str, dict[str, object]]:
    """{section: {key: default}}: what `rnnclf init-config` prints, read back as YAML."""
    return yaml.safe_load(default_yaml())


def shown(value: object) -> str:
    """A default as the printed config writes it (YAML, flow style): null, true, 0.1, ','."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).removesuffix("...\n").strip()


def documented(text: str) -> dict[str, tuple[str, str]]:
    """{"section.key": (default, meaning)} for every reference row of a settings page."""
    return {f"{section}.{key}": (default, meaning) for section, key, default, meaning in ROW.findall(text)}


def problems(text: str) -> list[str]:
    """What a settings page lacks or gets wrong against the printed config, one line each."""
    rows = documented(text)
    found = []
    for section, keys in printed().items():
        if not re.search(rf"^### `{section}`$", text, re.MULTILINE):
            found.append(f"no '### `{section}`' heading for the section")
        for key, default in keys.items():
            name = f"{section}.{key}"
            if name not in rows:
                found.append(f"{name}: no row '| `{name}` | `{shown(default)}` | meaning |'")
            elif not isinstance(default, dict | list) and rows[name][0] != shown(default):
                wrong = rows[name][0]
                found.append(f"{name}: documented default `{wrong}`, the schema's is `{shown(default)}`")
    known = {f"{section}.{key}" for section, keys in printed().items() for key in keys}
    found += [f"{name}: documented, but init-config prints no such key" for name in rows if name not in known]
    return found


def test_settings_documents_every_key_init_config_prints() -> None:
    assert problems(SETTINGS.read_text(encoding="utf-8")) == []


def test_the_check_sees_a_missing_key_a_wrong_default_and_a_stale_row() -> None:
    text = SETTINGS.read_text(encoding="utf-8")
    without = "\n".join(line for line in text.splitlines() if not line.startswith("| `model.init_from` |"))
    assert problems(without) == ["model.init_from: no row '| `model.init_from` | `null` | meaning |'"]
    wrong = text.replace("| `train.lr` | `0.002` |", "| `train.lr` | `0.01` |")
    assert problems(wrong) == ["train.lr: documented default `0.01`, the schema's is `0.002`"]
    stale = text + "\n| `model.hiden_dim` | `128` | a typo |\n"
    assert problems(stale) == ["model.hiden_dim: documented, but init-config prints no such key"]


def test_every_printed_key_has_a_meaning() -> None:
    rows = documented(SETTINGS.read_text(encoding="utf-8"))
    assert rows, "no reference rows found in docs/settings.md"
    assert all(len(meaning.split()) >= 3 for _, meaning in rows.values())


def readme_rows(first_cell: str) -> dict[str, str]:
    """README table rows whose first cell matches `first_cell` (a regex with one group): {group: row}."""
    pattern = re.compile(rf"^\| {first_cell} \|.*$", re.MULTILINE)
    return {match.group(1): match.group(0) for match in pattern.finditer(README.read_text(encoding="utf-8"))}


def commands() -> list[str]:
    """Every command and sub-command the CLI has: train, ..., data list, data fetch."""
    names = []
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        sub = getattr(command, "commands", None)
        names += [f"{name} {part}" for part in sub] if sub else [name]
    return sorted(names)


def test_readme_lists_every_command_with_a_link_to_its_guide() -> None:
    rows = readme_rows(r"`rnnclf ([a-z-]+(?: [a-z-]+)?)[^`]*`")
    assert "train" in rows  # the pattern reads the table at all
    for name in commands():
        assert name in rows, f"README.md: no commands-table row for `rnnclf {name}`"
        assert "](docs/" in rows[name], f"README.md: the row of `rnnclf {name}` links no guide in docs/"


def test_readme_lists_every_config_section_with_a_link_to_its_guide() -> None:
    rows = readme_rows(r"`([a-z_]+)`")
    for section in printed():
        assert section in rows, f"README.md: no config-table row for the `{section}` section"
        assert "](docs/" in rows[section], f"README.md: the `{section}` row links no guide in docs/"


def test_readme_stays_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_gpu_check_covers_every_cell_and_pooling_the_schema_accepts() -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec and spec.loader
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)  # defines its lists; main() is not run
    for key, checked in (("cell", gpu_check.CELLS), ("pooling", gpu_check.POOLINGS)):
        accepted = typing.get_args(ModelConfig.model_fields[key].annotation)
        assert set(checked) == set(accepted), (
            f"bench/gpu_check.py checks {checked}, the schema accepts {accepted}"
        )
