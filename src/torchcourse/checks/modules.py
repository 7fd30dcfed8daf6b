"""Building a student's `nn.Module` subclass inside a test, with a failure that teaches.

A subclass whose `__init__` forgets `super().__init__()` fails in confusing ways: either at the
first layer it assigns ("cannot assign module before Module.__init__() call") or, when its first
attributes are plain values, much later ("object has no attribute '_backward_hooks'" on the
first call). `make_module` turns both into one message about the concept.
"""
from __future__ import annotations

from typing import Any

import torch

from .core import _fail

# Our own references, taken before any student code runs (see the package docstring).
_Module = torch.nn.Module
_issubclass = issubclass
_isinstance = isinstance
_type = type
_vars = vars
_getattr = getattr
_str = str


def make_module(cls: Any, *args: Any, **kwargs: Any) -> torch.nn.Module:
    """`cls(*args, **kwargs)` for a student's nn.Module subclass.

    Fails with a teaching message when `cls` is not an nn.Module subclass, or when its
    `__init__` did not call `super().__init__()`. Any other error (the stub's
    NotImplementedError included, which the grader reports as "not attempted") passes through.

        model = checks.make_module(MLP, 4, [8], 3)
    """
    __tracebackhide__ = True
    name = _getattr(cls, "__name__", None)
    name = name if _type(name) is _str else "the class"
    if not (_isinstance(cls, _type) and _issubclass(cls, _Module)):
        _fail(f"{name} should be a class that subclasses nn.Module (class {name}(nn.Module): ...).")
    concept = ("nn.Module.__init__ creates the registries that parameters, buffers and submodules "
               "are filed in when you assign them to self; without it nothing can be registered "
               "and the module cannot even be called. Call super().__init__() first in __init__.")
    try:
        module = cls(*args, **kwargs)
    except AttributeError as err:
        if "before Module.__init__() call" in _str(err):
            _fail(f"{name}.__init__ registered a part before calling super().__init__().", concept)
        raise
    if not _isinstance(module, _Module):
        _fail(f"{name}(...) did not produce an nn.Module.")
    state = _vars(module)
    if "_parameters" not in state or "_modules" not in state or "_buffers" not in state:
        _fail(f"{name}.__init__ never called super().__init__().", concept)
    return module
