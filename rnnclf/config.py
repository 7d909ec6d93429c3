"""Loading a config: load(path, overrides) -> Config. Unknown keys, retired keys, wrong types and
impossible values are errors that name the dotted key, the value and what is allowed. The schema itself
(sections, keys, defaults, descriptions) is rnnclf.schema; its names are importable from here too.
"""

from __future__ import annotations

import difflib
import reprlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rnnclf.errors import RnnclfError
from rnnclf.schema import (
    PATH_KEYS,
    RETIRED,
    SECTIONS,
    Config,
    DataConfig,
    EnsembleConfig,
    LinearConfig,
    ModelConfig,
    OutputConfig,
    PretrainConfig,
    Section,
    TextConfig,
    TrainConfig,
    TuneConfig,
)

__all__ = [
    "PATH_KEYS",
    "RETIRED",
    "SECTIONS",
    "Config",
    "DataConfig",
    "EnsembleConfig",
    "LinearConfig",
    "ModelConfig",
    "OutputConfig",
    "PretrainConfig",
    "Section",
    "TextConfig",
    "TrainConfig",
    "TuneConfig",
    "default_yaml",
    "differences",
    "dump",
    "load",
    "parse_override",
    "read_yaml",
    "recipe",
    "resolve_paths",
    "safe_load",
    "validate",
]


def _known_keys(path: tuple[str, ...]) -> list[str]:
    """The keys allowed at a dotted path's parent (for suggestions)."""
    if len(path) <= 1:
        return list(SECTIONS)
    section = SECTIONS.get(path[0])
    return list(section.model_fields) if section else []


def _shown(name: object) -> str:
    """A key as typed, escaped if it would break the one-line message (a newline, a tab...)."""
    text = str(name)
    return text if text.isprintable() else repr(text)[1:-1]


def _suggest(key: str, path: tuple[str, ...]) -> str:
    allowed = _known_keys(path)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean '{'.'.join((*path[:-1], close[0]))}'? " if close else ""
    return f"{hint}allowed here: {', '.join(allowed)}"


def _value_shown(value: Any) -> str:
    """A value as short one-line YAML. Never a full repr: YAML aliases can nest a few lines into a
    value whose repr is gigabytes, and a deeply nested one overflows the YAML dumper's recursion."""
    try:
        shown = yaml.safe_dump(value, default_flow_style=True, width=10**9)
        # Flow style is one line, except where a key holds a line break: YAML then writes it over lines.
        shown = " ".join(shown.strip().removesuffix("...").split())
    except (RecursionError, yaml.YAMLError):
        shown = reprlib.repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _describe(error: dict[str, Any], source: str) -> str:
    """One line for the first pydantic error: source, dotted key, value, what is allowed."""
    path = tuple(str(part) for part in error["loc"])
    # Unions report the branch tried (e.g. 'list[float]'); the user's key is the part before it.
    key_path = tuple(p for p in path if p in SECTIONS or any(p in s.model_fields for s in SECTIONS.values()))
    if error["type"] == "extra_forbidden":  # the unknown key is the last part: keep it as typed
        key_path = path
    key_path = key_path or path
    key = ".".join(_shown(part) for part in key_path)
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'; {_suggest(key_path[-1], key_path)}"
    shown = _value_shown(value)
    message = error["msg"].removeprefix("Value error, ")
    return f"{source}: {key} = {shown}: {message}"


def validate(raw: Any, source: str = "config") -> Config:
    """Check a nested dict against the schema; RnnclfError names the first problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RnnclfError(f"{source}: the top level must be a mapping of sections ({', '.join(SECTIONS)})")
    for name, value in raw.items():
        for key in value if isinstance(value, dict) else ():
            if (name, key) in RETIRED:
                raise RnnclfError(f"{source}: {name}.{key}: {RETIRED[name, key]}")
        if not isinstance(name, str) or name not in SECTIONS:
            shown = _shown(name)
            raise RnnclfError(f"{source}: unknown section '{shown}'; {_suggest(str(name), (str(name),))}")
        if value is not None and not isinstance(value, dict):
            shown = _value_shown(value)
            raise RnnclfError(f"{source}: section '{name}' must be a mapping of keys, got {shown}")
    try:
        config = Config.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as err:
        raise RnnclfError(_describe(err.errors()[0], source)) from None
    _check_together(config, source)
    return config


def _check_together(config: Config, source: str) -> None:
    """Keys that are each valid but not together (multi-label settings)."""
    if config.data.multi_label and config.linear.ngrams:
        raise RnnclfError(
            f"{source}: linear.ngrams = {config.linear.ngrams}: the linear add-on blends single-label models "
            "only; set it to 0 with data.multi_label: true (train.baseline still reports a linear model)"
        )
    if config.train.sparse_embedding is True and config.train.optimizer == "sgd":
        raise RnnclfError(
            f"{source}: train.sparse_embedding needs train.optimizer adam or adamw (its word vectors step by "
            "a row-wise Adam); set one of them, or sparse_embedding: auto"
        )
    if config.train.sparse_embedding is True and config.train.ema is not None:
        raise RnnclfError(
            f"{source}: train.sparse_embedding and train.ema: the average reads every word vector each step, "
            "which is what sparse_embedding avoids; set ema: null or sparse_embedding: auto"
        )
    if not config.data.multi_label and config.train.monitor == "valid_micro_f1":
        raise RnnclfError(
            f"{source}: train.monitor = valid_micro_f1 needs data.multi_label: true; "
            "single-label runs monitor valid_accuracy, valid_macro_f1 or valid_loss"
        )


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """'train.epochs=3' -> (('train', 'epochs'), 3); the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    path = tuple(key.strip().split("."))
    if not sep or len(path) != 2 or not all(path):
        raise RnnclfError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. --set train.epochs=3")
    try:
        value = safe_load(text)
    except RnnclfError as err:
        raise RnnclfError(f"--set {item!r}: the value is {str(err).removeprefix('line 1: ')}") from None
    if path in RETIRED:
        raise RnnclfError(f"--set {item!r}: {key}: {RETIRED[path]}")
    if path[0] not in SECTIONS:
        raise RnnclfError(f"--set {item!r}: unknown section '{path[0]}'; {_suggest(path[0], path[:1])}")
    if path[1] not in SECTIONS[path[0]].model_fields:
        raise RnnclfError(f"--set {item!r}: unknown key '{key}'; {_suggest(path[1], path)}")
    return path, value


