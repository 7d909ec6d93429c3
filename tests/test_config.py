"""Tests for rnnclf.config: shipped configs load, init-config round-trips, overrides, and every error
names the dotted key, the value and what is allowed; no input escapes as anything but RnnclfError."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rnnclf import config as config_module
from rnnclf.config import Config, default_yaml, load, parse_override, validate
from rnnclf.errors import RnnclfError

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_for(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(RnnclfError) as caught:
        load(write(tmp_path / "c.yaml", text), overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- shipped configs --------------------------------------------------------------------------------------


def test_there_are_shipped_configs() -> None:
    assert CONFIGS, "configs/*.yaml is empty"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    config = load(path)
    # Data paths are resolved against the config's folder, so they point into the repository.
    train = Path(config.data.train)
    assert train.is_absolute()
    if train.is_relative_to(CONFIGS[0].parent.parent):  # data shipped in the repository is there
        assert train.exists(), train


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_starts_with_the_command_that_runs_it(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = []
    for line in lines:
        if not line.startswith("#"):
            break
        head.append(line)
    assert head, f"{path.name} does not start with a comment"
    assert any(f"rnnclf train configs/{path.name}" in line for line in head), head


# --- defaults and init-config -----------------------------------------------------------------------------


def test_init_config_output_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "default.yaml", default_yaml())
    loaded = load(path)
    expected = config_module.resolve_paths(Config(), tmp_path)
    assert loaded.to_dict() == expected.to_dict()
    # Every field is there, with its description as a comment.
    raw = yaml.safe_load(default_yaml())
    for name, section in config_module.SECTIONS.items():
        assert set(raw[name]) == set(section.model_fields)
    assert default_yaml().startswith("# rnnclf config. Run: rnnclf train")


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path / "c.yaml", "")).train == Config().train


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load(write(tmp_path / "c.yaml", "model:\n  cell: gru\ntrain:\n  class_weights: [1, 2.5]\n"))
    again = load(write(tmp_path / "again.yaml", config_module.dump(config)))
    assert again.to_dict() == config.to_dict()


# --- overrides --------------------------------------------------------------------------------------------


def test_overrides_are_parsed_as_yaml_and_type_checked(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "train:\n  epochs: 5\n")
    config = load(
        path,
        [
            "train.epochs=3",
            "train.lr=0.5",
            "model.bidirectional=false",
            "data.test=null",
            "train.class_weights=[1, 2]",
            "text.max_tokens=null",
            "output.run_dir=out",
        ],
    )
    assert config.train.epochs == 3 and isinstance(config.train.epochs, int)
    assert config.train.lr == 0.5
    assert config.model.bidirectional is False
    assert config.data.test is None
    assert config.train.class_weights == [1.0, 2.0]
    assert config.text.max_tokens is None
    assert config.output.run_dir == "out"  # run_dir is relative to the working directory, not the file


def test_override_creates_a_missing_section(tmp_path: Path) -> None:
    assert load(write(tmp_path / "c.yaml", "data: {}\n"), ["model.cell=gru"]).model.cell == "gru"


def test_yaml_1_1_exponent_without_a_dot_is_still_a_number(tmp_path: Path) -> None:
    # PyYAML reads 1e-3 as a string (YAML 1.1 wants 1.0e-3); users write it anyway.
    assert load(write(tmp_path / "c.yaml", "train:\n  lr: 1e-3\n")).train.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("item", "fragments"),
    [
        ("model.hiden_dim=3", ["model.hiden_dim", "did you mean 'model.hidden_dim'"]),
        ("modle.cell=gru", ["unknown section 'modle'", "did you mean 'model'"]),
        ("train.epochs", ["SECTION.KEY=VALUE"]),
        ("epochs=3", ["SECTION.KEY=VALUE"]),
        ("train.epochs.x=3", ["SECTION.KEY=VALUE"]),
        ("train.epochs=[", ["invalid YAML"]),
        ("train.seed=2001-13-01", ["train.seed=2001-13-01", "invalid YAML"]),
        ("train.epochs=!!int abc", ["train.epochs"]),
    ],
)
def test_bad_override(tmp_path: Path, item: str, fragments: list[str]) -> None:
    message = error_for(tmp_path, "", (item,))
    assert "--set" in message
    for fragment in fragments:
        assert fragment in message, message


def test_override_with_a_bad_value_names_key_value_and_allowed(tmp_path: Path) -> None:
    message = error_for(tmp_path, "", ("model.cell=transformer",))
    assert message.startswith("--set 'model.cell=transformer': model.cell = transformer:"), message
    assert all(name in message for name in ("'rnn'", "'gru'", "'lstm'")), message


def test_parse_override() -> None:
    assert parse_override("train.epochs=3") == (("train", "epochs"), 3)
    assert parse_override("data.text_column=a=b") == (("data", "text_column"), "a=b")


# --- errors name the dotted key, the value and what is allowed ----------------------------------------------


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    message = error_for(tmp_path, "model:\n  hiden_dim: 32\n")
    assert "unknown key 'model.hiden_dim'" in message
    assert "did you mean 'model.hidden_dim'" in message
    assert "embedding_dim" in message  # the keys allowed in that section are listed


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    message = error_for(tmp_path, "train:\n  zzzzzz: 1\n")
    assert "unknown key 'train.zzzzzz'" in message and "did you mean" not in message
    assert "batch_size" in message


def test_unknown_section(tmp_path: Path) -> None:
    message = error_for(tmp_path, "modle:\n  cell: gru\n")
    assert "unknown section 'modle'" in message and "did you mean 'model'" in message
    assert "data, text, model, ensemble, linear, pretrain, train, output" in message


@pytest.mark.parametrize(
    ("text", "key", "value", "allowed"),
    [
        ("train:\n  epochs: many\n", "train.epochs", "many", "integer"),
        ("train:\n  epochs: 2.5\n", "train.epochs", "2.5", "integer"),
        ("train:\n  lr: -1\n", "train.lr", "-1", "greater than 0"),
        ("train:\n  lr: .inf\n", "train.lr", ".inf", "finite"),
        ("train:\n  lr: .nan\n", "train.lr", ".nan", ""),
        ("model:\n  dropout: 1.5\n", "model.dropout", "1.5", "less than 1"),
        ("model:\n  cell: transformer\n", "model.cell", "transformer", "'lstm'"),
        ("model:\n  bidirectional: maybe\n", "model.bidirectional", "maybe", "boolean"),
        ("data:\n  train: [a, b]\n", "data.train", "[a, b]", "string"),
        ("data:\n  valid_fraction: 1\n", "data.valid_fraction", "1", "less than 1"),
        ("text:\n  max_tokens: 2\n", "text.max_tokens", "2", "greater than or equal to 3"),
        ("train:\n  class_weights: [1, -2]\n", "train.class_weights", "[1, -2]", "positive"),
        ("train:\n  class_weights: some\n", "train.class_weights", "some", "'auto'"),
        ("train:\n  precision: fp8\n", "train.precision", "fp8", "'bf16'"),
    ],
)
def test_bad_value(tmp_path: Path, text: str, key: str, value: str, allowed: str) -> None:
    message = error_for(tmp_path, text)
    assert message.startswith(str(tmp_path / "c.yaml")), message  # names the file
    assert f"{key} = {value}" in message, message
    assert allowed in message, message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- a\n- b\n", "top level must be a mapping"),
        ("model: 3\n", "section 'model' must be a mapping"),
        ("model:\n  cell: gru\n  hidden_dim: 3: 4\n", "line 3: invalid YAML"),
        ("a: b: c\n", "invalid YAML"),
        ("train:\n  seed: 2001-02-30\n", "invalid YAML"),
        ("train:\n  seed: !!timestamp 2001-01-01x\n", "invalid YAML"),
    ],
)
def test_bad_file(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in error_for(tmp_path, text)


def test_missing_config_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="no such config file"):
        load(tmp_path / "absent.yaml")
    with pytest.raises(RnnclfError, match="is a folder"):
        load(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"train:\n  epochs: \xff\n")
    with pytest.raises(RnnclfError, match="not UTF-8"):
        load(path)


def test_python_tags_are_refused_and_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f'train:\n  seed: !!python/object/apply:os.system ["touch {marker}"]\n'
    with pytest.raises(RnnclfError, match="invalid YAML"):
        load(write(tmp_path / "c.yaml", text))
    with pytest.raises(RnnclfError):
        load(write(tmp_path / "c.yaml", "train: !!python/name:os.system\n"))
    with pytest.raises(RnnclfError):
        load(
            write(tmp_path / "c.yaml", ""), [f"train.seed=!!python/object/apply:os.system ['touch {marker}']"]
        )
    assert not marker.exists()


# --- paths ------------------------------------------------------------------------------------------------


def test_relative_data_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    text = (
        "data:\n  train: d/train.csv\n  valid: ../v.csv\n  test: /abs/test.csv\n"
        "model:\n  pretrained_vectors: g.txt\n"
    )
    config = load(write(tmp_path / "sub" / "c.yaml", text))
    assert config.data.train == str(tmp_path / "sub" / "d" / "train.csv")
    assert config.data.valid == str(tmp_path / "v.csv")
    assert config.data.test == "/abs/test.csv"
    assert config.model.pretrained_vectors == str(tmp_path / "sub" / "g.txt")


def test_override_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --set path is a command-line path: read from where the command runs, as train, pretrain and
    tune all load configs; the file's own paths still follow the file."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(tmp_path / "sub" / "c.yaml", "data:\n  train: d/train.csv\n")
    config = load(path, ["data.test=t.csv", "model.init_from=../lm", "data.unlabeled=[u.txt, /abs/v.txt]"])
    assert config.data.test == str(tmp_path / "elsewhere" / "t.csv")
    assert config.model.init_from == str(tmp_path / "lm")
    assert config.data.unlabeled == [str(tmp_path / "elsewhere" / "u.txt"), "/abs/v.txt"]
    assert config.data.train == str(tmp_path / "sub" / "d" / "train.csv")
    # An explicit working directory (a caller that is not where the user typed the command).
    assert load(path, ["data.test=t.csv"], cwd=tmp_path).data.test == str(tmp_path / "t.csv")


# --- nothing but RnnclfError, whatever the input -----------------------------------------------------------

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
section_names = st.sampled_from([*config_module.SECTIONS, "modle", ""])
field_names = st.sampled_from(
    sorted({name for section in config_module.SECTIONS.values() for name in section.model_fields})
) | st.text(max_size=10)
# Mostly well-shaped trees (sections of fields) so the checks of values get exercised too.
shaped = st.dictionaries(section_names, st.none() | st.dictionaries(field_names, yaml_values, max_size=5))


@settings(max_examples=150, deadline=None)
@given(raw=yaml_values | shaped)
@example(raw={"model": {"freeze_embeddings": {"\n": None}}})  # a key with a line break: YAML wrote lines
def test_validate_raises_only_rnnclf_error(raw: object) -> None:
    try:
        config = validate(raw)
    except RnnclfError as err:
        assert "\n" not in str(err)
    else:
        assert isinstance(config, Config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.builds(yaml.safe_dump, shaped))
def test_load_raises_only_rnnclf_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(RnnclfError):
        load(path)


@settings(max_examples=200, deadline=None)
@given(item=st.text(max_size=40))
def test_parse_override_raises_only_rnnclf_error(item: str) -> None:
    with contextlib.suppress(RnnclfError):
        parse_override(item)


@pytest.mark.parametrize(
    ("key", "replacement"),
    [
        ("ngrams", "linear.ngrams"),
        ("ngram_buckets", "linear.ngrams"),
        ("ngram_dim", "linear.ngrams"),
        ("ngram_weighting", "linear.ngrams"),
        ("linear_ngrams", "linear.ngrams"),
        ("linear_c", "linear.c"),
        ("linear_share", "chosen on validation data"),
        ("members", "ensemble.members"),
    ],
)
def test_retired_keys_name_their_replacement(tmp_path: Path, key: str, replacement: str) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(f"model:\n  {key}: 2\n", encoding="utf-8")
    with pytest.raises(RnnclfError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: model.{key}: ") and replacement in message and "\n" not in message
    with pytest.raises(RnnclfError, match=f"model.{key}: .*{replacement}"):
        parse_override(f"model.{key}=2")


def test_the_default_config_is_the_recurrent_model_alone() -> None:
    defaults = Config()
    assert defaults.ensemble.members == 1 and defaults.linear.ngrams == 0 and defaults.train.ema is None
    printed = default_yaml()
    for section in ("ensemble:", "linear:"):
        assert f"\n{section}\n" in printed
    assert "add-on:" in printed.split("\nlinear:")[1].split("\n")[1]
