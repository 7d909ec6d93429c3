"""The classifier as ONNX's own recurrent operators, for `rnnclf export --format onnx`.

Traced as it is, rnnclf.models.classifier runs the right-to-left direction on a copy of each document
reversed within its length (two (B, T, C) gathers per layer), and one single-direction LSTM node per
direction. ONNX's LSTM, GRU and RNN operators take the documents' lengths themselves
(`sequence_lens`) and run both directions in one node, reversing each document within its length, which
is the classifier's own rule. So the export swaps every Classifier in the model for OnnxClassifier,
whose recurrent layers become those nodes:

    ids (B, T) --transpose--> (T, B) --embedding--> (T, B, E)
        --LSTM/GRU/RNN node per layer, sequence_lens = lengths--> (T, D, B, H)   (0 after each length)
        --> (B, T, D*H) --the classifier's own pooling and output layer--> logits (B, C)

Measured 2026-12-05 (one-epoch IMDB default model, 25,000 reviews, session runs alone, 2 cores,
BENCHMARKS.md): int8 2,825 -> 3,373 reviews/s, fp32 1,945 -> 2,097 with probabilities identical.
The export's check (rnnclf.inference.export._verify) still compares the file against the classifier.

Nothing here runs in training. Run eagerly, OnnxClassifier computes the same numbers through the
classifier's own layers (what torch.jit.trace follows; tests compare it with the classifier).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rnnclf.models.classifier import Classifier, gather_time, reverse_index

# ONNX operator per cell, and where each of torch's gate blocks goes in ONNX's order:
# LSTM torch (i, f, g, o) -> ONNX (i, o, f, c); GRU torch (r, z, n) -> ONNX (z, r, h); RNN has one.
OPERATORS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}


def onnx_weights(cell: str, directions: list[nn.RNNBase]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's single-direction torch cells -> ONNX's W (D, G*H, I), R (D, G*H, H), B (D, 2*G*H)."""
    order = GATE_ORDER[cell]

    def reorder(tensor: torch.Tensor) -> torch.Tensor:  # (G*H, ...) gate blocks in ONNX's order
        blocks = tensor.detach().chunk(len(order), dim=0)
        return torch.cat([blocks[i] for i in order], dim=0)

    w = torch.stack([reorder(one.weight_ih_l0) for one in directions])
    r = torch.stack([reorder(one.weight_hh_l0) for one in directions])
    b = torch.stack([torch.cat([reorder(one.bias_ih_l0), reorder(one.bias_hh_l0)]) for one in directions])
    return w.contiguous(), r.contiguous(), b.contiguous()


def _recurrence(cell: str, hidden: int, directions: int) -> Any:
    """An autograd Function for one layer: exported, one ONNX node of x (T, B, I) and lengths (B,);
    eager, it passes on `y`, the layer's states (T, D, B, H) computed by the classifier's own cells
    (torch.jit.trace cannot follow modules called inside a Function; the ops that computed `y` feed
    nothing in the ONNX graph and the exporter drops them)."""

    class Recurrence(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, lengths: Any, w: Any, r: Any, b: Any, y: Any) -> Any:
            return y.clone()

        @staticmethod
        def symbolic(g: Any, x: Any, lengths: Any, w: Any, r: Any, b: Any, y: Any) -> Any:
            attributes: dict[str, Any] = {
                "hidden_size_i": hidden,
                "direction_s": "bidirectional" if directions == 2 else "forward",
            }
            if cell == "gru":
                attributes["linear_before_reset_i"] = 1  # torch's GRU applies r after the product
            lengths32 = g.op("Cast", lengths, to_i=6)  # sequence_lens is int32
            outputs = 3 if cell == "lstm" else 2
            return g.op(OPERATORS[cell], x, w, r, b, lengths32, outputs=outputs, **attributes)[0]

    return Recurrence


def layer_states(directions: list[nn.RNNBase], x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """What ONNX's node computes, by the classifier's own rule (rnnclf.models.classifier): x (T, B, I)
    -> (T, D, B, H), each direction's states in time order, 0 after each document's length."""
    batch_first = x.transpose(0, 1)  # (B, T, I)
    states = [directions[0](batch_first)[0]]  # (B, T, H)
    if len(directions) == 2:
        index = reverse_index(lengths, batch_first.size(1))  # (B, T)
        states.append(gather_time(directions[1](gather_time(batch_first, index))[0], index))
    y = torch.stack(states, dim=0).permute(2, 0, 1, 3)  # (T, D, B, H)
    steps = torch.arange(y.size(0), device=y.device).view(-1, 1, 1, 1)  # (T, 1, 1, 1)
    real = steps < lengths.view(1, 1, -1, 1)  # (T, 1, B, 1)
    return y.masked_fill(~real, 0.0)


class OnnxLayer(nn.Module):
    """One recurrent layer (all its directions) with its weights in ONNX's layout, as buffers so they
    become the graph's initializers (which int8 quantization looks for)."""

    def __init__(self, cell: str, hidden: int, directions: list[nn.RNNBase]) -> None:
        super().__init__()
        w, r, b = onnx_weights(cell, directions)
        self.register_buffer("w", w)
        self.register_buffer("r", r)
        self.register_buffer("b", b)
        self.directions = nn.ModuleList(directions)
        self.function = _recurrence(cell, hidden, len(directions))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (T, B, I) -> (T, D, B, H)."""
        y = layer_states(list(self.directions), x, lengths)
        return self.function.apply(x, lengths, self.w, self.r, self.b, y)


class OnnxClassifier(nn.Module):
    """A Classifier (inference only) whose recurrent layers export as ONNX LSTM/GRU/RNN nodes with the
    documents' lengths; the same function of (ids (B, T), lengths (B,)) -> logits (B, C)."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier
        config = classifier.config
        self.layers = nn.ModuleList(
            OnnxLayer(config.cell, config.hidden_dim, list(directions)) for directions in classifier.layers
        )

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.classifier.embedding(ids.t())  # (T, B, E): time-major as ONNX's nodes read it
        y = self.layers[0](x, lengths)  # (T, D, B, H)
        for layer in self.layers[1:]:
            y = layer(y.permute(0, 2, 1, 3).reshape(y.size(0), y.size(2), -1), lengths)  # from (T, B, D*H)
        states = y.permute(2, 0, 1, 3).reshape(y.size(2), y.size(0), -1)  # (B, T, D*H), one move
        return self.classifier.output(self.classifier.pool(states, lengths))  # (B, C)


def with_onnx_recurrence(model: nn.Module) -> nn.Module:
    """A copy of `model` with every Classifier inside it swapped for an OnnxClassifier (for export: the
    swapped layers compute inference only, so pass a model in eval mode)."""
    if isinstance(model, Classifier):
        return OnnxClassifier(model)
    model = copy.copy(model)  # a shallow copy: the original's modules stay as they are
    model._modules = {
        name: None if child is None else with_onnx_recurrence(child) for name, child in model._modules.items()
    }
    return model
