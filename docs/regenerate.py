#!/usr/bin/env python3
"""Regenerate every sample output and picture in docs/ from the current code.

    python docs/regenerate.py            # from the project root, with rnnclf[plots,onnx,tensorboard]

Trains TREC (configs/trec.yaml, 6 epochs) in a scratch folder, once with the linear add-on and once
without, runs the commands each docs page shows, and rewrites the fenced block that follows each
`<!-- sample: NAME -->` marker with what the command printed. Pictures go to docs/images/. A few
minutes on a 2-core CPU. Timings, dates and run-folder names differ from run to run; nothing else
should, and `git diff docs/` shows what changed.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
CONFIG = ROOT / "configs" / "trec.yaml"
EPOCHS = "train.epochs=6"
QUESTIONS = [
    "What is the capital of Peru ?",
    "Who wrote Hamlet ?",
    "How many miles is it from London to Paris ?",
]
# A small space, so that a 3-minute tune holds a few complete trials even on a busy 2-core machine.
TUNE_SPACE = (
    "{train.lr: {low: 0.001, high: 0.01, log: true}, model.hidden_dim: [32, 64], "
    "model.embedding_dim: [32, 64], train.epochs: [2, 4], text.max_length: [32, 64]}"
)
MARKER = re.compile(r"(<!-- sample: ([\w-]+) -->\n```[^\n]*\n)(.*?)(```)", re.DOTALL)


def rnnclf(*args: str, cwd: Path) -> str:
    """stdout (and stderr) of `rnnclf ARGS` in `cwd`, as a user sees it in a 100-column pipe."""
    env = dict(os.environ, COLUMNS="100", TERM="dumb")
    done = subprocess.run(
        [sys.executable, "-m", "rnnclf", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"rnnclf {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout + done.stderr


def from_line(output: str, prefix: str) -> str:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    return "\n".join(lines[start:]) + "\n"


def scalars(run: Path) -> str:
    """The TensorBoard scalars of a run, one line per tag: 'tag  epoch:value ...'."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    width = max(map(len, tags))
    lines = []
    for tag in tags:
        points = "  ".join(f"{event.step}:{event.value:.4g}" for event in events.Scalars(tag))
        lines.append(f"{tag:<{width}}  {points}")
    return "\n".join(lines) + "\n"


def explain_svg(run: Path, out: Path) -> None:
    """`rnnclf predict --explain` as a terminal shows it (colours), recorded to an SVG."""
    from rich.console import Console
    from rich.text import Text

    from rnnclf.cli.render import highlighted
    from rnnclf.inference.explain import explain_one, summary
    from rnnclf.inference.predict import Predictor

    predictor = Predictor.from_checkpoint(run / "best.pt")
    # As the CLI prints it (no number highlighting), recorded only: nothing goes to this script's stdout.
    console = Console(record=True, width=100, force_terminal=True, highlight=False, file=io.StringIO())
    for result in predictor.predict(QUESTIONS):
        explanation = explain_one(predictor, result.text)
        console.print(f"{result.label}\t{result.probabilities[result.label]:.4f}", markup=False)
        console.print(f"  why {explanation.label}: {summary(explanation)}", markup=False)
        console.print(Text("  ") + highlighted(explanation))
    console.save_svg(str(out), title="rnnclf predict --explain")


def onnx_example(scratch: Path) -> str:
    """Run the onnxruntime snippet of docs/export.md in the scratch folder (where export/ is)."""
    page = (DOCS / "export.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(import json.*?)```", page, re.DOTALL)
    if snippet is None:
        raise SystemExit("docs/export.md: the onnxruntime example (```python import json ...) is missing")
    done = subprocess.run(
        [sys.executable, "-c", snippet.group(1)], cwd=scratch, capture_output=True, text=True, check=True
    )
    return done.stdout


