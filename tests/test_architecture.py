"""The one-way rule, checked on the import graph (every `import` and `from ... import` in rnnclf/,
function-level and TYPE_CHECKING imports included, read with the standard library's ast):

- cli may import everything; nothing else imports cli (but `python -m rnnclf`, rnnclf/__main__.py);
- training, tuning and inference never import cli; training never imports inference's prediction
  (predict, explain, export, backends, serve), nor does tuning (predict, explain, export);
- models never import data, text or prepare (a model sees tensors of ids, never files or words);
- text and data never import models, training, pretraining, tuning or inference;
- only cli imports rich (the console output);
- the CLI decides no device or thread settings: cli never imports rnnclf.runtime nor calls torch's
  device, thread or float-mode switches.

CONTRIBUTING.md names this file. The checker is tested on a made-up package too, so a rule that could
never fire would be caught.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rnnclf"

# (importer's package, imported module prefix, why): an import from the first into the second is refused.
FORBIDDEN = [
    ("training", "rnnclf.cli", "training never imports cli"),
    ("pretraining", "rnnclf.cli", "pretraining never imports cli"),
    ("tuning", "rnnclf.cli", "tuning never imports cli"),
    ("inference", "rnnclf.cli", "inference never imports cli"),
    ("training", "rnnclf.inference.predict", "training never imports prediction"),
    ("training", "rnnclf.inference.explain", "training never imports prediction"),
    ("training", "rnnclf.inference.export", "training never imports prediction"),
    ("training", "rnnclf.inference.backends", "training never imports prediction"),
    ("training", "rnnclf.inference.serve", "training never imports prediction"),
    ("tuning", "rnnclf.inference.predict", "tuning never imports prediction"),
    ("tuning", "rnnclf.inference.explain", "tuning never imports prediction"),
    ("tuning", "rnnclf.inference.export", "tuning never imports prediction"),
    ("models", "rnnclf.data", "models never import data"),
    ("models", "rnnclf.text", "models never import text"),
    ("models", "rnnclf.prepare", "models never import prepare"),
]
LOWER = ("text", "data")  # the bottom of the data path
UPPER = ("rnnclf.models", "rnnclf.training", "rnnclf.pretraining", "rnnclf.tuning", "rnnclf.inference")
# torch's switches for device, threads and float modes: runtime's job, never the CLI's.
SETTINGS = {
    "set_num_threads",
    "set_num_interop_threads",
    "set_flush_denormal",
    "device",
    "set_default_device",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted: rnnclf.cli.app
    target: str  # what it imports, dotted: rnnclf.training.loop (or rich.console)
    line: int


def module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path) -> list[Import]:
    """Every import in the package under `root`; `from a import b` counts as importing both a and a.b
    (b may be a module)."""
    found = []
    for file in sorted(root.rglob("*.py")):
        module = module_name(root, file)
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append(Import(module, node.module, node.lineno))
                found += [Import(module, f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def package_of(module: str) -> str:
    """rnnclf.training.loop -> training; rnnclf.config -> config."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def settings_calls(root: Path) -> list[str]:
    """`torch.<switch>(...)` calls in cli/: the CLI must leave devices and threads to runtime."""
    found = []
    for file in sorted((root / "cli").rglob("*.py")) if (root / "cli").is_dir() else []:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SETTINGS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                found.append(f"{module_name(root, file)}:{node.lineno} calls torch.{node.func.attr}")
    return found


def violations(root: Path) -> list[str]:
    """Each broken rule as 'importer:line imports target (rule)'; empty when the arrows point one way."""
    found = []
    for each in imports_of(root):
        where = f"{each.module}:{each.line} imports {each.target}"
        package = package_of(each.module)
        if package not in ("cli", "__main__") and within(each.target, "rnnclf.cli"):
            found.append(f"{where} (only the command line imports rnnclf.cli)")
        for importer, prefix, why in FORBIDDEN:
            if package == importer and within(each.target, prefix):
                found.append(f"{where} ({why})")
        if package in LOWER and any(within(each.target, upper) for upper in UPPER):
            found.append(f"{where} ({package} is below models, training and inference)")
        if package != "cli" and within(each.target, "rich"):
            found.append(f"{where} (only cli prints with rich)")
        if package == "cli" and within(each.target, "rnnclf.runtime"):
            found.append(f"{where} (the CLI decides no device or threads: the library calls runtime)")
    return found + settings_calls(root)


def test_the_package_imports_point_one_way() -> None:
    assert imports_of(PACKAGE), "no imports found: the checker is not reading the package"
    assert violations(PACKAGE) == []


def test_every_sub_package_says_what_it_holds_and_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "import" in docstring, f"{init.parent.name}/__init__.py: say what it may import"


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_checker_reports_each_kind_of_upward_import(tmp_path: Path) -> None:
    """A made-up package with one offence per rule: each is reported, and a clean one is not."""
    root = tmp_path / "rnnclf"
    for package in ("cli", "models", "training", "inference", "text", "data"):
        _write(root, f"{package}/__init__.py", '"""may import nothing"""\n')
    _write(root, "cli/app.py", "from rnnclf.training.loop import train\nimport rich\n")
    assert violations(root) == []  # the CLI may import everything, rich included
    _write(
        root, "cli/app.py", "from rnnclf.runtime import prepare_cpu\nimport torch\ntorch.set_num_threads(1)\n"
    )
    _write(root, "models/classifier.py", "def f():\n    from rnnclf.data import read\n")
    _write(root, "training/loop.py", "from rnnclf.inference import predict\nfrom rnnclf.cli import render\n")
    _write(root, "inference/scoring.py", "from rich.console import Console\n")
    _write(root, "text/vocab.py", "import rnnclf.models.classifier\n")
    found = "\n".join(violations(root))
    assert "rnnclf.cli.app:1 imports rnnclf.runtime" in found
    assert "rnnclf.cli.app calls torch.set_num_threads" in found.replace(":3 calls", " calls")
    assert "rnnclf.models.classifier:2 imports rnnclf.data (models never import data)" in found
    assert (
        "rnnclf.training.loop:1 imports rnnclf.inference.predict (training never imports prediction)" in found
    )
    assert "rnnclf.training.loop:2 imports rnnclf.cli (only the command line imports rnnclf.cli)" in found
    assert "rnnclf.inference.scoring:1 imports rich.console (only cli prints with rich)" in found
    assert "rnnclf.text.vocab:1 imports rnnclf.models.classifier" in found
