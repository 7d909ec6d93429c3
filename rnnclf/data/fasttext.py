"""fastText files: lines "__label__<class> text", as fastText's own tools read and write them."""

from __future__ import annotations

from rnnclf.data.labelsets import LabelSet, label_set
from rnnclf.data.source import data_error, log, plural, quote

LABEL_PREFIX = "__label__"


def read_fasttext(text: str, source: str, multi_label: bool = False) -> tuple[list[str], list]:
    """Lines "__label__<class> text". Single-label: only the first label of a multi-label line is kept
    (one warning). multi_label: every leading label, as a sorted tuple (a line may have none)."""
    if multi_label:
        return read_fasttext_sets(text, source)
    texts: list[str] = []
    labels: list[str] = []
    several_labels = 0
    for number, line in enumerate(text.split("\n"), start=1):
        words = line.split(None, 1)
        if not words:
            continue
        if not words[0].startswith(LABEL_PREFIX):
            raise data_error(
                source, f"expected '{LABEL_PREFIX}<class> text', got {quote(line.strip())}", line=number
            )
        label = words[0][len(LABEL_PREFIX) :]
        if not label:
            raise data_error(source, f"empty label ('{LABEL_PREFIX}' with no class name)", line=number)
        rest = words[1] if len(words) > 1 else ""
        if rest.startswith(LABEL_PREFIX):
            several_labels += 1
            rest = drop_leading_labels(rest)
        texts.append(rest.strip())
        labels.append(label)
    if several_labels:
        log.warning(
            "%s: %s with several labels; only the first label of each was kept (single-label classifier; "
            "set data.multi_label: true to keep them all)",
            source,
            plural(several_labels, "line"),
        )
    return texts, labels


def drop_leading_labels(rest: str) -> str:
    while rest.startswith(LABEL_PREFIX):
        words = rest.split(None, 1)
        rest = words[1] if len(words) > 1 else ""
    return rest


def read_fasttext_sets(text: str, source: str) -> tuple[list[str], list[LabelSet]]:
    """Multi-label lines: every leading "__label__X" is a label; a line with none has no label."""
    texts: list[str] = []
    labels: list[LabelSet] = []
    for number, line in enumerate(text.split("\n"), start=1):
        rest = line.strip()
        if not rest:
            continue
        found = []
        while rest.startswith(LABEL_PREFIX):
            words = rest.split(None, 1)
            found.append(words[0][len(LABEL_PREFIX) :])
            rest = words[1] if len(words) > 1 else ""
        texts.append(rest.strip())
        labels.append(label_set(found, source, number, "the line's __label__ prefixes", line.strip()))
    return texts, labels