def tune_sample(scratch: Path) -> str:
    """`rnnclf tune` (docs/tuning.md): init-config's defaults on configs/trec.yaml's data, a short budget;
    its final lines (the per-trial lines before them vary with the machine's speed)."""
    import yaml

    from rnnclf.config import default_yaml

    raw = yaml.safe_load(default_yaml())
    trec = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["data"]
    raw["data"].update({key: str((CONFIG.parent / trec[key]).resolve()) for key in ("train", "test")})
    config = scratch / "trec-default.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    output = rnnclf("tune", str(config), "--budget", "3m", "--quiet", "--run-dir", "runs/tune-trec",
                    "--set", f"tune.space={TUNE_SPACE}", cwd=scratch)  # fmt: skip
    return from_line(output, next(line for line in output.splitlines() if " trials (" in line))


def replace_samples(samples: dict[str, str], scratch: Path) -> list[str]:
    """Rewrite each marked block in docs/*.md; returns the sample names found in no page."""
    used = set()
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")

        def fill(match: re.Match, page: Path = page) -> str:
            name = match.group(2)
            if name not in samples:
                raise SystemExit(f"{page.name}: no sample named {name!r}")
            used.add(name)
            shown = samples[name].replace(str(scratch) + "/", "").replace(str(scratch), ".")
            shown = shown.replace(str(ROOT) + "/", "")  # the project's files as paths from its root
            return match.group(1) + shown.rstrip("\n") + "\n" + match.group(4)

        page.write_text(MARKER.sub(fill, text), encoding="utf-8")
    return sorted(set(samples) - used)


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="rnnclf-docs-"))
    try:
        samples = {}
        # The linear add-on first, so that runs/LATEST ends at the main run.
        linear = rnnclf("train", str(CONFIG), "--set", EPOCHS, "--set", "linear.ngrams=2", cwd=scratch)
        samples["train-linear"] = from_line(linear, "recurrent model")
        trained = rnnclf(
            "train", str(CONFIG), "--set", EPOCHS, "--set", "output.tensorboard=true", cwd=scratch
        )
        samples["train"] = from_line(trained, "run: ")  # from the header on
        run = Path((scratch / "runs" / "LATEST").read_text(encoding="utf-8").strip())
        samples["eval-plot"] = rnnclf("eval", "--plot", "eval_confusion.png", cwd=scratch)
        samples["runs"] = rnnclf("runs", cwd=scratch)
        samples["runs-json"] = json.dumps(json.loads(rnnclf("runs", "--json", cwd=scratch)), indent=2)
        samples["info"] = rnnclf("info", cwd=scratch)
        samples["explain"] = rnnclf("predict", "--explain", *QUESTIONS, cwd=scratch)
        explained = rnnclf("predict", "--explain", "--json", QUESTIONS[1], cwd=scratch)
        samples["explain-json"] = json.dumps(json.loads(explained), indent=2, ensure_ascii=False)
        samples["tensorboard-scalars"] = scalars(run)
        samples["help-export"] = rnnclf("export", "--help", cwd=scratch)
        (scratch / "export").mkdir()
        samples["export"] = "".join(
            f"$ rnnclf export --format {kind} --out export/trec.{suffix}\n"
            + rnnclf("export", "--format", kind, "--out", f"export/trec.{suffix}", cwd=scratch)
            for kind, suffix in (("onnx", "onnx"), ("torchscript", "pt"))
        )
        samples["onnxruntime-example"] = onnx_example(scratch)
        samples["tune"] = tune_sample(scratch)
        unused = replace_samples(samples, scratch)
        IMAGES.mkdir(exist_ok=True)
        shutil.copy(run / "learning_curves.png", IMAGES / "learning_curves.png")
        shutil.copy(run / "confusion_matrix.png", IMAGES / "confusion_matrix.png")
        shutil.copy(scratch / "eval_confusion.png", IMAGES / "eval_confusion_matrix.png")
        explain_svg(run, IMAGES / "predict_explain.svg")
        print(f"regenerated {len(samples) - len(unused)} samples and 4 pictures in docs/")
        if unused:
            print(f"samples no page shows: {', '.join(unused)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
