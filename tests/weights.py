"""The tensors a checkpoint directory stores, read from its safetensors files as they are on disk
(names, precision, values), one at a time: tests compare exports with their bases this way without
holding a full-width model in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _files(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("*.safetensors"))


def stored_dtypes(directory: Path) -> dict[str, str]:
    """name -> the precision it is stored in (BF16, F32, ...)."""
    from safetensors import safe_open

    dtypes = {}
    for path in _files(directory):
        with safe_open(str(path), framework="paddle") as handle:
            dtypes.update({name: str(handle.get_slice(name).get_dtype()) for name in handle.keys()})
    return dtypes


def stored_tensor(directory: Path, name: str) -> np.ndarray:
    """The values of tensor `name`, as float32."""
    from safetensors import safe_open

    for path in _files(directory):
        with safe_open(str(path), framework="paddle") as handle:
            if name in handle.keys():
                return handle.get_tensor(name).astype("float32").numpy()
    raise KeyError(f"{directory} stores no tensor {name}")


def mtp_names(directory: Path) -> list[str]:
    return sorted(name for name in stored_dtypes(directory) if ".mtp_" in name)
