"""Training: the fit call and what surrounds it (run folder, checkpoints, callbacks, schedules,
strategy, precision, history, plots)."""
