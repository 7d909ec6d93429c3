"""Language-model pretraining (rnnclf pretrain, pretrain.epochs) and classifiers started from it
(model.init_from): what the language model may see, its shapes, resuming, and the fine-tuning switches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_csv, write_tiny_project
from typer.testing import CliRunner

from rnnclf.batching import Encoded
from rnnclf.cli.app import app
from rnnclf.config import ModelConfig, load
from rnnclf.models.classifier import Classifier
from rnnclf.models.language_model import LanguageModel
from rnnclf.prepare import prepare
from rnnclf.pretraining.loop import build_corpus, pretrain, windows
from rnnclf.runs import checkpoint
from rnnclf.training.distributed import Processes
from rnnclf.training.optimization import depth_of, make_optimizer, make_schedule
from rnnclf.training.stopping import Interrupted


def run(*args: str) -> object:
    result = CliRunner().invoke(app, list(args))
    return result


def test_documents_are_cut_into_windows_in_order() -> None:
    # Documents 0..4 (5 words) and 5..6 (2 words), windows of 2: [0 1] [2 3] ([4] predicts nothing) [5 6].
    data = Encoded.from_lengths(
        torch.arange(7, dtype=torch.int32), torch.tensor([5, 2]), torch.zeros(2, dtype=torch.int64)
    )
    pieces = windows(data, 2)
    assert pieces.ids.tolist() == [0, 1, 2, 3, 5, 6]
    assert pieces.lengths.tolist() == [2, 2, 2]
    pieces = windows(data, 3)
    assert [
        pieces.ids[a:b].tolist() for a, b in zip(pieces.offsets[:-1], pieces.offsets[1:], strict=True)
    ] == [
        [0, 1, 2],
        [3, 4],
        [5, 6],
    ]
    assert windows(data, 0) is data  # 0: whole documents
    long = Encoded.from_lengths(
        torch.arange(1000, dtype=torch.int32), torch.tensor([1000]), torch.zeros(1, dtype=torch.int64)
    )
    assert windows(long, 70).lengths.tolist() == [70] * 14 + [20]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_no_direction_reads_the_word_it_predicts(layers: int, cell: str) -> None:
    """Direction 0's state at t depends on words 0..t only; direction 1's (reading right to left) on
    words t'..L-1 only: change a word and only the states that have read it may change."""
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embedding_dim=8, hidden_dim=6, num_layers=layers, bidirectional=True)
    model = LanguageModel(30, config).eval()
    ids = torch.randint(2, 30, (1, 9))
    lengths = torch.tensor([9])
    forward, backward = model.states(ids, lengths)
    changed = ids.clone()
    changed[0, 5] = (ids[0, 5] + 1 - 2) % 28 + 2  # another real word at position 5
    forward2, backward2 = model.states(changed, lengths)
    assert torch.equal(forward[0, :5], forward2[0, :5])  # read words 0..4 only
    assert not torch.allclose(forward[0, 5], forward2[0, 5])
    # Backward reading order: position r has read words L-1 .. L-1-r; word 5 is read at r = 3.
    assert torch.equal(backward[0, :3], backward2[0, :3])
    assert not torch.allclose(backward[0, 3], backward2[0, 3])


def test_full_softmax_loss_is_the_cross_entropy_of_the_next_and_previous_word() -> None:
    torch.manual_seed(1)
    config = ModelConfig(
        embedding_dim=8, hidden_dim=6, bidirectional=True, dropout=0.0, embedding_dropout=0.0
    )
    model = LanguageModel(20, config).eval()
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    lengths = torch.tensor([4, 2])
    total, count = model(ids, lengths)
    forward, backward = model.states(ids, lengths)
    expected = 0.0
    for row, length in enumerate(lengths.tolist()):
        words = ids[row, :length].tolist()
        for states, order in ((forward, words), (backward, words[::-1])):
            for t in range(length - 1):
                log_p = torch.log_softmax(model.decoder(states[row, t]), dim=-1)
                expected -= float(log_p[order[t + 1]].detach())
    assert int(count) == 2 * (3 + 1)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)


