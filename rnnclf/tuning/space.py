"""The search space of `rnnclf tune`: `tune.space` parsed and checked before any training, the default
space, and which keys stay fixed because the user set them.

A dimension is one config key ("section.key") and what it may take:
    [low, high]                         two numbers: a range (ints for an integer key)
    {low, high, log: true, step: S}     a range, sampled on a log scale and/or on a grid
    [a, b, c] or {choices: [a, b]}      a list of choices (use the mapping for two numbers)
Every value is checked against the config schema now, so a value the schema refuses is one line naming
the key, before any training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnclf.config import SECTIONS, Config, validate
from rnnclf.errors import RnnclfError

# Chosen from what is known to matter for recurrent text classifiers (docs/tuning.md says why for
# each), not tuned to the corpora in this repository. The recurrent cell and the add-ons stay as
# configured unless the user's space names them.
DEFAULT_SPACE: dict[str, Any] = {
    "train.lr": {"low": 3e-4, "high": 1e-2, "log": True},
    "model.hidden_dim": [64, 128, 256, 384],
    "model.embedding_dim": [64, 128, 200, 300],
    "model.num_layers": {"choices": [1, 2]},
    "model.bidirectional": [True, False],
    "model.dropout": [0.0, 0.6],
    "model.embedding_dropout": [0.0, 0.5],
    "model.word_dropout": [0.0, 0.3],
    "train.adversarial": [0.0, 0.02, 0.05, 0.1],
    "model.pooling": ["last", "mean", "max", "attention"],
    "train.batch_size": [16, 32, 64, 128],
    "train.epochs": [3, 15],
    "train.weight_decay": [0.0, 1e-6, 1e-5, 1e-4],
    "text.min_freq": {"choices": [1, 2, 3, 5]},
    "text.max_length": [64, 128, 256, 400, 512],
    "text.tokenizer": ["basic_english", "whitespace"],
}
# Multi-label data adds what is known to matter for per-label F1 on rare labels: a decision threshold
# per label chosen on validation (Lipton, Elkan & Naryanaswamy 2014: the F1-optimal threshold differs
# per label and with its frequency) and positives weighted up per label (class_weights: auto).
MULTI_LABEL_SPACE: dict[str, Any] = {
    "train.class_weights": ["none", "auto"],
    "train.thresholds": ["global", "per_label"],
}
# What the tune's first trial adds to the config given: adversarial steps (Miyato, Dai & Goodfellow 2017)
# at the paper's size (5 on vectors normalised per dimension: ~0.02 of a 270-word review's norm;
# docs/tuning.md). Chosen from the literature, where it lifted a word-level LSTM on every text
# classification corpus tried (IMDB, Elec, RCV1, Rotten Tomatoes, DBpedia); checked here on TREC,
# GoEmotions and IMDB's first 5,000 reviews: validation up on 7 of 9 seeds, level on 1 (BENCHMARKS.md,
# "Adversarial training").
ADVERSARIAL_START: dict[str, Any] = {"train.adversarial": 0.02}
# What that first trial adds for multi-label data chosen on macro-F1, where every label counts the same
# however rare: each label's positives weighted up (class_weights: auto; negatives/positives per label,
# at most 10), the usual cost-sensitive remedy for rare classes (He & Garcia 2009), so the model does not
# learn to never predict them; the per-label thresholds every such trial chooses (trained_with) then
# place each label's cut.
MACRO_F1_START: dict[str, Any] = {"train.class_weights": "auto"}
# What a search may never change: where data and outputs are, the search itself, the device.
NOT_SEARCHED = {"data", "output", "tune"}
NOT_SEARCHED_KEYS = {("train", "device"), ("model", "pretrained_vectors"), ("model", "init_from")}


@dataclass(frozen=True)
class Dimension:
    """One searched key: a range (low, high, log, step; integer or not) or a list of choices."""

    key: str  # "section.key"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def shown(self) -> str:
        if self.choices is not None and len(self.choices) == 1:
            return f"{self.key} = {self.choices[0]}"
        if self.choices is not None:
            return f"{self.key} in {list(self.choices)}"
        extra = (" log" if self.log else "") + (f" step {self.step}" if self.step else "")
        return f"{self.key} in [{self.low}, {self.high}]{extra}"


def _check_value(key: str, value: Any, where: str) -> None:
    section, name = key.split(".")
    try:
        validate({section: {name: value}}, where)
    except RnnclfError as err:
        raise RnnclfError(f"{err} (tune.space.{key})") from None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    """One `tune.space` entry -> Dimension; RnnclfError names the key."""
    name = f"{where}: tune.space.{key}"
    parts = key.split(".") if isinstance(key, str) else []
    if len(parts) != 2 or parts[0] not in SECTIONS or parts[1] not in SECTIONS[parts[0]].model_fields:
        raise RnnclfError(f"{name}: unknown key; expected SECTION.KEY of the config, e.g. train.lr")
    if parts[0] in NOT_SEARCHED or tuple(parts) in NOT_SEARCHED_KEYS:
        raise RnnclfError(f"{name}: cannot be searched (data, output, tune and device stay as configured)")
    if isinstance(spec, list) and len(spec) == 2 and all(_number(v) for v in spec):
        spec = {"low": spec[0], "high": spec[1]}
    elif isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise RnnclfError(f"{name}: expected [low, high], {{low, high, log, step}} or a list of choices")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise RnnclfError(
            f"{name}: unknown field {sorted(unknown)[0]!r}; allowed: low, high, log, step, choices"
        )
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise RnnclfError(f"{name}: an empty choice list; give at least one value")
        for value in choices:
            _check_value(key, value, where)
        return Dimension(key, choices=tuple(choices))
    low, high, log, step = spec.get("low"), spec.get("high"), bool(spec.get("log", False)), spec.get("step")
    if not (_number(low) and _number(high)):
        raise RnnclfError(f"{name}: low and high must both be numbers")
    if low > high:
        raise RnnclfError(f"{name}: low {low} > high {high}")
    if log and low <= 0:
        raise RnnclfError(f"{name}: a log range needs low > 0 (got {low})")
    if step is not None and (not _number(step) or step <= 0 or log):
        raise RnnclfError(f"{name}: step must be a positive number, and not with log: true")
    _check_value(key, low, where)
    _check_value(key, high, where)
    # An integer key refuses a fraction: then the range is sampled in integers.
    integer = isinstance(low, int) and isinstance(high, int) and _refuses_fraction(key)
    if not integer:
        low, high = float(low), float(high)
    return Dimension(key, low, high, log, step, integer)


def _refuses_fraction(key: str) -> bool:
    section, name = key.split(".")
    try:
        validate({section: {name: 1.5}})
    except RnnclfError:
        return True
    return False


def user_set(config: Config) -> set[str]:
    """The searchable keys whose value differs from the schema's default (what the user chose). A
    config printed by init-config sets every key to its default: none of them counts as chosen."""
    default, given = Config().to_dict(), config.to_dict()
    return {
        f"{section}.{key}"
        for section, keys in given.items()
        if section not in NOT_SEARCHED
        for key, value in keys.items()
        if value != default[section][key]
    }


def search_space(config: Config, where: str = "config") -> tuple[list[Dimension], list[str]]:
    """(the dimensions searched, the default-space keys kept fixed because the user set them).
    With tune.space: exactly those keys; without: the default space (default_space) less the keys the
    user set."""
    if config.tune.space is not None:
        if not config.tune.space:
            raise RnnclfError(f"{where}: tune.space is empty; name at least one key, or null for the default")
        return [_dimension(key, spec, where) for key, spec in config.tune.space.items()], []
    chosen = user_set(config)
    space = default_space(config.data.multi_label)
    if thresholds_follow_metric(config):
        del space["train.thresholds"]  # trained_with sets per_label
    dimensions = [_dimension(k, spec, "default space") for k, spec in space.items() if k not in chosen]
    return dimensions, sorted(chosen & set(space))


def trained_with(config: Config) -> dict[str, Any]:
    """What every trial trains with besides its sampled values, so best.yaml keeps it too: the tune's
    metric monitored (best.pt and early stopping follow it) and the precision tune.precision resolves
    to. A sampled value (a space naming train.monitor or train.precision) is applied after these."""
    settings: dict[str, Any] = {} if config.tune.metric == "auto" else {"train.monitor": config.tune.metric}
    precision = config.tune.precision
    if precision == "auto":
        precision = config.train.precision
        if "train.precision" not in user_set(config):
            from rnnclf.runtime import choose_device, resolved_precision  # torch: once a tune runs

            precision = resolved_precision("auto", choose_device(config.train.device))
    settings["train.precision"] = precision
    if thresholds_follow_metric(config):
        settings["train.thresholds"] = "per_label"
    return settings


def thresholds_follow_metric(config: Config) -> bool:
    """Whether the tune sets per-label thresholds rather than searching train.thresholds: multi-label
    data chosen on macro-F1, the default space, thresholds not set by the user. Per-label thresholds
    each maximise their label's F1 on validation, so macro-F1, the mean of those (choose_thresholds, same
    grid): for the same model they score at least what one global threshold does, and a trial with
    global thresholds could only lose the search while taking its share of the budget (on GoEmotions,
    15 minutes on 2 cores hold 4-14 trials). On micro-F1 neither dominates, so it stays searched."""
    return (
        _multi_label_on_macro_f1(config)
        and config.tune.space is None
        and "train.thresholds" not in user_set(config)
    )


def _multi_label_on_macro_f1(config: Config) -> bool:
    return config.data.multi_label and config.tuned_on() == "valid_macro_f1"


def default_space(multi_label: bool) -> dict[str, Any]:
    """The space searched when tune.space is not given (DEFAULT_SPACE, plus MULTI_LABEL_SPACE for
    multi-label data)."""
    return {**DEFAULT_SPACE, **MULTI_LABEL_SPACE} if multi_label else dict(DEFAULT_SPACE)


def _holds(dim: Dimension, value: Any) -> bool:
    """Whether `value` is one of the dimension's choices, or a number within its range and on its grid."""
    if dim.choices is not None:
        return any(value == choice and type(value) is type(choice) for choice in dim.choices)
    if not (_number(value) and dim.low <= value <= dim.high):  # type: ignore[operator]
        return False
    if dim.integer and value != int(value):
        return False
    return not (dim.step and abs((value - dim.low) / dim.step - round((value - dim.low) / dim.step)) > 1e-9)


