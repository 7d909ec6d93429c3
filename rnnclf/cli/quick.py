"""The `rnnclf` entry point, with a fast path for the most common cold call: `rnnclf predict "text"...`
(with only --model, --backend, --top-k, --threshold, --json) answered without building the Typer app.

Why: on 2 cores typer (which imports pydantic) and rich cost ~0.3-0.7 s of imports before a word is
read, more than scoring one document with ONNX Runtime. The fast path parses those few flags itself,
calls the same library function as the `predict` command (rnnclf.inference.backends.load_predictor)
and prints the same lines; anything else (another command or flag, --help, a value it cannot parse,
a text starting with '-') goes to the full app in rnnclf.cli.app, which prints its usual messages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

NO_LABEL = "(no label)"  # a multi-label prediction where no label reaches its threshold
FLAGS = {
    "--model": "model",
    "-m": "model",
    "--backend": "backend",
    "--top-k": "top_k",
    "--threshold": "threshold",
}


def main() -> None:
    arguments = sys.argv[1:]
    parsed = _parse(arguments) if arguments[:1] == ["predict"] else None
    if parsed is None or int(os.environ.get("WORLD_SIZE", "1") or "1") > 1:
        from rnnclf.cli.app import main as full

        full()
        return
    sys.exit(_predict(**parsed))


def _parse(arguments: list[str]) -> dict[str, Any] | None:
    """predict's simple form -> keyword arguments of _predict; None: let the full app handle it."""
    options: dict[str, Any] = {"texts": [], "model": None, "backend": "auto", "top_k": None}
    options |= {"threshold": None, "as_json": False}
    rest = iter(arguments[1:])
    for argument in rest:
        name, _, value = argument.partition("=") if argument.startswith("--") else (argument, "", "")
        if argument == "--json":
            options["as_json"] = True
        elif name in FLAGS:
            value = value or next(rest, "")
            if not value or value.startswith("-"):
                return None
            options[FLAGS[name]] = value
        elif argument.startswith("-"):
            return None  # --help, --explain, --file, ...: the full app
        else:
            options["texts"].append(argument)
    try:
        if options["top_k"] is not None:
            options["top_k"] = int(options["top_k"])
        if options["threshold"] is not None:
            options["threshold"] = float(options["threshold"])
    except ValueError:
        return None
    if not options["texts"] or (options["top_k"] is not None and options["top_k"] < 1):
        return None
    if options["threshold"] is not None and not 0.0 < options["threshold"] < 1.0:
        return None
    return options


def _predict(
    texts: list[str],
    model: str | None,
    backend: str,
    top_k: int | None,
    threshold: float | None,
    as_json: bool,
) -> int:
    """What the `predict` command does for TEXT arguments; the exit code."""
    from rnnclf.errors import RnnclfError
    from rnnclf.inference.backends import load_predictor

    _route_warnings()
    try:
        predictor = load_predictor(model, backend, threshold=threshold)
        lines = [prediction_line(result, top_k, as_json) for result in predictor.predict(texts, top_k=top_k)]
    except RnnclfError as err:
        sys.stderr.write(f"error: {' '.join(str(err).split())}\n")
        return 2
    try:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early: end quietly, as the full command does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return 0


def prediction_line(result: Any, top_k: int | None, as_json: bool) -> str:
    """One document's line of `rnnclf predict`: a JSON object, the chosen labels (multi-label) or
    'label<TAB>p' pairs (render.prediction prints the same, plus explanations)."""
    if as_json:
        return json.dumps(result.to_dict(), ensure_ascii=False)
    if result.labels is not None:  # multi-label: every chosen label with its probability
        chosen = [f"{label}:{result.probabilities[label]:.4f}" for label in result.labels]
        return " ".join(chosen) if chosen else NO_LABEL
    shown = list(result.probabilities.items())[: top_k or 1]
    return "\t".join(f"{label}\t{p:.4f}" for label, p in shown)


class _Warnings(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"warning: {' '.join(record.getMessage().split())}\n")


def _route_warnings() -> None:
    """The library's logged warnings as 'warning: ...' lines on stderr, as render.route_warnings does."""
    logger = logging.getLogger("rnnclf")
    logger.addHandler(_Warnings(level=logging.WARNING))
    logger.propagate = False
