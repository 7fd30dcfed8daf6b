"""Files as another machine would have written them, for tests of loading code.

Every tensor in a `torch.save` file records the device it lived on, and `torch.load` puts it
back there unless `map_location` says otherwise. A test that wants to prove a loader passes
`map_location` needs a file written on a GPU, on a machine that may have none:
`save_as_if_on` writes one.
"""
from __future__ import annotations

import os
import pickle
import types
from typing import Any

import torch

# Our own references, taken before any student code runs (see the package docstring).
_save = torch.save
_cuda_available = torch.cuda.is_available
_cuda_count = torch.cuda.device_count
_Pickler = pickle.Pickler
_tuple = tuple
_type = type
_str = str

def missing_device() -> str:
    """A CUDA device this machine does not have: "cuda:0" without a GPU, "cuda:N" with N GPUs."""
    return f"cuda:{_cuda_count()}" if _cuda_available() else "cuda:0"


def save_as_if_on(obj: Any, path: str | os.PathLike, device: str | torch.device | None = None) -> str:
    """torch.save(obj, path), with every tensor recorded as living on `device`.

    The file is what a machine with that device would have written (the data itself is
    unchanged). `device` defaults to a CUDA device this machine lacks (`missing_device()`),
    so that `torch.load(path)` fails here unless it is given a `map_location`. Returns the
    device name written into the file."""
    tag = _str(device) if device is not None else missing_device()

    class _RetaggingPickler(_Pickler):
        # torch.save subclasses the Pickler it is given and overrides persistent_id, which
        # returns ("storage", type, key, location, numel) for each tensor's memory; the C
        # pickler looks persistent_id up when it is created, so an instance attribute set
        # before __init__ wraps torch's method and rewrites the location.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            inner = self.persistent_id

            def persistent_id(value: Any) -> Any:
                pid = inner(value)
                if _type(pid) is _tuple and len(pid) == 5 and pid[0] == "storage":
                    pid = (pid[0], pid[1], pid[2], tag, pid[4])
                return pid

            self.persistent_id = persistent_id
            super().__init__(*args, **kwargs)

    _save(obj, path, pickle_module=types.SimpleNamespace(Pickler=_RetaggingPickler, __name__="pickle"))
    return tag
