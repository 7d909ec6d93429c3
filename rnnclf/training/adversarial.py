"""train.adversarial: adversarial training on the word vectors (Goodfellow et al. 2015; for text,
Miyato, Dai & Goodfellow 2017, "Adversarial training methods for semi-supervised text classification").

A step learns from its batch twice: as it is, and with each document's word vectors (the embedding's
output, (B, T, E), before dropout) moved by the small perturbation that raises the loss most to first
order, r = eps * ||x|| * g / ||g||, where x is the document's word vectors, g the gradient of the clean
loss with respect to them, and both norms are taken over the document's (T, E) (padding stays where it
is). eps is a share of the document's own norm, so one value means the same push whatever the
embedding size, the document's length or the vectors' scale (random N(0, 1) rows have norm ~sqrt(E),
GloVe's ~5-7); Miyato et al. get the same by normalising the word vectors first. The clean
backward gives g for free; the perturbed forward and backward add their gradient to it, so a step costs
about two. The model learns to hold its prediction in a neighbourhood of every training sentence, a
regulariser that the word vectors, the layer with most weights and fewest examples per weight, need most
on small corpora (TREC, 5,000 questions: bench/adversarial.py, BENCHMARKS.md).

    with WordVectorPerturbation(members) as words:   # forward hooks on each member's embedding
        ... clean forward, backward ...
        words.aim(eps)                                # r from the vectors and gradients just computed
        ... perturbed forward, backward ...
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import torch
from torch import Tensor, nn


class WordVectorPerturbation:
    """Forward hooks on the embeddings of the given members (an ensemble's each, or the one classifier):
    before `aim` they keep each embedding's output and its gradient; after it they add the perturbation
    to the output. One clean forward, then `aim`, then one perturbed forward."""

    def __init__(self, members: list[nn.Module]) -> None:
        self.embeddings: list[nn.Embedding] = [member.embedding for member in members]
        self.outputs: dict[int, torch.Tensor] = {}  # member -> its clean word vectors (B, T, E)
        self.padding: dict[int, torch.Tensor] = {}  # member -> (B, T, 1), True where ids are padding
        self.moves: dict[int, torch.Tensor] | None = None  # member -> r (B, T, E), once aimed
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> WordVectorPerturbation:
        for index, embedding in enumerate(self.embeddings):
            self.handles.append(embedding.register_forward_hook(self._hook(index)))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _hook(self, index: int) -> Callable[..., torch.Tensor]:
        def hook(module: nn.Embedding, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> Tensor:
            if self.moves is not None:
                return output + self.moves[index]
            if output.requires_grad:
                output.retain_grad()
            else:  # frozen word vectors (model.freeze_embeddings): a leaf; its gradient is what aims r
                output.requires_grad_(True)
            self.outputs[index] = output
            self.padding[index] = (inputs[0] == module.padding_idx).unsqueeze(-1)
            return output

        return hook

    @torch.no_grad()
    def aim(self, eps: float) -> None:
        """After the clean backward: r = eps * ||x|| * g / ||g|| per document, from each member's word
        vectors x and the gradient g they received (scaled by a GradScaler or not: the norm cancels the
        scale)."""
        moves: dict[int, torch.Tensor] = {}
        for index, output in self.outputs.items():
            padding = self.padding[index]
            # Every member's vectors take a gradient (the hook makes frozen ones a leaf that does).
            grad = output.grad.float().masked_fill(padding, 0.0)  # (B, T, E)
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)  # (B, 1, 1)
            size = output.detach().float().masked_fill(padding, 0.0).flatten(1).norm(dim=1)  # (B,)
            moves[index] = (grad * (eps * size.view(-1, 1, 1) / norm)).to(output.dtype)
        self.moves = moves
        self.outputs.clear()  # the clean graph is gone after its backward; drop the references
