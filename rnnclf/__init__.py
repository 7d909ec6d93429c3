"""rnnclf: train, evaluate and serve recurrent document classifiers from one YAML file.

The public API, stable across internal moves (each name is imported on first use, so `import rnnclf`
stays cheap and a torch-free path stays torch-free):

    load_config(path, overrides) -> Config      rnnclf.config
    train(config, run_dir) -> metrics           rnnclf.training
    pretrain(config, run_dir) -> metrics        rnnclf.pretraining
    tune(config, tune_dir, budget) -> outcome   rnnclf.tuning (extra: tune)
    Predictor.from_checkpoint(path).predict()   rnnclf.inference
    get_tokenizer, build_vocab_from_iterator, Vocab   rnnclf.text (torchtext-conformant)
    RnnclfError                                 rnnclf.errors

The layout, arrows pointing down (tests/test_architecture.py checks them):

    cli -> training, pretraining, inference -> models, prepare -> text, data -> config, runtime
"""

from __future__ import annotations

import warnings
from typing import Any

# torch warns at import when NumPy is absent; rnnclf never needs NumPy, so the warning is noise.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.2.0"

__all__ = [
    "Config",
    "Predictor",
    "RnnclfError",
    "Vocab",
    "__version__",
    "build_vocab_from_iterator",
    "get_tokenizer",
    "load_config",
    "pretrain",
    "train",
    "tune",
]


def __getattr__(name: str) -> Any:
    # Each name is imported on first use; later lookups find it in globals() and skip this function.
    if name in ("Config", "load_config"):
        from rnnclf.config import Config, load

        value: Any = Config if name == "Config" else load
    elif name == "RnnclfError":
        from rnnclf.errors import RnnclfError as value
    elif name == "train":
        from rnnclf.training.loop import train as value
    elif name == "tune":
        from rnnclf.tuning.study import tune as value
    elif name == "pretrain":
        from rnnclf.pretraining.loop import pretrain as value
    elif name == "Predictor":
        from rnnclf.inference.predict import Predictor as value
    elif name == "get_tokenizer":
        from rnnclf.text.tokenizers import get_tokenizer as value
    elif name in ("Vocab", "build_vocab_from_iterator"):
        from rnnclf.text import vocab

        value = getattr(vocab, name)
    else:
        raise AttributeError(f"module 'rnnclf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
