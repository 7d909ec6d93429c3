"""Tests for rnnclf.models.classifier: variable lengths are exact (padding never changes a document's
score) and the
backward direction reads each document right to left, exactly as torch's packed bidirectional RNNs do."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnclf.config import ModelConfig
from rnnclf.models.classifier import Classifier

VOCAB, CLASSES, EMBEDDING, HIDDEN = 50, 4, 8, 6
ATOL = 1e-5


def make_model(cell: str, bidirectional: bool, pooling: str, num_layers: int, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    config = ModelConfig(
        cell=cell,
        embedding_dim=EMBEDDING,
        hidden_dim=HIDDEN,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,
        dropout=0.5,  # must be inactive in eval mode
        embedding_dropout=0.5,
    )
    return Classifier(VOCAB, CLASSES, config).eval()


def batch(documents: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) with 0 as padding, and lengths (B,)."""
    lengths = torch.tensor([len(d) for d in documents])
    ids = torch.zeros(len(documents), int(lengths.max()), dtype=torch.long)
    for row, document in enumerate(documents):
        ids[row, : len(document)] = torch.tensor(document)
    return ids, lengths


def random_document(length: int, generator: torch.Generator) -> list[int]:
    return torch.randint(1, VOCAB, (length,), generator=generator).tolist()


def all_settings() -> Iterator[tuple[str, bool, str, int]]:
    return itertools.product(
        ("rnn", "gru", "lstm"), (False, True), ("last", "mean", "max", "attention"), (1, 2)
    )


SETTINGS = list(all_settings())


def setting_id(setting: tuple[str, bool, str, int]) -> str:
    cell, bidirectional, pooling, layers = setting
    return f"{cell}-{'bi' if bidirectional else 'uni'}-{pooling}-{layers}layer"


@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
def test_padding_never_changes_a_score(setting: tuple[str, bool, str, int]) -> None:
    model = make_model(*setting)
    generator = torch.Generator().manual_seed(1)
    short, long, middle = (random_document(n, generator) for n in (5, 60, 17))
    with torch.no_grad():
        alone = model(*batch([short]))  # (1, C)
        beside_long = model(*batch([short, long]))  # short padded to 60
        long_alone = model(*batch([long]))
        # Reordered rows, padded to 60: each row is still its own document's score.
        mixed = model(*batch([long, middle, short]))
        middle_alone = model(*batch([middle]))
    torch.testing.assert_close(beside_long[0], alone[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(beside_long[1], long_alone[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(mixed[2], alone[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(mixed[1], middle_alone[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(mixed[0], long_alone[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_token_values_are_never_read(pooling: str) -> None:
    """Whatever sits in the padded positions (not only index 0) cannot change the result."""
    model = make_model("gru", True, pooling, 2)
    ids, lengths = batch([[3, 4, 5], [6, 7, 8, 9, 10, 11, 12]])
    garbage = ids.clone()
    garbage[0, 3:] = torch.arange(20, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(garbage, lengths), model(ids, lengths), atol=ATOL, rtol=0)


def test_dropout_is_off_in_eval_mode_and_on_in_train_mode() -> None:
    model = make_model("lstm", True, "max", 2)
    ids, lengths = batch([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids, lengths), model(ids, lengths))
        model.train()
        outputs = [model(ids, lengths) for _ in range(5)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


# --- the states over time, compared with torch's own packed bidirectional RNN ----------------------------


def states_of(model: Classifier, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The (B, T, D*H) recurrent outputs the model pools, captured at its pool() call."""
    captured: list[torch.Tensor] = []
    pool = model.pool

    def capture(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        captured.append(states)
        return pool(states, lengths)

    model.pool = capture  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            model(ids, lengths)
    finally:
        del model.pool
    return captured[0]


def torch_reference(model: Classifier) -> nn.RNNBase:
    """A torch multi-layer (bi)directional RNN holding our per-layer, per-direction weights."""
    config = model.config
    module_type = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[config.cell]
    reference = module_type(
        config.embedding_dim,
        config.hidden_dim,
        num_layers=config.num_layers,
        bidirectional=config.bidirectional,
        batch_first=True,
    )
    with torch.no_grad():
        for layer, directions in enumerate(model.layers):
            for direction, ours in enumerate(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(reference, name + suffix).copy_(getattr(ours, name + "_l0"))
    return reference.eval()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_states_equal_torch_packed_rnn(cell: str, num_layers: int, bidirectional: bool) -> None:
    model = make_model(cell, bidirectional, "last", num_layers, seed=3)
    reference = torch_reference(model)
    generator = torch.Generator().manual_seed(4)
    ids, lengths = batch([random_document(n, generator) for n in (7, 1, 25, 3, 25, 12)])
    ours = states_of(model, ids, lengths)  # (B, T, D*H)
    with torch.no_grad():
        packed = pack_padded_sequence(model.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        output, hidden = reference(packed)
        expected, _ = pad_packed_sequence(output, batch_first=True, total_length=ids.size(1))
    mask = (torch.arange(ids.size(1)).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    torch.testing.assert_close(ours * mask, expected, atol=ATOL, rtol=0)

    # 'last' pooling is torch's final hidden state of the top layer: forward (and backward) h_n.
    final = hidden[0] if cell == "lstm" else hidden  # (layers*D, B, H)
    top = final[-model.directions :]  # (D, B, H)
    expected_last = torch.cat(list(top), dim=-1)  # (B, D*H)
    with torch.no_grad():
        pooled = model.pool(ours, lengths)
    torch.testing.assert_close(pooled, expected_last, atol=ATOL, rtol=0)


def test_backward_direction_reads_right_to_left() -> None:
    model = make_model("gru", True, "last", 1)
    document = [5, 6, 7, 8, 9]
    changed_first = [40, 6, 7, 8, 9]
    changed_last = [5, 6, 7, 8, 40]
    # Padding after each document, so a backward pass that ran over the padding would show up.
    ids, lengths = batch([document, changed_first, changed_last, [1] * 12])
    states = states_of(model, ids, lengths)[:3, :5]  # (3, 5, 2H)
    forward, backward = states[..., :HIDDEN], states[..., HIDDEN:]
    # Forward state at t has read tokens 0..t: changing the last token changes only t = 4.
    assert torch.equal(forward[2, :4], forward[0, :4])
    assert not torch.allclose(forward[2, 4], forward[0, 4])
    # Backward state at t has read tokens t..end: changing the first token changes only t = 0 ...
    assert torch.equal(backward[1, 1:], backward[0, 1:])
    assert not torch.allclose(backward[1, 0], backward[0, 0])
    # ... and changing the last token changes every backward state.
    assert all(not torch.allclose(backward[2, t], backward[0, t]) for t in range(5))
    # The backward state at the last token has read that token alone (from a zero state).
    single = states_of(model, *batch([[9]]))[0, 0, HIDDEN:]
    torch.testing.assert_close(backward[0, 4], single, atol=ATOL, rtol=0)
