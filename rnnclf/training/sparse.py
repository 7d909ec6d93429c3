"""train.sparse_embedding: word vectors trained from sparse gradients (only the rows of a batch's words).

With a dense gradient the word vectors cost every step as much as the whole (V, E) table: zeroed,
filled, clipped and stepped by Adam although a batch touches a few hundred rows (GoEmotions, 30k words,
300-d vectors, batch 32: 47 ms a step dense; bench/step_parts.py). Here the embedding's backward gives
(rows, E) and the word vectors step by RowAdam, which pays for the batch's rows only yet trains as
dense Adam does: a row catches up in closed form on the steps it missed when it is next looked up.
(torch.optim.SparseAdam, lazy Adam, skips those steps instead: it trained 8 of 9 GoEmotions
configurations to a lower validation score.)

    use_sparse_rows(embeddings)       the trainable ones give sparse gradients
    SplitAdam(groups, embeddings, ...) Adam/AdamW (dense) + RowAdam (word vectors) as one optimizer
    bring_up_to_date(optimizer)       every word vector current, before the weights are read whole
    clip_grad_norm(parameters, norm)  the total norm over dense and sparse gradients, as torch's
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rnnclf.config import TrainConfig
from rnnclf.training.distributed import Processes

# auto turns sparse gradients on from this many word-vector weights (vocabulary x embedding_dim) per table:
# below it a dense step costs less than the catch-up's fixed share (bench/step_parts.py, bf16, 2 cores:
# TREC's 0.4M, 9.4 ms dense against 10.3 sparse; GoEmotions' 1.8M, 19.2 against 15.7; 9.1M, 44.2 / 20.0).
SPARSE_FROM = 1_000_000


def sparse_wanted(train: TrainConfig, table: int, processes: Processes) -> bool:
    """Whether train.sparse_embedding turns sparse word-vector gradients on for a table of `table`
    weights: true or false as set; auto where the result is dense Adam's (adamw, or adam without an L2
    penalty, which sparse steps leave off the word vectors; no ema; one process), on a CPU (not
    measured on CUDA), from SPARSE_FROM weights."""
    if train.sparse_embedding != "auto":
        return bool(train.sparse_embedding)
    return (
        (train.optimizer == "adamw" or (train.optimizer == "adam" and train.weight_decay == 0.0))
        and train.ema is None
        and processes.size == 1
        and processes.device.type == "cpu"
        and table >= SPARSE_FROM
    )


def use_sparse_rows(embeddings: Iterable[nn.Embedding]) -> None:
    """Switch the trainable ones of these embeddings to sparse gradients."""
    for embedding in embeddings:
        if embedding.weight.requires_grad:
            embedding.sparse = True  # read by each forward: backward then gives (rows, E)


class RowAdam(torch.optim.Optimizer):
    """Adam (or AdamW's decoupled weight decay) for word vectors with sparse gradients, equal to dense
    Adam but paying only for the batch's rows.

    Dense Adam moves every row every step: a word absent from the batch has a zero gradient, yet its
    moments decay (m *= beta1, v *= beta2), its weights decay (AdamW) and it keeps moving by
    lr * m_hat / (sqrt(v_hat) + eps). Lazy Adam (torch.optim.SparseAdam) skips those moves, and trained
    8 of 9 GoEmotions configurations to a lower score. Here a row that missed k steps catches up in
    closed form when it is next looked up (a forward pre-hook on its embedding) or when all rows are
    brought up to date (`flush`: before scoring or saving). For a row last stepped at t0 with moments
    m0, v0, skipped step u = t0 + j moves it by

        lr_u * beta1^j m0 / (1 - beta1^u) / sqrt(beta2^j v0 / (1 - beta2^u))
            = (m0 / sqrt(v0)) * r^j * h_u,
        r = beta1 / sqrt(beta2),   h_u = lr_u * sqrt(1 - beta2^u) / (1 - beta1^u)

    (eps, which matters only where sqrt(v_hat) is near 1e-8, enters as sqrt(v0) + eps * y with y the
    weighted mean of its per-step factor), and AdamW's decay multiplies by d_u = 1 - lr_u * weight_decay
    each step. So a row's catch-up is one weighted sum over the steps it missed of numbers shared by all
    rows (h_u, the running sum of log d_u and sqrt(1 - beta2^u), kept per step since the last flush, at
    most MAX_HISTORY steps), read from suffix sums computed once per step. Against dense Adam over 300
    Zipf-drawn steps the word vectors agree to about 1e-4 of how far they moved (test_sparse_embedding).
    """

    MAX_HISTORY = 4096  # steps kept between flushes: r^-4096 = e^430 still fits float64 (e^709)
    BETAS = (0.9, 0.999)  # torch's defaults, as the dense Adam beside it
    EPS = 1e-8

    def __init__(self, groups: list[dict[str, Any]], lr: float, weight_decay: float) -> None:
        super().__init__(groups, {"lr": lr, "weight_decay": weight_decay})
        # Per parameter, not saved (a flush before saving makes them trivial): the step each row is
        # current to, (V,) int64, and since the last flush each step's h_u and running sum of log d_u.
        self.current: dict[nn.Parameter, torch.Tensor] = {}
        self.history: dict[nn.Parameter, History] = {}
        self._cache: dict[
            nn.Parameter, tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
        ] = {}

    def _state_of(self, weight: nn.Parameter) -> dict[str, Any]:
        state = self.state[weight]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
        if weight not in self.current:
            self.current[weight] = torch.full(
                (weight.size(0),), state["step"], dtype=torch.long, device=weight.device
            )
            self.history[weight] = History(weight.device)
        return state

    @torch.no_grad()
    def catch_up(self, weight: nn.Parameter, rows: torch.Tensor) -> None:
        """Bring these rows (unique ids, (R,)) up to the last step taken, as dense Adam would have moved
        them through the steps they missed."""
        if weight not in self.current:
            return  # no step taken yet: nothing missed
        state, current = self.state[weight], self.current[weight]
        step = state["step"]
        missed = step - current[rows]  # (R,)
        behind = missed > 0
        if not bool(behind.any()):
            return
        rows, missed = rows[behind], missed[behind]
        owed, eps_scale, decay = self._owed(weight)  # (S + 1,) each, by the step a row was last current
        since = current[rows] - (step - self.history[weight].steps)  # (R,) index into them
        m, v, dtype = state["exp_avg"], state["exp_avg_sq"], weight.dtype
        # index_select / index_copy_: several times faster on CPU than weight[rows] and its assignment
        m_rows, v_rows = m.index_select(0, rows), v.index_select(0, rows)  # (R, E)
        scale = (self.EPS * eps_scale[since])[:, None].to(dtype)  # (R, 1), > 0
        direction = m_rows / v_rows.sqrt().add_(scale)  # (R, E) m0 / (sqrt(v0) + eps y); 0 where m0 is
        rows_now = weight.index_select(0, rows)
        if decay is not None:
            rows_now.mul_(decay[since, None].to(dtype))
        weight.index_copy_(0, rows, rows_now.sub_(direction.mul_(owed[since, None].to(dtype))))
        beta1, beta2 = self.BETAS
        m.index_copy_(0, rows, m_rows.mul_((beta1 ** missed.double())[:, None].to(dtype)))
        v.index_copy_(0, rows, v_rows.mul_((beta2 ** missed.double())[:, None].to(dtype)))
        current[rows] = step

    def _owed(self, weight: nn.Parameter) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """For a row last current at step base + i (i = 0..S, S steps since the last flush), as of now:
        the sum over the steps it missed of h_u r^(u - t0) decayed by AdamW through the later steps, the
        eps scale y for its skipped steps, and AdamW's decay through them all (None: no step since the
        flush decayed); (S + 1,) float64 each, computed once per step (suffix sums: every term positive,
        none cancels)."""
        history, step = self.history[weight], self.state[weight]["step"]
        cached = self._cache.get(weight)
        if cached is not None and cached[0] == step:
            return cached[1]
        beta1, beta2 = self.BETAS
        r = beta1 / math.sqrt(beta2)
        size = history.steps
        h, log_d, root = history.columns()  # (S + 1,) each: step base + i
        ahead = torch.arange(size + 1, device=weight.device, dtype=torch.float64) - size  # u - now, <= 0
        # Step u's move for a row last current at i: h_u e^(L_now - L_u) r^(u - i)
        #   = [h_u e^(L_now - L_u) r^(u - now)] * r^(now - i); the bracket grows as u goes back (at most
        #   r^-MAX_HISTORY = e^430, inside float64), its suffix sums over u > i need no subtraction.
        term = h * torch.exp(log_d[-1] - log_d) * r**ahead
        term[0] = 0.0  # index 0 is the base step itself, never owed
        # eps: skipped step u divides by sqrt(v0) + eps * y_u, y_u = sqrt(1 - beta2^u) / beta2^((u - i)/2);
        # y_u barely moves over the few dozen steps that carry the weight, so its weighted mean stands in.
        term_y = term * root * beta2 ** (-ahead / 2)
        after = torch.cat([term.flip(0).cumsum(0).flip(0)[1:], term.new_zeros(1)])  # (S + 1,): u > i
        after_y = torch.cat([term_y.flip(0).cumsum(0).flip(0)[1:], term.new_zeros(1)])
        owed = after * r ** (-ahead)
        eps_scale = torch.where(after > 0, after_y / after.clamp(min=1e-300), 1.0) * beta2 ** (ahead / 2)
        decay = torch.exp(log_d[-1] - log_d) if bool(log_d[-1] != 0.0) else None
        self._cache[weight] = (step, (owed, eps_scale, decay))
        return owed, eps_scale, decay

    @torch.no_grad()
    def flush(self) -> None:
        """Bring every row up to date (before the weights are read whole: scoring, saving) and forget
        the steps' history."""
        for weight in list(self.current):
            self._flush(weight)

    def _flush(self, weight: nn.Parameter) -> None:
        self.catch_up(weight, torch.arange(weight.size(0), device=weight.device))
        self.history[weight] = History(weight.device)
        self._cache.pop(weight, None)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        beta1, beta2 = self.BETAS
        for group in self.param_groups:
            lr, decay = group["lr"], group["weight_decay"]
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                state = self._state_of(weight)
                grad = weight.grad.coalesce()
                rows, values = grad._indices()[0], grad._values()  # (R,), (R, E)
                self.catch_up(weight, rows)
                state["step"] += 1
                step = state["step"]
                correction1, correction2 = 1 - beta1**step, 1 - beta2**step
                self.history[weight].add(
                    lr * math.sqrt(correction2) / correction1, math.log1p(-lr * decay), math.sqrt(correction2)
                )
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m_rows = m.index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
                v_rows = v.index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
                denominator = (v_rows.sqrt() / math.sqrt(correction2)).add_(self.EPS)
                updated = weight.index_select(0, rows).mul_(1 - lr * decay)
                updated.addcdiv_(m_rows, denominator, value=-lr / correction1)
                weight.index_copy_(0, rows, updated)
                m.index_copy_(0, rows, m_rows)
                v.index_copy_(0, rows, v_rows)
                self.current[weight][rows] = step
                if self.history[weight].steps >= self.MAX_HISTORY:
                    self._flush(weight)

    def state_dict(self) -> dict[str, Any]:
        self.flush()  # every row current: the saved state needs no history
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # Rebuilt at each weight's next step, from its saved step (saved states are flushed: all current).
        self.current, self.history, self._cache = {}, {}, {}


