"""The run on TensorBoard's HParams tab: the config's hyper-parameters and the final metrics.

Written once, when a run starts (an `hparams` summary at step 0 in `tensorboard/`, which a
resume keeps), with the metrics the tab shows for each run: the last epoch's values of the
scalars the TensorBoard callback writes in `train/` and `validation/`. Runs under one parent
folder compare side by side: `tensorboard --logdir runs/`.
"""

from __future__ import annotations

from pathlib import Path

# (group = the TensorBoard callback's sub-folder, tag) of the metrics shown per run.
METRICS = (
    ("validation", "epoch_main_top1"),
    ("validation", "epoch_main_top5"),
    ("validation", "epoch_loss"),
    ("train", "epoch_loss"),
    ("train", "epoch_main_top1"),
)


def flat_hparams(config) -> dict:
    """The config as {dotted key: bool, number or string} (lists and mappings as text;
    paths left out: they differ between runs without being hyper-parameters)."""
    out = {}

    def walk(tree, prefix=""):
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if dotted.startswith("paths.") or dotted == "data.input_dir":
                continue
            if isinstance(value, dict) and key != "class_weight":
                walk(value, f"{dotted}.")
            elif value is None or isinstance(value, (bool, int, float, str)):
                out[dotted] = "null" if value is None else value
            else:
                out[dotted] = str(value)

    walk(config.to_dict())
    return out


def write_hparams(config, log_dir: str | Path, run_name: str) -> None:
    """Writes the HParams experiment (metric list) and this run's hyper-parameters."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams_config(
            hparams=[hp.HParam(k) for k in flat_hparams(config)],
            metrics=[hp.Metric(tag, group=group) for group, tag in METRICS],
        )
        hp.hparams(flat_hparams(config), trial_id=run_name)
    writer.flush()
    writer.close()
