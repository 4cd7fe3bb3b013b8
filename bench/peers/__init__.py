"""Peers the benches compare against: each a plain re-statement of what a user would otherwise
run (the seed project's serial OpenCV preprocessing, a torch DataLoader with OpenCV and
albumentations, torchvision's GoogLeNet). Their dependencies are optional: torch, torchvision,
opencv-python(-headless). `available(name)` says whether one can run here."""

from __future__ import annotations

import importlib.util

REQUIRES = {
    "seed_preprocess": ("cv2",),
    "torch_loader": ("torch", "cv2", "albumentations"),
    "torchvision_step": ("torch", "torchvision"),
}


def missing(peer: str) -> list[str]:
    """The modules `peer` needs that are not installed (empty when it can run)."""
    return [m for m in REQUIRES[peer] if importlib.util.find_spec(m) is None]