def starting_point(config: Config, dimensions: list[Dimension]) -> dict[str, Any]:
    """The config's own values of the searched keys that the space holds (a choice among the choices, a
    number within the range and on its grid): the first trial tries them, so a tune starts from the
    configuration it was given. A key whose value lies outside its dimension is left to the sampler."""
    raw = config.to_dict()
    point: dict[str, Any] = {}
    for dim in dimensions:
        section, name = dim.key.split(".")
        value = raw[section][name]
        if not _holds(dim, value):
            continue
        if dim.choices is None:
            value = int(value) if dim.integer else float(value)
        point[dim.key] = value
    return point


def starting_points(config: Config, dimensions: list[Dimension]) -> list[dict[str, Any]]:
    """The trials a new study runs before the sampler's, in order: where the space holds them, the
    configuration given with ADVERSARIAL_START's values (and MACRO_F1_START's, for multi-label data chosen
    on macro-F1), then the configuration given (starting_point).
    A portfolio of known-good settings tried before TPE's random start (Feurer et al. 2018), whose draws
    cannot know what helps recurrent classifiers. The adversarial one goes first, as the likelier to
    score best: where the budget holds one of the two and not both (IMDB's first 5,000 reviews, 20
    minutes on 2 cores), it is the one that runs whole. It costs about two of the other, so while the
    config given waits in the queue it may be stopped as unable to finish (TrialReporter): the config
    given then runs, and the tune still has a complete trial where the budget holds one."""
    given = starting_point(config, dimensions)
    if not given:
        return []
    start = {**ADVERSARIAL_START, **(MACRO_F1_START if _multi_label_on_macro_f1(config) else {})}
    adversarial = dict(given)
    for dim in dimensions:
        value = start.get(dim.key)
        if value is not None and _holds(dim, value):
            adversarial[dim.key] = value
    return [given] if adversarial == given else [adversarial, given]


def suggest(trial: Any, dimensions: list[Dimension]) -> dict[str, Any]:
    """One value per dimension from an Optuna trial (its sampler decides)."""
    values: dict[str, Any] = {}
    for dim in dimensions:
        if dim.choices is not None:
            values[dim.key] = trial.suggest_categorical(dim.key, list(dim.choices))
        elif dim.integer:
            values[dim.key] = trial.suggest_int(
                dim.key, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log
            )
        else:
            values[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, step=dim.step, log=dim.log)
    return values


def applied(config: Config, values: dict[str, Any]) -> Config:
    """A copy of `config` with the searched values set (each checked by the schema again)."""
    raw = config.to_dict()
    for key, value in values.items():
        section, name = key.split(".")
        raw[section][name] = value
    return validate(raw, "trial")
