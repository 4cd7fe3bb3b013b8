"""torchvision's side of tests/test_converters.py, run in its own process.

`python tests/torch_reference.py OUT_DIR` writes OUT_DIR/googlenet.pth (a random torchvision
googlenet's state dict, saved by torch.save), OUT_DIR/reference.npz (input pixels, the logits
and softmax of torchvision's own forward pass) and the bad files the refusal test needs.

A separate process because importing torchvision after TensorFlow crashes the interpreter
(segmentation fault, torch 2.14 / TensorFlow 2.21), and the test suite imports TensorFlow first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def random_googlenet() -> torch.nn.Module:
    """torchvision's googlenet as built for its ImageNet weights, with random weights."""
    torch.manual_seed(0)
    net = torchvision.models.googlenet(
        weights=None, aux_logits=True, transform_input=True, init_weights=True
    )
    with torch.no_grad():  # batch norm and classifier away from their trivial initial values
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        net.fc.weight.normal_(0, 0.3)
        net.fc.bias.normal_(0, 0.3)
    return net.eval()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    net = random_googlenet()
    state = net.state_dict()
    torch.save(state, out / "googlenet.pth")
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    # torchvision's evaluation input: ImageNet-normalized; transform_input maps it to [-1, 1].
    normalized = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        logits = net(torch.tensor(normalized.transpose(0, 3, 1, 2), dtype=torch.float32))
    np.savez(
        out / "reference.npz",
        x=x,
        logits=logits.numpy(),
        softmax=torch.softmax(logits, 1).numpy(),
        state_keys=np.array(sorted(state)),
    )
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, out / "other.pth")
    missing = {k: v for k, v in state.items() if k != "inception4c.branch3.1.conv.weight"}
    torch.save(missing, out / "missing.pth")
    torch.save({**state, "fc2.weight": torch.zeros(3)}, out / "extra.pth")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
