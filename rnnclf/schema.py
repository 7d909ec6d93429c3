"""The config schema: every section and key, with its default, its allowed values and a one-line
description (`rnnclf init-config` prints both, so the printed file is the documentation of the format).
Add-ons (ensemble, linear) are their own sections, off by default. Loading and validating a YAML file
against this schema is rnnclf.config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    # extra="forbid": a typo in a key is an error, never a silently ignored setting.
    # allow_inf_nan=False: lr = .inf or .nan is a mistake, not a setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(Section):
    train: str = Field(
        "data/train.csv",
        description="training data (relative paths: from this file's folder), or a corpus name such as "
        "imdb, fetched on first use (rnnclf data list)",
    )
    valid: str | None = Field(None, description="validation data; null: split off valid_fraction of train")
    test: str | None = Field(None, description="test data, scored once at the end; null: none")
    format: Literal["auto", "csv", "tsv", "jsonl", "fasttext", "folder", "parquet"] = Field(
        "auto",
        description="auto picks by extension (.csv .tsv .jsonl .txt .parquet) or folder-per-class layout",
    )
    text_column: str = Field("text", description="csv/tsv/jsonl/parquet field holding the document")
    label_column: str = Field("label", description="csv/tsv/jsonl/parquet field holding the class name")
    valid_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="stratified share of train held out when valid is null"
    )
    multi_label: bool = Field(
        False,
        description="several labels per document (sigmoid per label, thresholds chosen on validation); "
        "csv/tsv: labels joined by label_separator, jsonl: a list, fasttext: every __label__",
    )
    label_separator: str = Field(
        ",",
        min_length=1,
        description="multi-label csv/tsv (and jsonl/parquet strings): joins a document's labels",
    )
    unlabeled: str | list[str] | None = Field(
        None,
        description="texts without labels for language-model pretraining (pretrain.epochs): a file or a "
        "list; .txt = one document per line, csv/tsv/jsonl/parquet read text_column; null: none",
    )


class TextConfig(Section):
    tokenizer: Literal["basic_english", "whitespace", "char"] = Field(
        "basic_english", description="basic_english (torchtext's), whitespace, or char (character-level)"
    )
    min_freq: int = Field(2, ge=1, description="drop tokens seen fewer times in train")
    max_tokens: int | None = Field(
        50000, ge=3, description="vocabulary size cap, specials included; null: no cap"
    )
    max_length: int = Field(400, ge=1, description="tokens kept per document (longer ones are truncated)")
    truncate: Literal["head", "tail", "head_tail"] = Field(
        "head",
        description="what a long document keeps: head (first tokens), tail (last), head_tail (1/4 + end)",
    )


class ModelConfig(Section):
    cell: Literal["rnn", "gru", "lstm"] = Field("lstm", description="recurrent cell: rnn (Elman), gru, lstm")
    embedding_dim: int = Field(128, ge=1, description="word vector size")
    hidden_dim: int = Field(128, ge=1, description="recurrent state size per direction")
    num_layers: int = Field(1, ge=1, description="stacked recurrent layers")
    bidirectional: bool = Field(True, description="also read each document right to left")
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="dropout between layers and before the output")
    embedding_dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout on the word vectors")
    word_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of training tokens replaced by <unk> (teaches unseen words)"
    )
    variational_dropout: bool = Field(
        False,
        description="one dropout mask per document, shared by all its words (AWD-LSTM's locked dropout), "
        "for embedding_dropout and the dropout between layers; false: a new mask per word",
    )
    weight_drop: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="DropConnect on the recurrent (hidden-to-hidden) weights while training (AWD-LSTM), "
        "one mask per batch. 0: off",
    )
    pooling: Literal["last", "mean", "max", "attention", "concat"] = Field(
        "max",
        description="how the states over time become one vector: last, mean, max, attention, or concat "
        "(max, mean and last side by side, as ULMFiT)",
    )
    pretrained_vectors: str | None = Field(
        None,
        description="GloVe/word2vec text file (.gz ok) to initialise matching words, or a name such as "
        "glove.6B.100d, fetched on first use (rnnclf data list); null: none",
    )
    freeze_embeddings: bool = Field(False, description="keep the word vectors fixed during training")
    init_from: str | None = Field(
        None,
        description="start the embedding and recurrent layers from a language model (rnnclf pretrain's "
        "lm.pt, or its run folder); its vocabulary comes with it. null: random start",
    )
    init_from_overlap: Literal["refuse", "allow"] = Field(
        "refuse",
        description="refuse: stop when validation or test documents were in the language model's "
        "training text (model.init_from, or data.unlabeled naming data.valid or data.test), which biases "
        "every choice made on validation; allow: go on, and record the counts in metrics.json",
    )


class EnsembleConfig(Section):
    members: int = Field(
        1,
        ge=1,
        le=16,
        description="add-on: train this many recurrent models side by side and average their probabilities "
        "(each member's score is reported); costs members x the training time and model size. 1: off",
    )


class LinearConfig(Section):
    ngrams: int = Field(
        0,
        ge=0,
        le=5,
        description="add-on: blend the recurrent model with a logistic regression on exact word 1..n-grams "
        "(naive-Bayes scaled, NBSVM); its share is chosen on validation data (0 = recurrent alone). "
        "Fitting takes seconds, up to ~2 GB of memory on 25k long documents. 0: off",
    )
    c: float = Field(1.0, gt=0.0, description="inverse strength of its L2 penalty (as liblinear's C)")


class PretrainConfig(Section):
    epochs: int = Field(
        0,
        ge=0,
        description="passes of language-model pretraining on the training texts (+ data.unlabeled) before "
        "the classifier trains from it, in the same run (rnnclf pretrain runs this stage alone, 3 "
        "passes when this is 0). 0: off",
    )
    batch_size: int = Field(64, ge=1, description="text windows (pretrain.window) per language-model step")
    window: int = Field(
        70,
        ge=0,
        description="words per training sequence: documents are cut into windows of this many words, so an "
        "epoch takes many more (smaller) steps; 0: whole documents",
    )
    lr: float = Field(0.003, gt=0.0, description="peak learning rate of the language model (Adam)")
    samples: int = Field(
        1024,
        ge=0,
        description="words drawn per step for the sampled softmax (fast on CPU); 0, or at least the "
        "vocabulary's size: the full softmax",
    )


class TrainConfig(Section):
    epochs: int = Field(10, ge=1, description="passes over the training data (early stopping may end sooner)")
    batch_size: int = Field(64, ge=1, description="documents per step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adam", description="adam, adamw or sgd (momentum 0.9)"
    )
    lr: float = Field(0.002, gt=0.0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 penalty (decoupled for adamw)")
    schedule: Literal["constant", "cosine", "linear"] = Field(
        "cosine", description="learning rate after warmup: constant, cosine or linear decay to 0"
    )
    warmup: float = Field(0.05, ge=0.0, lt=1.0, description="share of all steps spent warming up the lr")
    layer_lr_decay: float = Field(
        1.0,
        ge=1.0,
        description="discriminative learning rates: each layer below the output learns this factor more "
        "slowly than the one above it (ULMFiT: 2.6; useful with model.init_from). 1: one rate",
    )
    gradual_unfreezing: bool = Field(
        False,
        description="epoch 1 trains only the output layer, each later epoch one more layer from the top, "
        "the word vectors last (ULMFiT; useful with model.init_from)",
    )
    clip_grad_norm: float | None = Field(1.0, gt=0.0, description="clip the gradient norm; null: off")
    adversarial: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="adversarial training (Miyato et al. 2017): each step also learns from its batch with "
        "every document's word vectors moved the way that raises the loss most, by this share of their own "
        "L2 norm over the document; a regulariser for small corpora, about 2x the step's time (e.g. 0.05). "
        "0: off",
    )
    sparse_embedding: Literal["auto"] | bool = Field(
        "auto",
        description="word vectors learn from sparse gradients (only the rows of each batch's words), stepped "
        "as dense Adam/AdamW would step them: faster steps for large vocabularies; adam's L2 penalty "
        "skips the word vectors (adamw's decay does not); true needs adam/adamw, one process, no ema; "
        "auto: on where the result is dense Adam's (adamw, or adam without weight_decay), on a CPU, "
        "from 1M word-vector weights",
    )
    patience: int | None = Field(
        3, ge=1, description="stop after this many epochs without improvement; null: never"
    )
    monitor: Literal["auto", "valid_loss", "valid_accuracy", "valid_macro_f1", "valid_micro_f1"] = Field(
        "auto",
        description="metric that picks best.pt and drives early stopping; auto: valid_accuracy, or "
        "valid_micro_f1 with data.multi_label (multi-label: valid_accuracy is subset accuracy)",
    )
    class_weights: Literal["none", "auto"] | list[float] = Field(
        "none",
        description="none, auto (inverse class frequency; multi-label: per-label positive weight "
        "negatives/positives, at most 10) or one weight per label (sorted names)",
    )
    thresholds: Literal["global", "per_label"] | float = Field(
        "global",
        description="multi-label decision thresholds: global (one, chosen on validation for micro-F1), "
        "per_label (each label's chosen on validation for its F1), or a fixed number in (0, 1)",
    )
    ema: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="add-on: evaluate and save a moving average of the weights, this decay per step "
        "(e.g. 0.999); costs one more copy of the weights in memory and in last.pt. null: off",
    )
    baseline: bool = Field(
        True,
        description="also fit a linear baseline (NB logistic regression, word 1-2-grams; seconds) and report "
        "its validation accuracy beside the recurrent model's; not saved. Skipped above 8M training tokens",
    )
    seed: int = Field(13, description="same seed, same data: same result on CPU")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto takes cuda when available")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="fp32; bf16 (fast on CPUs with AMX and on GPUs; refused where the CPU has no bf16 LSTM "
        "kernel); fp16 (CUDA only); auto: bf16 where it runs fast, else fp32",
    )

    @field_validator("thresholds")
    @classmethod
    def _threshold_inside(cls, value: Any) -> Any:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("a fixed threshold must lie strictly between 0 and 1")
        return value

    @field_validator("sparse_embedding", mode="before")
    @classmethod
    def _true_false_or_auto(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError("expected true, false or auto")

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(w <= 0 for w in value)):
            raise ValueError("class weights must be a non-empty list of positive numbers")
        return value


class OutputConfig(Section):
    run_dir: str | None = Field(
        None,
        description="where checkpoints and metrics go (relative: to the working directory); "
        "null: runs/<config name>-<date>-<time>",
    )
    plots: bool = Field(
        True,
        description="draw learning_curves.png and confusion_matrix.png in run_dir at the end "
        "(needs pip install 'rnnclf[plots]'; without it, a one-line note)",
    )
    keep_last: bool = Field(
        False,
        description="keep last.pt once a run has finished (what --resume with a larger train.epochs needs; "
        "with adam about 3x best.pt's size); false: a finished run keeps best.pt only",
    )
    tensorboard: bool = Field(
        False,
        description="also log each epoch's metrics to run_dir/tensorboard "
        "(needs pip install 'rnnclf[tensorboard]'; metrics.jsonl stays the record)",
    )


def parse_duration(value: str | int | float) -> float:
    """'300', 300, '90s', '10m', '1.5h' -> seconds (> 0). A ValueError says what is allowed."""
    text = str(value).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise ValueError("expected a duration such as 300, 90s, 10m or 1h") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("a duration must be a positive number of seconds, minutes (m) or hours (h)")
    return seconds


class TuneConfig(Section):
    budget: str | int | None = Field(
        "10m",
        description="rnnclf tune: wall time of the whole search (300, 10m, 1h), preparation included; "
        "null: no limit (then set trials)",
    )
    trials: int | None = Field(None, ge=1, description="rnnclf tune: stop after this many trials; null: none")
    metric: Literal["auto", "valid_loss", "valid_accuracy", "valid_macro_f1", "valid_micro_f1"] = Field(
        "auto", description="rnnclf tune: the validation score chosen on; auto: train.monitor"
    )
    space: dict[str, Any] | None = Field(
        None,
        description="rnnclf tune: config keys to search, each [low, high], {low, high, log, step} or a "
        "list of choices; null: the default space (docs/tuning.md)",
    )
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="rnnclf tune: stop unpromising trials early on their epoch scores"
    )
    seed: int = Field(0, description="rnnclf tune: the sampler's seed (same seed, --jobs 1: same trials)")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="rnnclf tune: the precision trials train in (best.yaml keeps it); auto: "
        "train.precision where the config sets it, else bf16 where the hardware runs it fast (a CPU with "
        "AMX, a CUDA GPU with bf16: more trials in the budget), else fp32",
    )
    folds: int = Field(
        1,
        ge=1,
        le=20,
        description="rnnclf tune: K > 1 scores each trial as the mean over K folds of the training file "
        "(K times the cost; for small validation sets); 1: the validation split",
    )

    @field_validator("budget")
    @classmethod
    def _duration(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    text: TextConfig = Field(default_factory=TextConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    linear: LinearConfig = Field(default_factory=LinearConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for YAML, JSON and checkpoints)."""
        return self.model_dump(mode="json")

    def monitored(self) -> str:
        """train.monitor with auto resolved: valid_micro_f1 for multi-label data, else valid_accuracy."""
        return monitor_of(self.train.monitor, self.data.multi_label)

    def tuned_on(self) -> str:
        """The validation score `rnnclf tune` chooses on: tune.metric, or with auto train.monitor resolved."""
        return self.tune.metric if self.tune.metric != "auto" else self.monitored()


