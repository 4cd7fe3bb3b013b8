"""The config schema: one frozen dataclass per section, every field with a default.

Where the seed's settings live:
    PROJECT_NAME -> project_name          NUM_CLASSES -> model.num_classes
    INPUT_DIR -> data.input_dir           EPOCHS -> training.epochs
    TRAIN_DIR -> data.train_dir           CHECKPOINT_INTERVAL -> training.checkpoint_interval
    VALID_DIR -> data.valid_dir           MULTI_GPU -> runtime.strategy (auto/mirrored/...)
    TRAIN_CSV -> data.train_csv           FP16_MIXED -> runtime.precision (mixed_float16)
    VALID_CSV -> data.valid_csv           LOGFILE -> logging.logfile, LOGLEVEL -> logging.level
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

# Every field has a default so a recipe file only says what differs; `None` on a required field
# is caught by `require`.


@dataclass(frozen=True)
class ModelConfig:
    """Architecture options of `build_googlenet`."""

    num_classes: int | None = None  # NUM_CLASSES; None: read from categories.csv
    input_size: int = 224
    batch_norm: bool = True
    aux_heads: bool = True
    dropout: float = 0.4
    aux_dropout: float = 0.7
    initializer: str = "glorot_normal"
    # What reproducing an imported network needs. null: the imported file's value (its JSON
    # names them) with training.init_weights, else the paper's (table.PAPER_CONVENTION); a value
    # set here that contradicts the file stops the run.
    padding: Literal["same", "torchvision"] | None = None  # torchvision: symmetric conv1, ceil
    pool4_size: int | None = None  # the pool before 5a: 3x3 (Table 1), 2x2 (torchvision, slim)
    # dataset_mean: (x - train mean) / data.std_rgb; minus_one_one: x / 127.5 - 1 (ImageNet
    # weights from torchvision and TF-slim expect this)
    input_scaling: Literal["dataset_mean", "minus_one_one"] | None = None


@dataclass(frozen=True)
class PreprocessConfig:
    """Options of `keras-googlenet preprocess` (command-line flags win)."""

    source_dir: str | None = None  # the raw Caltech256-style folder of class folders
    val_split: float = 0.2
    size: int = 256
    center_crop: bool = True
    include_clutter: bool = False
    seed: int = 42
    workers: int | None = None  # None: all cores


@dataclass(frozen=True)
class DataConfig:
    """Where the processed dataset is and how the input pipeline reads it."""

    input_dir: str | None = None  # INPUT_DIR: a processed folder (train/, val/, CSVs, mean)
    train_dir: str = "train"  # TRAIN_DIR, relative to input_dir unless absolute
    valid_dir: str = "val"  # VALID_DIR
    train_csv: str = "train.csv"  # TRAIN_CSV
    valid_csv: str = "val.csv"  # VALID_CSV
    categories_csv: str = "categories.csv"
    mean_file: str | None = None  # None: rgb_val.json, else rgb_train.json
    std_rgb: float = 58.0  # divisor after mean subtraction (ImageNet's pixel std, rounded)
    batch_size: int = 128
    batch_size_is: Literal["global", "per_replica"] = "global"
    shuffle_buffer: int = 10_000  # decoded images shuffled after the cache (when caching);
    # without the cache the whole file list is shuffled each epoch
    # Decoded training images kept in memory after the first epoch: auto when they fit in a
    # quarter of the free memory (data/cache.py); true also caches the validation batches.
    cache: bool | Literal["auto"] = "auto"
    deterministic: bool = False  # reproducible order and augmentation (slower)
    seed: int = 42
    steps_per_epoch: int | None = None  # None: one pass over the train CSV
    validation_steps: int | None = None  # None: one pass over the val CSV
    on_bad_image: Literal["skip", "fail"] = "skip"
    # Ordered lists of {name: ..., p: ..., **params}; see keras_googlenet.data.augment.
    train_augment: list = field(
        default_factory=lambda: [
            {"name": "random_crop", "size": 224},
            {"name": "horizontal_flip", "p": 0.5},
            {"name": "rotate90", "p": 0.5},
        ]
    )
    val_augment: list = field(default_factory=lambda: [{"name": "center_crop", "size": 224}])
    # albumentations transforms, e.g. [{HorizontalFlip: {p: 0.5}}], run after train_augment.
    albumentations: list = field(default_factory=list)
    # Per training batch, Keras layers: [{name: randaugment, num_ops: 2, magnitude: 0.5},
    # {name: mixup, alpha: 0.2}, {name: cutmix, alpha: 1.0}]; see data/batch_augment.py.
    batch_augment: list = field(default_factory=list)


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer (SGD with Nesterov momentum, Adam or AdamW) and its hyper-parameters."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 2e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    clipnorm: float | None = None
    # An exponential moving average of the weights (training/ema.py), which validation,
    # checkpoints, evaluation and export use; ema_momentum in (0, 1), nearer 1 = slower.
    ema: bool = False
    ema_momentum: float = 0.99


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, applied per epoch."""

    name: Literal["constant", "plateau", "cosine", "step"] = "plateau"
    warmup_epochs: int = 0  # linear warmup from lr / (warmup_epochs + 1)
    # plateau: ReduceLROnPlateau on validation top-1 of `main`
    factor: float = 0.5
    patience: int = 3
    min_lr: float = 1e-5  # also cosine's final learning rate
    # step: lr * decay_rate ** floor((1 + epoch) / decay_every) (the CIFAR-10 seed's rule)
    decay_rate: float = 0.96
    decay_every: int = 8


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when a logged metric (history.csv column) has not improved for `patience` epochs."""

    patience: int | None = None  # None: never stop early
    monitor: str = "val_main_top1"  # a loss is minimized, anything else maximized
    min_delta: float = 0.0


@dataclass(frozen=True)
class FinetuneConfig:
    """The two-phase fine-tuning schedule (see training/finetune.py)."""

    # Phase 1: the first head_epochs epochs train only what is above training.freeze_until.
    # Phase 2: the remaining epochs train everything, at the schedule's rate x lr_factor.
    # 0: one phase, training.freeze_until frozen throughout.
    head_epochs: int = 0
    lr_factor: float = 0.1


@dataclass(frozen=True)
class TrainingConfig:
    """The fit loop: epochs, losses, checkpoints and resume."""

    epochs: int = 70  # EPOCHS
    loss_weights: dict = field(default_factory=lambda: {"main": 1.0, "aux_4a": 0.3, "aux_4d": 0.3})
    label_smoothing: float = 0.0
    checkpoint_interval: int = 10  # CHECKPOINT_INTERVAL: keep a checkpoint every N epochs
    backup_every: int | Literal["epoch"] = "epoch"  # resume backup: each epoch or every N steps
    seed: int | None = 42
    # Fine-tuning: start from a weights file written by `import-weights` (every layer whose
    # shape fits; the classifier is fresh when num_classes differs, the aux heads always are).
    init_weights: str | None = None
    # Freeze every layer from the input through this block (conv1, conv2, inception_3a .. 5b);
    # frozen batch norm runs in inference mode. None: train everything.
    freeze_until: str | None = None
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # Per-class loss weights on every head: "balanced" (n / (classes * count), from train.csv),
    # {class name or id: weight} (others 1), or a YAML/JSON mapping or CSV (class,weight) file.
    class_weight: str | dict | None = None
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how it runs: distribution strategy and numeric precision."""

    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker"] = "auto"
    devices: list = field(default_factory=list)  # mirrored/one_device: e.g. ["/gpu:0"]
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool = False  # XLA: see bench/README.md for what it gave on CPU
    # Training steps per call into TensorFlow: saves per-step overhead where steps take
    # milliseconds (GPUs, small images); batch-level callbacks then run every N steps.
    # auto: 16 when GPUs are visible, else 1 (training/compile.py).
    steps_per_execution: int | Literal["auto"] = 1
    # Batch-norm statistics over the global batch (all replicas), not each replica's share:
    # for small per-replica batches under mirrored / multi_worker.
    sync_batch_norm: bool = False


@dataclass(frozen=True)
class LoggingConfig:
    """Console and file logging."""

    logfile: str = "output.log"  # LOGFILE, inside the run folder unless absolute
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # LOGLEVEL
    # [first, last] training steps (1-based, of each fit) to trace with TensorBoard's profiler.
    profile_batches: list | None = None
    hparams: bool = True  # the config's hyper-parameters and final metrics on the HParams tab


@dataclass(frozen=True)
class PathsConfig:
    """Where runs are written."""

    runs_dir: str = "runs"
    run_dir: str | None = None  # None: runs_dir/project_name


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    project_name: str = "googlenet"  # PROJECT_NAME
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (what `save_config` writes)."""
        return dataclasses.asdict(self)
