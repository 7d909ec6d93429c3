"""The typed config tree: load(path, overrides) -> Config. Unknown keys, wrong types and impossible
values are errors that name the dotted key, the value and what is allowed.

Every field carries its default and a one-line description; `rnnclf init-config` prints both, so the
printed file is the documentation of the format.
"""

from __future__ import annotations

import difflib
import reprlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rnnclf.errors import RnnclfError


class Section(BaseModel):
    # extra="forbid": a typo in a key is an error, never a silently ignored setting.
    # allow_inf_nan=False: lr = .inf or .nan is a mistake, not a setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(Section):
    train: str = Field(
        "data/train.csv", description="training data (relative paths: from this file's folder)"
    )
    valid: str | None = Field(None, description="validation data; null: split off valid_fraction of train")
    test: str | None = Field(None, description="test data, scored once at the end; null: none")
    format: Literal["auto", "csv", "tsv", "jsonl", "fasttext", "folder"] = Field(
        "auto", description="auto picks by extension (.csv .tsv .jsonl .txt) or folder-per-class layout"
    )
    text_column: str = Field("text", description="csv/tsv/jsonl field holding the document")
    label_column: str = Field("label", description="csv/tsv/jsonl field holding the class name")
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="stratified share of train held out when valid is null"
    )


class TextConfig(Section):
    tokenizer: Literal["basic_english", "whitespace", "char"] = Field(
        "basic_english", description="basic_english (torchtext's), whitespace, or char (character-level)"
    )
    min_freq: int = Field(2, ge=1, description="drop tokens seen fewer times in train")
    max_tokens: int | None = Field(
        50000, ge=3, description="vocabulary size cap, specials included; null: no cap"
    )
    max_length: int = Field(400, ge=1, description="tokens kept per document (longer ones are truncated)")
    truncate: Literal["head", "tail", "head_tail"] = Field(
        "head",
        description="what a long document keeps: head (first tokens), tail (last), head_tail (1/4 + end)",
    )


class ModelConfig(Section):
    cell: Literal["rnn", "gru", "lstm"] = Field("lstm", description="recurrent cell: rnn (Elman), gru, lstm")
    embedding_dim: int = Field(128, ge=1, description="word vector size")
    hidden_dim: int = Field(128, ge=1, description="recurrent state size per direction")
    num_layers: int = Field(1, ge=1, description="stacked recurrent layers")
    bidirectional: bool = Field(True, description="also read each document right to left")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout between layers and before the output")
    embedding_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout on the word vectors")
    word_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of training tokens replaced by <unk> (teaches unseen words)"
    )
    pooling: Literal["last", "mean", "max", "attention"] = Field(
        "max", description="how the states over time become one vector: last, mean, max or attention"
    )
    pretrained_vectors: str | None = Field(
        None, description="GloVe/word2vec text file (.gz ok) to initialise matching words; null: none"
    )
    freeze_embeddings: bool = Field(False, description="keep the word vectors fixed during training")


class EnsembleConfig(Section):
    members: int = Field(
        1,
        ge=1,
        le=16,
        description="add-on: train this many recurrent models side by side and average their probabilities "
        "(each member's score is reported); costs members x the training time and model size. 1: off",
    )


class LinearConfig(Section):
    ngrams: int = Field(
        0,
        ge=0,
        le=5,
        description="add-on: blend the recurrent model with a logistic regression on exact word 1..n-grams "
        "(naive-Bayes scaled, NBSVM); its share is chosen on validation data (0 = recurrent alone). "
        "Fitting takes seconds, up to ~2 GB of memory on 25k long documents. 0: off",
    )
    c: float = Field(1.0, gt=0.0, description="inverse strength of its L2 penalty (as liblinear's C)")


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="passes over the training data (early stopping may end sooner)")
    batch_size: int = Field(64, ge=1, description="documents per step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adam", description="adam, adamw or sgd (momentum 0.9)"
    )
    lr: float = Field(0.002, gt=0.0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty (decoupled for adamw)")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "cosine", description="learning rate after warmup: constant, cosine or linear decay to 0"
    )
    warmup: float = Field(0.05, ge=0.0, lt=1.0, description="share of all steps spent warming up the lr")
    clip_grad_norm: float | None = Field(1.0, gt=0.0, description="clip the gradient norm; null: off")
    patience: int | None = Field(
        3, ge=1, description="stop after this many epochs without improvement; null: never"
    )
    monitor: Literal["valid_loss", "valid_accuracy", "valid_macro_f1"] = Field(
        "valid_accuracy", description="metric that picks best.pt and drives early stopping"
    )
    class_weights: Literal["none", "auto"] | list[float] = Field(
        "none", description="none, auto (inverse class frequency) or one weight per label (sorted names)"
    )
    ema: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="add-on: evaluate and save a moving average of the weights, this decay per step "
        "(e.g. 0.999); costs one more copy of the weights in memory and in last.pt. null: off",
    )
    baseline: bool = Field(
        True,
        description="also fit a linear baseline (NB logistic regression, word 1-2-grams; seconds) and report "
        "its validation accuracy beside the recurrent model's; not saved. Skipped above 8M training tokens",
    )
    seed: int = Field(13, description="same seed, same data: same result on CPU")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto takes cuda when available")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32; bf16 (fast on recent CPUs and GPUs); fp16 (CUDA only)"
    )

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(w <= 0 for w in value)):
            raise ValueError("class weights must be a non-empty list of positive numbers")
        return value