def test_output_layer_is_the_word_vectors_and_wide_states_are_projected() -> None:
    wide = LanguageModel(30, ModelConfig(embedding_dim=8, hidden_dim=12, dropout=0.0, embedding_dropout=0.0))
    assert wide.decoder.weight is wide.embedding.weight  # one (V, E) matrix
    assert wide.projection is not None and wide.projection.weight.shape == (8, 12)
    ids, lengths = torch.tensor([[3, 4, 5]]), torch.tensor([3])
    assert all(s.shape == (1, 3, 8) for s in wide.states(ids, lengths))
    total, _ = wide(ids, lengths)
    total.backward()  # the word vectors learn from the softmax too, even words never read as input
    assert wide.embedding.weight.grad[20].abs().sum() > 0
    narrow = LanguageModel(30, ModelConfig(embedding_dim=8, hidden_dim=8))
    assert narrow.projection is None and narrow.decoder.weight is narrow.embedding.weight
    # A saved language model loads with the tie intact.
    again = LanguageModel(30, ModelConfig(embedding_dim=8, hidden_dim=12, dropout=0.0, embedding_dropout=0.0))
    again.load_state_dict(wide.state_dict())
    assert again.decoder.weight is again.embedding.weight
    assert torch.equal(again.decoder.weight, wide.embedding.weight)