class History:
    """Per step since the last flush, what a row that missed it owes: h_u (the move's scale), the running
    sum of log d_u (AdamW's decay) and sqrt(1 - beta2^u) (for eps), float64, in a buffer that doubles as
    it fills."""

    def __init__(self, device: torch.device) -> None:
        self.steps = 0
        self.buffer = torch.zeros(3, 64, dtype=torch.float64, device=device)  # column 0: the base step

    def add(self, move: float, log_decay: float, root: float) -> None:
        if self.steps + 1 == self.buffer.size(1):
            self.buffer = torch.cat([self.buffer, torch.zeros_like(self.buffer)], dim=1)
        self.steps += 1
        self.buffer[0, self.steps] = move
        self.buffer[1, self.steps] = self.buffer[1, self.steps - 1] + log_decay
        self.buffer[2, self.steps] = root

    def columns(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h, running sum of log d, sqrt(1 - beta2^u)), (S + 1,) each; index i is step base + i."""
        h, log_d, root = self.buffer[:, : self.steps + 1]
        return h, log_d, root


class SplitAdam(torch.optim.Optimizer):
    """One optimizer over two: Adam (or AdamW, decoupled weight decay) for dense gradients, fused where
    asked, and RowAdam for the word vectors of these embeddings (a forward pre-hook on each brings the
    rows it looks up to date). Its param_groups are the two optimizers' own group dicts, so a
    learning-rate schedule (or GradScaler) driving this optimizer drives both. With adam's coupled L2
    penalty the word vectors get none (a penalty gradient on every row would make them dense again);
    AdamW's decoupled decay applies to them exactly."""

    def __init__(
        self,
        groups: list[dict[str, Any]],
        embeddings: Iterable[nn.Embedding],
        lr: float,
        weight_decay: float,
        decoupled: bool,
        fused: bool,
    ) -> None:
        embeddings = list(embeddings)
        rows = {id(embedding.weight) for embedding in embeddings}
        dense_groups, sparse_groups = [], []
        for group in groups:
            extra = {key: value for key, value in group.items() if key != "params"}
            dense = [p for p in group["params"] if id(p) not in rows]
            vectors = [p for p in group["params"] if id(p) in rows]
            if dense:
                dense_groups.append({**extra, "params": dense})
            if vectors:
                sparse_groups.append(
                    {**extra, "params": vectors, "weight_decay": weight_decay if decoupled else 0.0}
                )
        kind = torch.optim.AdamW if decoupled else torch.optim.Adam
        self.dense = (
            kind(dense_groups, lr=lr, weight_decay=weight_decay, fused=fused) if dense_groups else None
        )
        self.sparse = RowAdam(sparse_groups, lr=lr, weight_decay=0.0) if sparse_groups else None
        super().__init__([p for group in groups for p in group["params"]], {"lr": lr})
        self._share_groups()
        # A weak reference: an optimizer dropped (a test's, a finished run's) leaves the model alone.
        me = weakref.ref(self)
        for embedding in embeddings:
            embedding.register_forward_pre_hook(functools.partial(_bring_rows_up_to_date, me))

    def _parts(self) -> list[torch.optim.Optimizer]:
        return [part for part in (self.dense, self.sparse) if part is not None]

    def _share_groups(self) -> None:
        # The same dicts, not copies: a schedule setting group["lr"] here sets it in the part.
        self.param_groups = [group for part in self._parts() for group in part.param_groups]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for part in self._parts():
            part.step()

    def flush(self) -> None:
        """Every word vector as dense Adam would have it now: before the weights are read whole."""
        if self.sparse is not None:
            self.sparse.flush()

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


def _bring_rows_up_to_date(
    optimizer: weakref.ref[SplitAdam], module: nn.Module, args: tuple[Any, ...]
) -> None:
    """Forward pre-hook of a sparse embedding: the rows of the ids about to be looked up (args[0],
    (B, T)) catch up on the steps they missed, so the forward sees what dense Adam would have."""
    owner = optimizer()
    if owner is not None and owner.sparse is not None:
        owner.sparse.catch_up(module.weight, args[0].unique())


def bring_up_to_date(optimizer: torch.optim.Optimizer) -> None:
    """Before the weights are read whole (scoring, saving): a SplitAdam's word vectors brought
    up to date; any other optimizer keeps its weights current anyway."""
    if isinstance(optimizer, SplitAdam):
        optimizer.flush()


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