class OutputConfig(Section):
    run_dir: str | None = Field(
        None,
        description="where checkpoints and metrics go (relative: to the working directory); "
        "null: runs/<config name>-<date>-<time>",
    )
    plots: bool = Field(
        True,
        description="draw learning_curves.png and confusion_matrix.png in run_dir at the end "
        "(needs pip install 'rnnclf[plots]'; without it, a one-line note)",
    )
    tensorboard: bool = Field(
        False,
        description="also log each epoch's metrics to run_dir/tensorboard "
        "(needs pip install 'rnnclf[tensorboard]'; metrics.jsonl stays the record)",
    )


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    linear: LinearConfig = Field(default_factory=LinearConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML, JSON and checkpoints)."""
        return self.model_dump(mode="json")


SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "text": TextConfig,
    "model": ModelConfig,
    "ensemble": EnsembleConfig,
    "linear": LinearConfig,
    "train": TrainConfig,
    "output": OutputConfig,
}
_BAG = "retired in 0.2 with the hashed n-gram bag inside the network; for n-gram features use linear.ngrams"
# Keys earlier versions accepted: a config naming one gets a line that says what replaced it.
RETIRED: dict[tuple[str, str], str] = {
    ("model", "ngrams"): _BAG,
    ("model", "ngram_buckets"): _BAG,
    ("model", "ngram_dim"): _BAG,
    ("model", "ngram_weighting"): _BAG,
    ("model", "linear_ngrams"): "moved in 0.2 to linear.ngrams",
    ("model", "linear_c"): "moved in 0.2 to linear.c",
    ("model", "linear_share"): "retired in 0.2: the blend's share is now chosen on validation data",
    ("model", "members"): "moved in 0.2 to ensemble.members",
}
# Keys holding paths that resolve against the config file's folder.
PATH_KEYS = (("data", "train"), ("data", "valid"), ("data", "test"), ("model", "pretrained_vectors"))


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
        shown = shown.strip().removesuffix("...").strip()
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
        return Config.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as err:
        raise RnnclfError(_describe(err.errors()[0], source)) from None


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


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply `--set` overrides, validate, and resolve data paths against the
    config file's folder."""
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RnnclfError(f"{path}: the top level must be a mapping of sections ({', '.join(SECTIONS)})")
    for item in overrides:
        (section, key), value = parse_override(item)
        validate({section: {key: value}}, f"--set {item!r}")  # a bad value is blamed on its --set
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        raw[section][key] = value
    config = validate(raw, str(path))
    return resolve_paths(config, path.parent)


def resolve_paths(config: Config, base: Path) -> Config:
    """Make relative data paths absolute against `base` (the config file's folder)."""
    for section, key in PATH_KEYS:
        value = getattr(getattr(config, section), key)
        if value is not None and not Path(value).is_absolute():
            setattr(getattr(config, section), key, str((base / value).resolve()))
    return config


def dump(config: Config) -> str:
    """The resolved config as YAML, sections in schema order."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def default_yaml() -> str:
    """A complete, commented default config (what `rnnclf init-config` prints)."""
    lines = [
        "# rnnclf config. Run: rnnclf train config.yaml   (override any key: --set train.epochs=3)",
        "# Relative data paths are read from this file's folder.",
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
