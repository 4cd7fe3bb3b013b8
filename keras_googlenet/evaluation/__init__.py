"""Evaluation of a run's checkpoint: metrics, per-class report, confusion matrix."""
