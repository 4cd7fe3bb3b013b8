"""The layout of a run folder, shared by training, evaluation, export and the demo.

RUN/config.yaml              the resolved config the run was started with
RUN/output.log               the log file (logging.logfile)
RUN/history.csv              one row per epoch (appended across restarts)
RUN/checkpoints/best.keras   best validation top-1 of `main` so far
RUN/checkpoints/last.keras   the end of the latest epoch
RUN/checkpoints/epoch_010.keras   every training.checkpoint_interval epochs
RUN/backup/                  BackupAndRestore's state, for resume after a crash
RUN/tensorboard/             TensorBoard event files (train/, validation/)
RUN/plots/*.png              loss, accuracy and learning-rate curves
RUN/DONE                     written when the configured epochs are all done
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from keras_googlenet.atomic import atomic_write_text
from keras_googlenet.config import Config
from keras_googlenet.errors import UserError


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def dataset(self) -> Path:
        """`dataset.json`: class names, mean and sizes of the data the run trained on."""
        return self.root / "dataset.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.keras"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.keras"

    def epoch_checkpoint(self, epoch: int) -> Path:
        """The periodic checkpoint after `epoch` (1-based)."""
        return self.checkpoints / f"epoch_{epoch:03d}.keras"

    def epoch_checkpoints(self) -> list[Path]:
        """Periodic checkpoints, oldest first."""
        found = [p for p in self.checkpoints.glob("epoch_*.keras") if re.search(r"\d+", p.stem)]
        return sorted(found, key=lambda p: int(re.search(r"\d+", p.stem).group()))

    @property
    def backup(self) -> Path:
        return self.root / "backup"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def done(self) -> Path:
        return self.root / "DONE"

    def logfile(self, name: str) -> Path:
        """The log file: `name` inside the run folder unless it is absolute."""
        path = Path(name)
        return path if path.is_absolute() else self.root / path


def write_dataset_facts(run: RunDir, info) -> None:
    """Keeps what serving and evaluation need of the dataset in the run folder.

    With these (and config.yaml, which holds the sizes and the crop), a run exports, predicts
    and evaluates a CSV after its dataset folder is moved or deleted.

    Args:
        run: the run folder.
        info: a `DatasetInfo` (class names, mean, sizes, where it was read from).
    """
    facts = {
        "class_names": list(info.class_names),
        "mean_rgb": [float(v) for v in info.mean_rgb],
        "train_size": int(info.train_size),
        "val_size": int(info.val_size),
        "input_dir": str(info.input_dir),
        "audit": info.audit,  # the preprocessing audit's counts; None when it was not run
    }
    atomic_write_text(run.dataset, json.dumps(facts, indent=2) + "\n")


def read_dataset_facts(run: RunDir) -> dict | None:
    """The run's `dataset.json` as a dict, or None for a run trained before it existed.

    Raises:
        UserError: the file is there but damaged.
    """
    if not run.dataset.is_file():
        return None
    try:
        facts = json.loads(run.dataset.read_text(encoding="utf-8"))
        names = facts["class_names"]
        mean = facts["mean_rgb"]
        ok = all(isinstance(n, str) for n in names) and len(mean) == 3
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise UserError(
            f"{run.dataset}: damaged (expected class_names and mean_rgb); train again with the "
            "same command to rewrite it"
        )
    return facts


# The run's state: new, resume or done.


def resolve_run_dir(cfg: Config, run_dir=None, restart: bool = False, number=None) -> Path:
    """The run folder: `run_dir`, else `paths.run_dir`, else `paths.runs_dir/project_name`.

    With `restart`, an existing non-empty folder is left alone and the first free NAME-2,
    NAME-3, ... is used instead (`restart_number`). `number`: use NAME-number (1: NAME itself),
    the one a multi-worker run's chief chose, so every worker uses the same folder.
    """
    base = Path(run_dir or cfg.paths.run_dir or Path(cfg.paths.runs_dir) / cfg.project_name)
    if number is None and restart:
        number = restart_number(base)
    if number is None or number <= 1:
        return base
    return base.with_name(f"{base.name}-{number}")


def restart_number(base: Path) -> int:
    """1 if folder `base` is unused, else the first n >= 2 whose NAME-n is unused."""
    if not _occupied(base):
        return 1
    n = 2
    while _occupied(base.with_name(f"{base.name}-{n}")):
        n += 1
    return n


def _occupied(path: Path) -> bool:
    # `workers/` alone is what multi-worker tasks other than the chief create.
    if not path.is_dir():
        return path.exists()
    return any(p.name != "workers" for p in path.iterdir())


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("loss_weights",):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Keys a resume may change: where things are written, and how fast the input is read (runs made
# before `data.cache: auto` became the default recorded `false`).
RESUME_MAY_CHANGE = ("paths.", "data.cache")


def config_differences(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two config dicts (`RESUME_MAY_CHANGE` ignored)."""
    a, b = _flatten(saved), _flatten(current)
    # A key added to the schema after the run started has its default in that run.
    defaults = _flatten(Config().to_dict())
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if not k.startswith(RESUME_MAY_CHANGE)
        and a.get(k, defaults.get(k, "<absent>")) != b.get(k, defaults.get(k, "<absent>"))
    ]


def _trained(run: RunDir) -> bool:
    """Whether anything was trained in `run`: a history row, a backup or a checkpoint."""
    has_rows = run.history.is_file() and len(run.history.read_text().splitlines()) > 1
    has_backup = run.backup.is_dir() and any(run.backup.iterdir())
    return has_rows or has_backup or any(run.checkpoints.glob("*.keras"))


def run_state(run: RunDir, cfg: Config) -> str:
    """`new`, `resume` or `done` for run folder `run` and config `cfg`.

    Raises:
        UserError: the folder is not a run folder, or was started with a different config.
    """
    if not _occupied(run.root):
        return "new"
    if not run.config.is_file():
        if _trained(run):
            raise UserError(
                f"{run.config}: missing from a run folder that holds a trained run; put it "
                "back (the config the run was started with), or add --restart for a new run"
            )
        raise UserError(
            f"{run.root}: not empty and has no config.yaml, so it is not a run folder; "
            "choose another --run-dir"
        )
    try:
        saved = yaml.safe_load(run.config.read_text())
        if not isinstance(saved, dict):
            raise yaml.YAMLError(f"expected a mapping, found {type(saved).__name__}")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{run.config}: cannot read the run's config ({first}); put the original back, or "
            "add --restart for a new run"
        ) from None
    differing = config_differences(saved, cfg.to_dict())
    if differing and not _trained(run):
        # A start that failed before its first epoch (a wrong data path, say) left only
        # config.yaml and a log: the corrected command takes the folder over.
        return "new"
    if differing:
        shown = ", ".join(differing[:8]) + (" ..." if len(differing) > 8 else "")
        raise UserError(
            f"{run.root} was started with a different config (differs in: {shown}); "
            "run with the same config to resume it, or add --restart to start a new run"
        )
    return "done" if run.done.exists() else "resume"
