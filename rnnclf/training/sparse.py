"""train.sparse_embedding: word vectors trained from sparse gradients (only the rows of a batch's words).

With a dense gradient the word vectors cost every step as much as the whole (V, E) table: zeroed,
filled, clipped and stepped by Adam although a batch touches a few hundred rows (GoEmotions, 30k words,
300-d vectors, batch 32: 47 ms a step dense, 23 ms here; bench/step_parts.py). Here the embedding's
backward gives (rows, E) and the word vectors step by lazy Adam (torch.optim.SparseAdam: a row's
moments and its weights change only when the row is in the batch) beside Adam for the rest. Off by
default: lazy Adam trained 8 of 9 GoEmotions configurations to a lower validation score.

    use_sparse_rows(embeddings)       the trainable ones give sparse gradients
    SplitAdam(groups, ...)            Adam/AdamW (dense) + SparseAdam (word vectors) as one optimizer
    clip_grad_norm(parameters, norm)  the total norm over dense and sparse gradients, as torch's
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def use_sparse_rows(embeddings: Iterable[nn.Embedding]) -> None:
    """Switch the trainable ones of these embeddings to sparse gradients."""
    for embedding in embeddings:
        if embedding.weight.requires_grad:
            embedding.sparse = True  # read by each forward: backward then gives (rows, E)


class SplitAdam(torch.optim.Optimizer):
    """One optimizer over two: Adam (or AdamW, decoupled weight decay) for dense gradients, fused where
    asked, and SparseAdam for the word vectors. Its param_groups are the two optimizers' own group
    dicts, so a learning-rate schedule (or GradScaler) driving this optimizer drives both. The word
    vectors get no weight decay (lazy Adam has none: decaying every row each step would be dense again)."""

    def __init__(
        self,
        groups: list[dict[str, Any]],
        sparse: Iterable[nn.Parameter],
        lr: float,
        weight_decay: float,
        decoupled: bool,
        fused: bool,
    ) -> None:
        rows = {id(weight) for weight in sparse}
        dense_groups, sparse_groups = [], []
        for group in groups:
            extra = {key: value for key, value in group.items() if key != "params"}
            dense = [p for p in group["params"] if id(p) not in rows]
            lazy = [p for p in group["params"] if id(p) in rows]
            if dense:
                dense_groups.append({**extra, "params": dense})
            if lazy:
                extra.pop("weight_decay", None)
                sparse_groups.append({**extra, "params": lazy})
        kind = torch.optim.AdamW if decoupled else torch.optim.Adam
        self.dense = (
            kind(dense_groups, lr=lr, weight_decay=weight_decay, fused=fused) if dense_groups else None
        )
        self.sparse = torch.optim.SparseAdam(sparse_groups, lr=lr) if sparse_groups else None
        super().__init__([p for group in groups for p in group["params"]], {"lr": lr})
        self._share_groups()

    def _parts(self) -> list[torch.optim.Optimizer]:
        return [part for part in (self.dense, self.sparse) if part is not None]

    def _share_groups(self) -> None:
        # The same dicts, not copies: a schedule setting group["lr"] here sets it in the part.
        self.param_groups = [group for part in self._parts() for group in part.param_groups]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for part in self._parts():
            part.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "dense": self.dense.state_dict() if self.dense else None,
            "sparse": self.sparse.state_dict() if self.sparse else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"dense", "sparse"}:
            raise ValueError("not a SplitAdam state (saved without train.sparse_embedding)")
        for part, saved in ((self.dense, state_dict["dense"]), (self.sparse, state_dict["sparse"])):
            if part is not None:
                part.load_state_dict(saved)
        self._share_groups()  # loading replaces the parts' group dicts


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ where some gradients may be sparse (torch's refuses them): the
    total 2-norm over all gradients, each scaled by max_norm / (norm + 1e-6) when it exceeds max_norm.
    A sparse gradient is coalesced first (a word seen twice in a batch has two rows until then)."""
    with_grad = [p for p in parameters if p.grad is not None]
    sparse = [p for p in with_grad if p.grad.is_sparse]
    dense = [p.grad for p in with_grad if not p.grad.is_sparse]
    if not sparse:
        return nn.utils.clip_grad_norm_(with_grad, max_norm)
    for p in sparse:
        p.grad = p.grad.coalesce()
    norms = [torch.linalg.vector_norm(g.float()) for g in dense] + [
        torch.linalg.vector_norm(p.grad._values().float()) for p in sparse
    ]
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in dense:
        g.mul_(scale.to(g.dtype))
    for p in sparse:
        p.grad._values().mul_(scale.to(p.grad.dtype))
    return total