def monitor_of(monitor: str, multi_label: bool) -> str:
    if monitor != "auto":
        return monitor
    return "valid_micro_f1" if multi_label else "valid_accuracy"


def lower_is_better(monitor: str) -> bool:
    """Whether a resolved monitor is minimized (the loss) rather than maximized (every score)."""
    return monitor == "valid_loss"


SECTIONS: dict[str, type[Section]] = {
    "data": DataConfig,
    "text": TextConfig,
    "model": ModelConfig,
    "ensemble": EnsembleConfig,
    "linear": LinearConfig,
    "pretrain": PretrainConfig,
    "train": TrainConfig,
    "output": OutputConfig,
    "tune": TuneConfig,
}
_BAG = "retired in 0.2 with the hashed n-gram bag inside the network; for n-gram features use linear.ngrams"
# Keys earlier versions accepted: a config naming one gets a line that says what replaced it.
RETIRED: dict[tuple[str, str], str] = {
    ("model", "ngrams"): _BAG,
    ("model", "ngram_buckets"): _BAG,
    ("model", "ngram_dim"): _BAG,
    ("model", "ngram_weighting"): _BAG,
    ("model", "linear_ngrams"): "moved in 0.2 to linear.ngrams",
    ("model", "linear_c"): "moved in 0.2 to linear.c",
    ("model", "linear_share"): "retired in 0.2: the blend's share is now chosen on validation data",
    ("model", "members"): "moved in 0.2 to ensemble.members",
}
# Keys holding paths that resolve against the config file's folder.
PATH_KEYS = (
    ("data", "train"),
    ("data", "valid"),
    ("data", "test"),
    ("data", "unlabeled"),
    ("model", "pretrained_vectors"),
    ("model", "init_from"),
)
