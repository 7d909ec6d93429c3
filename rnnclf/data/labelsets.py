"""Multi-label documents (`data.multi_label: true`): a document's labels as a sorted, de-duplicated tuple.

csv/tsv cells (and jsonl/parquet strings) hold labels joined by `data.label_separator`; jsonl and parquet may
hold a list; fastText lines carry every leading `__label__X`. An empty cell or list is a document with none
of the labels (allowed, counted in one warning); an empty label inside a list is an error naming the line.
"""

from __future__ import annotations

from collections.abc import Iterable

from rnnclf.data.source import data_error, log, plural, quote

LabelSet = tuple[str, ...]


def label_set(items: Iterable[str], source: str, line: int | None, where: str, shown: object) -> LabelSet:
    """Strip each label; an empty one is an error ("line N: empty label in the list ..."); sorted, unique."""
    labels = [item.strip() for item in items]
    if any(not label for label in labels):
        raise data_error(source, f"empty label in the list {quote(shown)} in {where}", line=line)
    return tuple(sorted(set(labels)))


def split_labels(cell: str, separator: str, source: str, line: int | None, where: str) -> LabelSet:
    """'sports, politics' -> ('politics', 'sports'); '' -> () (none of the labels)."""
    if not cell.strip():
        return ()
    return label_set(cell.split(separator), source, line, where, cell)


def warn_unlabelled(labels: list[LabelSet], source: str) -> None:
    """One warning with the count of documents that carry no label (they mean "none of them")."""
    none = sum(1 for labels_of in labels if not labels_of)
    if none:
        log.warning(
            "%s: %s without any label kept (in multi-label data: none of the labels applies)",
            source,
            plural(none, "document"),
        )


def warn_if_joined(labels: list[str], separator: str, source: str) -> None:
    """Single-label data whose labels mostly hold the separator look multi-label: say how to switch."""
    joined = sum(1 for label in labels if separator in label)
    if labels and joined * 2 > len(labels):
        log.warning(
            "%s: %s of %s labels contain %s, as multi-label data would; each is read as one class. "
            "For several labels per document set data.multi_label: true (data.label_separator: %s)",
            source,
            f"{joined:,}",
            f"{len(labels):,}",
            quote(separator),
            quote(separator),
        )