def test_sampled_softmax_trains_the_language_model() -> None:
    """A few hundred steps of the sampled loss lower the exact (full-softmax) loss on a repetitive text."""
    torch.manual_seed(2)
    config = ModelConfig(
        embedding_dim=16, hidden_dim=16, bidirectional=False, dropout=0.0, embedding_dropout=0.0
    )
    model = LanguageModel(40, config)
    ids = (torch.arange(32) % 10 + 2).repeat(8, 1)  # 2 3 ... 11 2 3 ...: each word predicts the next
    lengths = torch.full((8,), 32)
    model.set_unigram(torch.bincount(ids.flatten(), minlength=40))
    with torch.no_grad():
        before = float(model(ids, lengths)[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        total, count = model(ids, lengths, samples=8)
        optimizer.zero_grad()
        (total / count).backward()
        optimizer.step()
    with torch.no_grad():
        after = float(model(ids, lengths)[0])
    assert after < 0.2 * before


def _with_private_words(folder: Path) -> Path:
    """The tiny project, with words that occur only in the test file and only in a held-out valid file."""
    config = write_tiny_project(folder)
    write_csv(
        folder / "valid.csv", [("validonlyword pizza the", "food"), ("validonlyword goal a", "sports")] * 3
    )
    write_csv(folder / "test.csv", [("testonlyword chip the", "tech"), ("testonlyword soup a", "food")] * 3)
    text = config.read_text(encoding="utf-8").replace(
        "  test: test.csv\n", "  test: test.csv\n  valid: valid.csv\n"
    )
    config.write_text(text, encoding="utf-8")
    return config


def test_valid_and_test_texts_never_reach_the_language_model(tmp_path: Path) -> None:
    config = load(_with_private_words(tmp_path / "project"))
    corpus = build_corpus(config, Processes(torch.device("cpu")))
    words = set(corpus.vocab.get_itos())
    assert "validonlyword" not in words and "testonlyword" not in words
    assert "pizza" in words
    # Every training document, and nothing else, is in the language model's train + held-out parts.
    prepared = prepare(config, vocab=corpus.vocab)
    assert len(corpus.train) + len(corpus.valid) == len(prepared.train)
    assert int(corpus.train.lengths.sum() + corpus.valid.lengths.sum()) == int(prepared.train.lengths.sum())


def test_valid_split_off_train_is_not_pretrained_on(tmp_path: Path) -> None:
    """data.valid null: the share split off train for validation is left out, as the classifier splits it."""
    config = load(write_tiny_project(tmp_path / "project"))
    corpus = build_corpus(config, Processes(torch.device("cpu")))
    prepared = prepare(config, vocab=corpus.vocab)
    assert len(corpus.train) + len(corpus.valid) == len(prepared.train) == 81  # 90 - 10% valid


def test_unlabeled_texts_are_read_and_widen_the_vocabulary(tmp_path: Path) -> None:
    config_path = write_tiny_project(tmp_path / "project")
    (tmp_path / "project" / "more.txt").write_text("unlabeledword the pizza\n\nunlabeledword a goal\n")
    config = load(config_path, ["data.unlabeled=project/more.txt"])  # --set paths: from the working dir
    corpus = build_corpus(config, Processes(torch.device("cpu")))
    assert corpus.unlabeled == 2
    assert "unlabeledword" in corpus.vocab.get_itos()
    plain = build_corpus(load(config_path), Processes(torch.device("cpu")))
    assert len(corpus.train) + len(corpus.valid) == len(plain.train) + len(plain.valid) + 2


def test_pretrain_then_init_from_through_the_cli(tmp_path: Path) -> None:
    config = write_tiny_project(tmp_path / "project")
    result = run("pretrain", str(config), "--set", "pretrain.epochs=2", "--set", "pretrain.samples=10",
                 "--run-dir", "lm")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in Path("lm/metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["valid_perplexity"] > 1 for row in rows)
    saved = checkpoint.load("lm/lm.pt", kind=checkpoint.LANGUAGE_MODEL)
    result = run("train", str(config), "--set", "model.init_from=lm", "--set", "train.epochs=1",
                 "--run-dir", "clf", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    trained = checkpoint.load("clf/best.pt")
    assert trained["vocab"]["itos"] == saved["vocab"]["itos"]
    # A classifier built from init_from starts with exactly the language model's encoder.
    from rnnclf.training.initialise import init_encoders

    settings = load(config, ["model.init_from=lm"])
    model = Classifier(len(saved["vocab"]["itos"]), 3, settings.model)
    init_encoders([model], settings)
    for name, value in model.state_dict().items():
        if name.startswith(("embedding.", "layers.")):
            assert torch.equal(value, saved["model"][name]), name
    # The classifier file refuses to be used as a language model, and the other way round.
    result = run("predict", "--model", "lm/lm.pt", "pizza")
    assert result.exit_code == 2 and "a language model" in result.output


def test_init_from_a_language_model_of_another_shape_is_one_line(tmp_path: Path) -> None:
    config = write_tiny_project(tmp_path / "project")
    assert (
        run("pretrain", str(config), "--set", "pretrain.epochs=1", "--run-dir", "lm", "--quiet").exit_code
        == 0
    )
    result = run("train", str(config), "--set", "model.init_from=lm", "--set", "model.hidden_dim=12")
    assert result.exit_code == 2
    assert "model.hidden_dim (16 in lm.pt, 12 here)" in result.output
    assert "Traceback" not in result.output
    assert not Path("runs").exists() or not any(Path("runs").glob("*/best.pt"))


def test_train_with_pretrain_epochs_runs_both_stages_in_one_folder(tmp_path: Path) -> None:
    config = write_tiny_project(tmp_path / "project")
    result = run(
        "train", str(config), "--set", "pretrain.epochs=1", "--set", "train.epochs=1", "--run-dir", "both"
    )
    assert result.exit_code == 0, result.output
    assert Path("both/pretrain/lm.pt").is_file() and Path("both/best.pt").is_file()
    saved = checkpoint.load("both/best.pt")
    assert saved["config"]["model"]["init_from"].endswith("both/pretrain/lm.pt")
    assert "stage 2/2" in result.output


class StopAfter:
    """A stop flag whose signal arrives after `steps` steps (the loop reads .signal once a step)."""

    def __init__(self, steps: int) -> None:
        self.reads, self.steps, self.finishing = 0, steps, False

    @property
    def signal(self) -> int | None:
        self.reads += 1
        return 15 if self.reads > self.steps else None

    def __bool__(self) -> bool:
        return self.reads > self.steps


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path: Path) -> None:
    config_path = write_tiny_project(tmp_path / "project")
    options = ["pretrain.epochs=2", "pretrain.batch_size=16", "pretrain.samples=10"]
    pretrain(load(config_path, options), "straight")
    with pytest.raises(Interrupted):
        pretrain(load(config_path, options), "stopped", stop=StopAfter(3))
    assert checkpoint.load("stopped/last.pt", kind=checkpoint.LANGUAGE_MODEL)["step"] == 4
    pretrain(load(config_path, options), "stopped", resume=True)
    straight = checkpoint.load("straight/lm.pt", kind=checkpoint.LANGUAGE_MODEL)["model"]
    resumed = checkpoint.load("stopped/lm.pt", kind=checkpoint.LANGUAGE_MODEL)["model"]
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def test_discriminative_rates_and_gradual_unfreezing(tmp_path: Path) -> None:
    config = load(
        write_tiny_project(tmp_path / "project"),
        ["train.layer_lr_decay=2.0", "train.gradual_unfreezing=true", "model.num_layers=2", "train.epochs=4",
         "train.warmup=0.0", "train.schedule=constant"],
    )  # fmt: skip
    model = Classifier(50, 3, config.model)
    names = ["output.weight", "layers.1.0.weight_hh_l0", "layers.0.1.bias_ih_l0", "embedding.weight"]
    assert [depth_of(name, 2) for name in [*names, "members.3.embedding.weight"]] == [0, 1, 2, 3, 3]
    optimizer = make_optimizer(model, config, fused=False)
    schedule = make_schedule(optimizer, config, total_steps=40)  # 10 steps an epoch
    rates = []
    for _ in range(40):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    lr = config.train.lr
    assert rates[0] == [lr, 0.0, 0.0, 0.0]  # epoch 1: the output layer only
    assert rates[10] == [lr, lr / 2, 0.0, 0.0]  # epoch 2: + the top recurrent layer
    assert rates[20] == [lr, lr / 2, lr / 4, 0.0]
    assert rates[30] == [lr, lr / 2, lr / 4, lr / 8]  # epoch 4: the word vectors too


def test_concat_pooling_joins_max_mean_and_last() -> None:
    config = ModelConfig(embedding_dim=4, hidden_dim=3, bidirectional=True, pooling="concat")
    model = Classifier(10, 2, config)
    states = torch.randn(2, 5, 6)
    lengths = torch.tensor([5, 2])
    pooled = model.pool(states, lengths)
    assert pooled.shape == (2, 18)
    assert torch.equal(pooled[:, :6], model.pool(states, lengths, "max"))
    assert torch.equal(pooled[:, 6:12], model.pool(states, lengths, "mean"))
    assert torch.equal(pooled[:, 12:], model.pool(states, lengths, "last"))
    assert model(torch.randint(1, 10, (2, 5)), lengths).shape == (2, 2)


def test_unlabeled_files_in_every_format(tmp_path: Path) -> None:
    from rnnclf.data.unlabeled import read_texts
    from rnnclf.errors import RnnclfError

    (tmp_path / "a.txt").write_text("__label__x first text\n\n  \nsecond text\n")
    assert read_texts(tmp_path / "a.txt") == ["first text", "second text"]
    write_csv(tmp_path / "b.csv", [("csv one", "x"), ("", "y"), ("csv two", "z")])
    assert read_texts(tmp_path / "b.csv") == ["csv one", "csv two"]  # the label column is ignored
    (tmp_path / "c.jsonl").write_text('{"body": "json one"}\n\n{"body": "json two"}\n')
    assert read_texts(tmp_path / "c.jsonl", "body") == ["json one", "json two"]
    (tmp_path / "d.jsonl").write_text('{"body": "fine"}\n{"other": 1}\n')
    with pytest.raises(RnnclfError, match=r"d.jsonl: line 2: no text field 'body'"):
        read_texts(tmp_path / "d.jsonl", "body")
    with pytest.raises(RnnclfError, match="no such file"):
        read_texts(tmp_path / "missing.txt")


def test_sampled_loss_is_the_formula_over_the_distinct_drawn_words() -> None:
    """The drawn words are padded to a fixed width for speed; the padding must change nothing: each row's
    loss is -log softmax over [true word, distinct drawn words other than it], every score corrected by
    the log of its expected count in the draws."""
    torch.manual_seed(0)
    model = LanguageModel(200, ModelConfig(embedding_dim=8, hidden_dim=8, bidirectional=False))
    with torch.no_grad():
        model.decoder.bias.normal_()
    model.set_unigram(torch.randint(1, 50, (200,)))
    hidden = torch.randn(6, 8)
    targets = torch.tensor([5, 7, 9, 11, 5, 150])
    drawn = torch.multinomial(model.sampling, 40, replacement=True)
    drawn[0] = 7  # at least one accidental hit
    losses = model._sampled_losses(hidden, targets, drawn)
    words = torch.unique(drawn)
    assert words.numel() % 64 != 0  # so the padding is exercised
    expected = torch.log(-torch.expm1(40 * torch.log1p(-model.sampling)))
    score = hidden @ model.decoder.weight.t() + model.decoder.bias - expected  # (6, V)
    for row, target in enumerate(targets.tolist()):
        others = [w for w in words.tolist() if w != target]
        row_scores = torch.cat([score[row, [target]], score[row, others]])
        assert torch.allclose(losses[row], -torch.log_softmax(row_scores, 0)[0], atol=1e-5)
