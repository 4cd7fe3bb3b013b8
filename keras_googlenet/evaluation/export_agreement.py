"""Does an export say what its checkpoint says? `evaluate --export DIR` answers on every
validation image.

An export is checked at export time on a few random pixel batches (formats.check); that proves
the converter, not the file a user ships. Here the exported file itself (a SavedModel's `serve`
endpoint, the ONNX file in onnxruntime, the LiteRT file in its interpreter) runs on the same
cropped validation pixels as the checkpoint, and the report states:

    images                  how many were compared
    top1_agreement          the share whose top class is the same
    disagreements           how many differ (with near-ties, where the checkpoint's top two
                            probabilities are within `TIE` of each other, counted apart)
    max_abs_difference      the largest |export - checkpoint| probability
    mean_abs_difference     its mean over images and classes

The checkpoint's side is softmax(logits / T) at the export's own temperature (export.json), so
a calibrated export is compared with the calibrated checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_googlenet.errors import UserError

# Top-two probabilities closer than this are a tie that float rounding may break either way.
TIE = 1e-4


@dataclass
class Export:
    """An export folder, loaded in its own runtime."""

    folder: Path
    fmt: str  # savedmodel, onnx or litert
    info: dict  # export.json
    probabilities: object  # float32 pixels [B, S, S, 3] (0-255, cropped) -> [B, C]
    keep_alive: object = None  # a loaded SavedModel: its functions hold weak references

    @property
    def temperature(self) -> float | None:
        t = self.info.get("temperature")
        return None if t is None else float(t)


def load_export(folder) -> Export:
    """The export in `folder` (written by `keras-googlenet export` from a run).

    Raises:
        UserError: no such folder, no export.json, an export of imported weights (no
            checkpoint to compare with), or the format's runtime is not installed.
    """
    from keras_googlenet.serving import formats

    folder = Path(folder)
    info_file = folder / "export.json"
    if not folder.is_dir():
        raise UserError(f"{folder}: export folder not found")
    if not info_file.is_file():
        raise UserError(f"{folder}: no export.json (not a keras_googlenet export)")
    try:
        info = json.loads(info_file.read_text())
    except ValueError as e:
        raise UserError(f"{info_file}: unreadable export description ({e})") from None
    if not isinstance(info, dict):
        raise UserError(f"{info_file}: unreadable export description (not a JSON object)")
    if "checkpoint" not in info:
        raise UserError(f"{folder}: an export of imported weights has no checkpoint to compare")
    if (folder / "saved_model.pb").is_file():
        import tensorflow as tf

        loaded = formats.load_saved_model(folder)
        return Export(
            folder,
            "savedmodel",
            info,
            lambda pixels: loaded.serve(tf.constant(pixels, tf.float32))["probabilities"].numpy(),
            keep_alive=loaded,
        )
    for fmt, name in formats.FILE_NAMES.items():
        if (folder / name).is_file():
            formats.require(fmt)
            return Export(folder, fmt, info, formats.load(folder / name, fmt))
    files = " or ".join(formats.FILE_NAMES.values())
    raise UserError(f"{folder}: holds no saved_model.pb, {files}")


def same_checkpoint(export: Export, checkpoint: Path) -> bool:
    """Whether `export` was written from `checkpoint`: by its bytes where export.json has their
    sha256, else (older exports) by its path."""
    from keras_googlenet.model.import_weights import sha256

    recorded = export.info.get("checkpoint_sha256")
    if recorded is not None:
        return recorded == sha256(Path(checkpoint))
    return str(export.info["checkpoint"]) == str(Path(checkpoint).resolve())


def agreement(reference: np.ndarray, exported: np.ndarray) -> dict:
    """How closely `exported` probabilities [N, C] follow the checkpoint's `reference`."""
    reference = np.asarray(reference, np.float64)
    exported = np.asarray(exported, np.float64)
    if reference.shape != exported.shape:
        raise UserError(
            f"the export gives {exported.shape[-1]} classes, the checkpoint {reference.shape[-1]}"
        )
    differ = reference.argmax(1) != exported.argmax(1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    tied = (top2[:, 1] - top2[:, 0]) < TIE if reference.shape[1] > 1 else np.zeros(len(differ))
    gap = np.abs(reference - exported)
    return {
        "images": int(len(reference)),
        "top1_agreement": float(1.0 - differ.mean()) if len(differ) else 1.0,
        "disagreements": int(differ.sum()),
        "disagreements_at_ties": int((differ & tied.astype(bool)).sum()),
        "max_abs_difference": float(gap.max()) if gap.size else 0.0,
        "mean_abs_difference": float(gap.mean()) if gap.size else 0.0,
    }
