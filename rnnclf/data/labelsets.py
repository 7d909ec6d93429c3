"""Multi-label documents (`data.multi_label: true`): a document's labels as a sorted, de-duplicated tuple.

csv/tsv cells (and jsonl/parquet strings) hold labels joined by `data.label_separator`; jsonl and parquet may
hold a list; fastText lines carry every leading `__label__X`. An empty cell or list is a document with none
of the labels (allowed, counted in one warning); an empty label inside a list is an error naming the line.
"""

from __future__ import annotations

from collections.abc import Iterable

from rnnclf.data.source import data_error, log, plural, quote
from rnnclf.errors import RnnclfError

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


def known_labels(labels: list[str], names: list[str], source: str, role: str) -> tuple[list[int], list[int]]:
    """(documents to keep, their label ids): documents whose label the model knows. Warns with counts
    about the rest (they cannot be scored)."""
    index = {label: i for i, label in enumerate(names)}
    keep = [i for i, label in enumerate(labels) if label in index]
    dropped = len(labels) - len(keep)
    if dropped:
        unseen = sorted({label for label in labels if label not in index})
        shown = ", ".join(unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        log.warning(
            "%s: %d %s documents have labels unseen in training (%s); they are left out of the metrics",
            source,
            dropped,
            role,
            shown,
        )
    if not keep:
        raise RnnclfError(f"{source}: none of the {role} labels occur in the training data")
    return keep, [index[labels[i]] for i in keep]


def label_cells(
    label_sets: list[LabelSet], names: list[str], source: str | None = None, role: str = ""
) -> tuple[list[int], list[int]]:
    """(rows, columns) of a multi-label target matrix (N, L): document rows[k] carries names[columns[k]].
    Labels the model does not know are left out (one warning with the count, when `source` is given);
    the document stays. The torch (rnnclf.prepare.label_matrix) and NumPy (the ONNX path) matrices are
    both built from these."""
    index = {label: i for i, label in enumerate(names)}
    rows: list[int] = []
    columns: list[int] = []
    unseen: dict[str, int] = {}
    for row, labels in enumerate(label_sets):
        for label in labels:
            if label in index:
                rows.append(row)
                columns.append(index[label])
            else:
                unseen[label] = unseen.get(label, 0) + 1
    if unseen and source is not None:
        shown = ", ".join(sorted(unseen)[:5]) + (", ..." if len(unseen) > 5 else "")
        log.warning(
            "%s: %d %s labels unseen in training (%s) left out; their documents keep their other labels",
            source,
            sum(unseen.values()),
            role,
            shown,
        )
    return rows, columns
