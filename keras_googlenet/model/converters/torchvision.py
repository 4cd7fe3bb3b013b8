"""torchvision's GoogLeNet state dict (`googlenet-1378be20.pth`) -> Keras arrays, without torch.

A `.pth` written by `torch.save` is a zip: `NAME/data.pkl` (a pickle of the state dict) and
`NAME/data/K`, one raw little-endian buffer per tensor storage. `torch.load` would run whatever
the pickle names; `read_state_dict` unpickles with a class that accepts only the four records a
state dict of tensors consists of and refuses anything else before it is called.

Mapping (torchvision `models/googlenet.py`): `convN` and `inceptionXY.branchK[.i]` are
`BasicConv2d` (conv without bias, then batch norm, eps 0.001); `branch3.1` is 3x3 (centred in
our 5x5); `fc` is the 1000-way classifier. `aux1`/`aux2` are left out: torchvision says they
are not trained, and their 4x4 adaptive pool is not the paper's 5x5/3 pool anyway.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np

from keras_googlenet.errors import UserError
from keras_googlenet.model.converters import (
    BRANCH_CONVS,
    STEM_CONVS,
    Imported,
    centre_in_5x5,
    imagenet_class_names,
)
from keras_googlenet.model.table import INCEPTION_SPECS

MODEL_KEYS = {
    "num_classes": 1000,
    "padding": "torchvision",  # symmetric conv1 padding, ceil-mode max pools
    "pool4_size": 2,
    "input_scaling": "minus_one_one",  # transform_input=True turns its input into [-1, 1]
}
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# torchvision's module name of each of our conv layers: stem, then branch order per block.
_TORCH_BRANCHES = ("branch1", "branch2.0", "branch2.1", "branch3.0", "branch3.1", "branch4.1")
_AUX = {  # the auxiliary heads' keys: accepted, not imported
    f"aux{i}.{part}"
    for i in (1, 2)
    for part in (
        "conv.conv.weight",
        *(f"conv.bn.{k}" for k in _BN),
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    )
}


def torch_conv_names() -> dict[str, str]:
    """Keras conv layer name -> torchvision `BasicConv2d` module name."""
    names = dict(zip(STEM_CONVS, ("conv1", "conv2", "conv3"), strict=True))
    for stage in INCEPTION_SPECS:
        for ours, theirs in zip(BRANCH_CONVS, _TORCH_BRANCHES, strict=True):
            names[f"inception_{stage}_{ours}"] = f"inception{stage}.{theirs}"
    return names


def expected_keys() -> set[str]:
    """The state-dict keys of torchvision's googlenet without its auxiliary heads (344)."""
    keys = {"fc.weight", "fc.bias"}
    for module in torch_conv_names().values():
        keys.add(f"{module}.conv.weight")
        keys.update(f"{module}.bn.{k}" for k in _BN)
    return keys


class _Storage:
    """Stands in for `torch.FloatStorage` etc.: only its dtype matters."""

    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """`torch._utils._rebuild_tensor_v2` on a numpy storage: a strided view, copied."""
    size, stride = tuple(size), tuple(stride)
    if size and (offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))) >= len(
        storage
    ):
        raise ValueError("a tensor reaches past the end of its storage")
    if not size:
        return storage[offset].copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * item for s in stride]
    )
    return np.array(view)


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict of tensors and refuses every other global."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise UserError(
            f"{self.path}: refused: its pickle imports {module}.{name} (only tensor storages "
            "are allowed; a state dict needs nothing else)"
        )

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, number of elements)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UserError(f"{self.path}: refused: unknown persistent record {pid!r:.60}")
        storage, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage, _Storage):
            raise UserError(f"{self.path}: refused: a storage of unknown type")
        data = self.archive.read(f"{self.prefix}data/{key}")
        array = np.frombuffer(data, dtype=np.dtype(storage.dtype).newbyteorder("<"))
        if array.size != numel:
            raise ValueError(f"storage {key} holds {array.size} of {numel} elements")
        return array


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a `torch.save`d state dict, as numpy arrays, without torch.

    Raises:
        UserError: not a zip-format `.pth`, truncated or damaged, or its pickle names anything
            but tensor storages.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise UserError(f"{path}: not a torch.save file (no NAME/data.pkl inside)")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = f"{prefix}byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder) != b"little":
                raise UserError(f"{path}: big-endian tensors are not supported")
            with archive.open(pickles[0]) as f:
                state = _StateDictUnpickler(f, archive, prefix, path).load()
    except UserError:
        raise
    except zipfile.BadZipFile as e:
        raise UserError(f"{path}: not a readable torch.save zip (truncated? {e})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, OSError) as e:
        raise UserError(f"{path}: damaged or truncated ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return dict(state)


def convert(state: dict[str, np.ndarray], path: str | Path) -> Imported:
    """Maps torchvision googlenet's state dict onto our layer names.

    Raises:
        UserError: a key missing or extra (another network), or a tensor of the wrong shape.
    """
    keys = set(state)
    aux = keys & _AUX
    if aux and aux != _AUX:
        raise UserError(f"{path}: auxiliary-head keys incomplete: {sorted(_AUX - aux)[0]} missing")
    missing = sorted(expected_keys() - keys)
    extra = sorted(keys - expected_keys() - _AUX)
    if missing or extra:
        what = f"missing key {missing[0]}" if missing else f"unexpected key {extra[0]}"
        count = f" ({len(missing)} missing, {len(extra)} unexpected)"
        raise UserError(f"{path}: not torchvision's googlenet: {what}{count}")

    def get(key, shape):
        value = np.asarray(state[key], np.float32)
        if value.shape != shape:
            raise UserError(f"{path}: {key} has shape {value.shape}, expected {shape}")
        return value

    convs, batch_norms = {}, {}
    for ours, module in torch_conv_names().items():
        kernel = np.asarray(state[f"{module}.conv.weight"], np.float32)
        if kernel.ndim != 4:
            raise UserError(f"{path}: {module}.conv.weight is not a 4-d conv kernel")
        kernel = kernel.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if ours.endswith("_5x5"):
            if kernel.shape[:2] != (3, 3):
                raise UserError(f"{path}: {module}.conv.weight is not 3x3")
            kernel = centre_in_5x5(kernel)
        convs[ours] = kernel
        out = (kernel.shape[3],)
        batch_norms[ours] = tuple(
            get(f"{module}.bn.{k}", out) for k in ("weight", "bias", "running_mean", "running_var")
        )
    fc = np.asarray(state["fc.weight"], np.float32)
    if fc.shape != (1000, 1024):
        raise UserError(f"{path}: fc.weight has shape {fc.shape}, expected (1000, 1024)")
    classifier = (fc.T.copy(), get("fc.bias", (1000,)))
    return Imported(
        "torchvision", dict(MODEL_KEYS), convs, batch_norms, classifier, imagenet_class_names()
    )


def read(path: str | Path) -> Imported:
    """`convert(read_state_dict(path))`."""
    return convert(read_state_dict(path), path)
