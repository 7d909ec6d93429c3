"""Vocab and build_vocab_from_iterator, torchtext-conformant.

:func:`build_vocab_from_iterator` returns exactly the ``itos`` that torchtext 0.18's function of the
same name builds (``torchtext/vocab/vocab_factory.py``); :class:`Vocab` mirrors the methods of
``torchtext.vocab.Vocab`` in plain Python.  Where torchtext raises ``RuntimeError`` (C++
``TORCH_CHECK``) or ``AssertionError``, this module raises :class:`~rnnclf.errors.RnnclfError` with
the same meaning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import repeat
from typing import Any

from rnnclf.errors import RnnclfError

__all__ = ["Vocab", "build_vocab_from_iterator"]


def _check_index_arg(index: Any, what: str) -> None:
    if isinstance(index, bool) or not isinstance(index, int):
        raise RnnclfError(f"{what} must be an integer, got {index!r}")


class Vocab:
    """A token <-> index mapping built from a list of unique tokens (``itos``).

    Mirrors ``torchtext.vocab.Vocab``: ``vocab[token]`` / ``vocab(tokens)`` look tokens up and fall back
    to the default index (if one is set) for unknown tokens; without a default index an unknown token
    is an error.  Like torchtext, the default index is not range-checked and is not shifted by
    :meth:`insert_token`.
    """

    __slots__ = ("_default", "_itos", "_stoi")

    def __init__(self, itos: Iterable[str], default_index: int | None = None) -> None:
        itos = list(itos)
        stoi: dict[str, int] = {}
        for i, token in enumerate(itos):
            if not isinstance(token, str):
                raise RnnclfError(f"vocab tokens must be strings, got {token!r} at index {i}")
            if token in stoi:
                raise RnnclfError(f"duplicate token {token!r} in vocab (indices {stoi[token]} and {i})")
            stoi[token] = i
        self._itos = itos
        self._stoi = stoi
        self._default: int | None = None
        self.set_default_index(default_index)

    # -- lookups -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        index = self._stoi.get(token)
        if index is not None:
            return index
        if not isinstance(token, str):
            # Also stops Python's legacy iteration protocol (vocab[0], vocab[1], ...) from looping.
            raise TypeError(f"Vocab keys are tokens (str), got {type(token).__name__}")
        if self._default is None:
            raise RnnclfError(f"token {token!r} not found and default index is not set")
        return self._default

    __iter__ = None  # not iterable, like torchtext's Vocab; use get_itos()

    def lookup_indices(self, tokens: Iterable[str]) -> list[int]:
        """Indices of ``tokens``; unknown tokens map to the default index (error if it is not set)."""
        if isinstance(tokens, str):  # vocab("word") would silently look up characters
            raise TypeError("lookup_indices expects a list of tokens, not a single string")
        default = self._default
        if default is not None:
            # C-level loop: ~15% faster than [get(t, default) for t in tokens]
            return list(map(self._stoi.get, tokens, repeat(default)))
        stoi = self._stoi
        try:
            return [stoi[t] for t in tokens]
        except KeyError as e:
            raise RnnclfError(f"token {e.args[0]!r} not found and default index is not set") from None

    def __call__(self, tokens: Iterable[str]) -> list[int]:
        """Same as :meth:`lookup_indices` (as torchtext's ``Vocab.__call__``)."""
        return self.lookup_indices(tokens)

    def lookup_token(self, index: int) -> str:
        """Token at ``index``; ``0 <= index < len(self)`` (no negative indexing, as torchtext)."""
        _check_index_arg(index, "index")
        if not 0 <= index < len(self._itos):
            raise RnnclfError(f"index {index} is out of bounds for vocab of size {len(self._itos)}")
        return self._itos[index]

    def lookup_tokens(self, indices: Iterable[int]) -> list[str]:
        """Tokens at ``indices`` (each checked like :meth:`lookup_token`)."""
        return [self.lookup_token(i) for i in indices]

    def get_itos(self) -> list[str]:
        """A copy of the index -> token list."""
        return list(self._itos)

    def get_stoi(self) -> dict[str, int]:
        """A copy of the token -> index dict."""
        return dict(self._stoi)

    # -- default index -----------------------------------------------------------------------------
    def set_default_index(self, index: int | None) -> None:
        """Index returned for unknown tokens; ``None`` makes unknown tokens an error."""
        if index is not None:
            _check_index_arg(index, "default index")
        self._default = index

    def get_default_index(self) -> int | None:
        return self._default

    # -- editing -----------------------------------------------------------------------------------
    def append_token(self, token: str) -> None:
        """Add ``token`` at the end; error if it is already present."""
        self.insert_token(token, len(self._itos))

    def insert_token(self, token: str, index: int) -> None:
        """Insert ``token`` at ``index`` (``0 <= index <= len(self)``), shifting later tokens up by one."""
        if not isinstance(token, str):
            raise RnnclfError(f"vocab tokens must be strings, got {token!r}")
        _check_index_arg(index, "index")
        if not 0 <= index <= len(self._itos):
            raise RnnclfError(f"index {index} is out of bounds for vocab of size {len(self._itos)}")
        if token in self._stoi:
            raise RnnclfError(f"token {token!r} already exists in the vocab with index {self._stoi[token]}")
        self._itos.insert(index, token)
        stoi = self._stoi
        for i in range(index, len(self._itos)):
            stoi[self._itos[i]] = i

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-typed form for checkpoints: ``{"itos": [...], "default_index": int | None}``."""
        return {"itos": list(self._itos), "default_index": self._default}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocab:
        """Inverse of :meth:`to_dict`; ``default_index`` may be omitted (``None``)."""
        if not isinstance(d, Mapping):
            raise RnnclfError(
                f"vocab must be a mapping with keys 'itos' and 'default_index', got {type(d).__name__}"
            )
        unknown = sorted(str(k) for k in d if k not in ("itos", "default_index"))
        if unknown:
            raise RnnclfError(f"unknown vocab key(s) {', '.join(unknown)}; allowed: itos, default_index")
        if "itos" not in d:
            raise RnnclfError("vocab is missing key 'itos'")
        itos = d["itos"]
        if not isinstance(itos, (list, tuple)):
            raise RnnclfError(f"vocab 'itos' must be a list of strings, got {type(itos).__name__}")
        return cls(itos, d.get("default_index"))

    # -- misc --------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._itos == other._itos and self._default == other._default

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._itos[:5])
        more = ", ..." if len(self._itos) > 5 else ""
        return f"Vocab(size={len(self._itos)}, default_index={self._default}, itos=[{head}{more}])"


def build_vocab_from_iterator(
    iterator: Iterable[Iterable[str]],
    min_freq: int = 1,
    specials: list[str] | None = None,
    special_first: bool = True,
    max_tokens: int | None = None,
) -> Vocab:
    """Build a :class:`Vocab` exactly as torchtext 0.18's ``build_vocab_from_iterator``.

    Tokens are counted over all of ``iterator`` (each item is fed to ``Counter.update``) and ordered by
    descending count, ties by code-point order of the token.  With ``max_tokens`` (which must exceed
    ``len(specials)``) only the first ``max_tokens - len(specials)`` of that order are considered;
    then specials are removed from it, tokens seen fewer than ``min_freq`` times are dropped, and
    ``specials`` (in the given order) are put first or last.  A special that occurs in the corpus still
    uses up one of the ``max_tokens`` slots, so the result can be shorter than ``max_tokens``.
    The default index is not set (as in torchtext).
    """
    counter: Counter[str] = Counter()
    for tokens in iterator:
        counter.update(tokens)
    return vocab_from_counts(counter, min_freq, specials, special_first, max_tokens)


def vocab_from_counts(
    counter: Mapping[str, int],
    min_freq: int = 1,
    specials: list[str] | None = None,
    special_first: bool = True,
    max_tokens: int | None = None,
) -> Vocab:
    """The torchtext ordering rule of :func:`build_vocab_from_iterator`, from token counts already made
    (rnnclf's preprocessing counts in parallel and hands the merged counts here)."""
    for token in counter:
        if not isinstance(token, str):
            raise RnnclfError(f"tokens must be strings, got {token!r}")

    specials = list(specials) if specials else []
    seen: set[str] = set()
    for token in specials:
        if not isinstance(token, str):
            raise RnnclfError(f"special tokens must be strings, got {token!r}")
        if token in seen:
            raise RnnclfError(f"duplicate special token {token!r}")
        seen.add(token)

    ordered = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    if max_tokens is not None:
        _check_index_arg(max_tokens, "max_tokens")
        if not len(specials) < max_tokens:
            raise RnnclfError(
                f"max_tokens ({max_tokens}) must be greater than the number of specials ({len(specials)}), "
                "or the vocab would hold only special tokens"
            )
        ordered = ordered[: max_tokens - len(specials)]

    tokens_out = [tok for tok, freq in ordered if freq >= min_freq and tok not in seen]
    itos = specials + tokens_out if special_first else tokens_out + specials
    return Vocab(itos)
