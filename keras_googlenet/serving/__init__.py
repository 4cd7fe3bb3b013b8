"""Serving: the SavedModel export, its serving graph, and prediction on image files."""