def read_yaml(path: Path) -> Any:
    """Safe-load a YAML file (never constructs Python objects); errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnclfError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise RnnclfError(f"{path}: is a folder, expected a YAML config file") from None
    except UnicodeDecodeError as err:
        raise RnnclfError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise RnnclfError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return safe_load(text)
    except RnnclfError as err:
        raise RnnclfError(f"{path}: {err}") from None


def safe_load(text: str) -> Any:
    """yaml.safe_load; any failure is an RnnclfError 'invalid YAML (...)', with the line when known.

    Besides YAMLError, PyYAML's constructors raise ValueError (a date like 2001-13-01), AttributeError
    (a malformed !!timestamp) and others; none of them may escape as a traceback."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RnnclfError(f"{where}invalid YAML ({problem})") from None
    except RecursionError:
        raise RnnclfError("invalid YAML (nested too deeply)") from None
    except Exception as err:
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise RnnclfError(f"invalid YAML ({reason})") from None


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = (), cwd: Path | None = None) -> Config:
    """Read a YAML config, apply `--set` overrides, validate, and make every file path absolute.

    Relative paths written in the file are read from the file's folder (the file travels with its
    data); relative paths given by a `--set` override are read from the working directory `cwd`
    (default: the current one), as every other command-line path is. `rnnclf train`, `pretrain` and
    `tune` all load their config through here."""
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RnnclfError(f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)})")
    overridden: set[tuple[str, str]] = set()
    for item in overrides:
        (section, key), value = parse_override(item)
        validate({section: {key: value}}, f"--set {item!r}")  # a bad value is blamed on its --set
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        raw[section][key] = value
        overridden.add((section, key))
    config = validate(raw, str(path))
    from_file = tuple(key for key in PATH_KEYS if key not in overridden)
    config = resolve_paths(config, path.parent, from_file)
    return resolve_paths(config, Path.cwd() if cwd is None else cwd, tuple(sorted(overridden)))


def resolve_paths(config: Config, base: Path, keys: tuple[tuple[str, str], ...] | None = None) -> Config:
    """Make relative paths absolute against `base` (for a config file: its folder), for the path keys
    among `keys` (default: every path key). A value that is no existing path but names a corpus or
    vectors (`imdb`, `glove.6B.100d`) stays a name: train fetches it."""
    from rnnclf.fetch import is_name

    def resolved(value: str) -> str:
        if Path(value).is_absolute() or (is_name(value) and not (base / value).exists()):
            return value
        return str((base / value).resolve())

    for section, key in PATH_KEYS if keys is None else (k for k in keys if k in PATH_KEYS):
        value = getattr(getattr(config, section), key)
        if isinstance(value, list):
            setattr(getattr(config, section), key, [resolved(item) for item in value])
        elif value is not None:
            setattr(getattr(config, section), key, resolved(value))
    return config


def recipe(config: Config) -> Config:
    """The config a run saves as RUN/config.yaml: what `rnnclf train RUN/config.yaml` needs to run it
    again from any working directory. Paths are absolute already (load); output.run_dir is null (a
    new run gets a new folder); a two-stage run (pretrain.epochs > 0) keeps its pretrain section and
    not the model.init_from that its first stage set (the schema refuses the two together)."""
    saved = config.model_copy(deep=True)
    saved.output.run_dir = None
    if saved.pretrain.epochs > 0:
        saved.model.init_from = None
    return saved


def differences(config: Config) -> list[str]:
    """'section.key: value' for every key whose value is not the default (the run's key settings);
    data paths are left to the caller, which shows them on their own line."""
    defaults, values = Config().to_dict(), config.to_dict()
    return [
        f"{section}.{key}: {_value_shown(value)}"
        for section, keys in values.items()
        for key, value in keys.items()
        if value != defaults[section][key] and (section, key) not in (*PATH_KEYS, ("output", "run_dir"))
    ]


def dump(config: Config) -> str:
    """The resolved config as YAML, sections in schema order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def default_yaml() -> str:
    """A complete, commented default config (what `rnnclf init-config` prints)."""
    lines = [
        "# rnnclf config. Run: rnnclf train config.yaml   (override any key: --set train.epochs=3)",
        "# Relative paths are read from this file's folder (in --set overrides: from the working directory).",
    ]
    defaults = Config().to_dict()
    for name, section in SECTIONS.items():
        lines.append("")
        lines.append(f"{name}:")
        for key, field in section.model_fields.items():
            value = yaml.safe_dump({key: defaults[name][key]}, default_flow_style=True, width=10**9)
            value = value.strip()[1:-1]  # '{key: v}' -> 'key: v'
            lines.append(f"  {value:<34} # {field.description}")
    return "\n".join(lines) + "\n"
