"""Assertions with teaching messages, and the device the grader asks for."""
from __future__ import annotations

from torchcourse import private_builtins

private_builtins(globals())

import contextlib
import math
import os
from typing import Any, Iterator, Sequence

import torch

# Our own references, taken before any student code runs (see the package docstring).
_Tensor = torch.Tensor
_Parameter = torch.nn.Parameter
_isclose = torch.isclose
_abs = torch.abs
_fork_rng = torch.random.fork_rng
_manual_seed = torch.manual_seed
_type = type
_isinstance = isinstance
_float = float


def _is_plain_tensor(value: Any) -> bool:
    # Identity, not `in`/`==`: a metaclass can make any comparison of types answer True.
    t = _type(value)
    return t is _Tensor or t is _Parameter


_PLAIN_SCALARS = (int, float, bool, str, type(None), torch.dtype, torch.device)


def _is_plain(value: Any) -> bool:
    """True for builtin values whose == cannot be overridden by student code."""
    t = _type(value)
    if any(t is s for s in _PLAIN_SCALARS):
        return True
    if t is tuple or t is list or t is torch.Size:
        return all(_is_plain(v) for v in value)
    return False


class CheckFailure(AssertionError):
    """A test found a mistake. The message says what, which concept, and how to fix it."""


def device() -> torch.device:
    """The device the grader runs tests on: the profile sets COURSE_DEVICE (default "cpu")."""
    return torch.device(os.environ.get("COURSE_DEVICE", "cpu"))


DEVICE = device()


def _fail(message: str, why: str = "") -> None:
    __tracebackhide__ = True  # IPython hides this frame from the student's traceback
    text = message.strip()
    if why:
        text = f"{text} {why.strip()}"
    raise CheckFailure(text)


def expect(condition: Any, message: str) -> None:
    """Fail with `message` unless `condition` is true."""
    __tracebackhide__ = True
    if not condition:
        _fail(message)


def describe(value: Any) -> str:
    """A short description of a value for messages: its kind, never its contents.

    It never calls a student object's own __repr__ (which could be anything)."""
    if _is_plain_tensor(value):
        shape = tuple(value.shape)
        kind = "Parameter" if _type(value) is _Parameter else "tensor"
        grad = ", requires_grad=True" if value.requires_grad else ""
        dtype = str(value.dtype).replace("torch.", "")
        article = "an" if dtype[:1] in "aeiou" else "a"  # an int64, a float32
        return f"{article} {dtype} {kind} of shape {shape} on {value.device}{grad}"
    if _isinstance(value, torch.Tensor):
        return f"a tensor subclass {_type(value).__name__!s} (the test needs a plain torch.Tensor)"
    if value is None:
        return "None"
    if _type(value) is int or _type(value) is float or _type(value) is bool:
        return f"the {_type(value).__name__} {value!r}"
    if _type(value) is list or _type(value) is tuple:
        return f"a {_type(value).__name__} of length {len(value)}"
    return f"an object of type {_type(value).__name__}"


def _shape_matches(actual: Sequence[int], expected: Sequence[Any]) -> bool:
    if len(actual) != len(expected):
        return False
    return all(e is None or e == -1 or a == e for a, e in zip(actual, expected))


def expect_tensor(
    value: Any,
    name: str,
    *,
    shape: Sequence[Any] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    requires_grad: bool | None = None,
    why: str = "",
) -> None:
    """Check that `value` is a plain tensor (or Parameter) with the given properties.

    `shape` may use None for "any size" in a dimension. Tensor subclasses are refused: an
    object that only looks like a tensor could answer every comparison with True."""
    __tracebackhide__ = True
    if not _is_plain_tensor(value):
        _fail(f"{name} should be a torch.Tensor, but it is {describe(value)}.", why)
    if shape is not None and not _shape_matches(tuple(value.shape), tuple(shape)):
        want = tuple("any" if s in (None, -1) else s for s in shape)
        _fail(f"{name} has shape {tuple(value.shape)}, expected {want}.", why)
    if dtype is not None and value.dtype != dtype:
        _fail(f"{name} has dtype {value.dtype}, expected {dtype}.", why)
    if device is not None and torch.device(device).type != value.device.type:
        _fail(f"{name} is on {value.device}, expected it on {torch.device(device)}.", why)
    if requires_grad is not None and bool(value.requires_grad) != requires_grad:
        state = "requires" if value.requires_grad else "does not require"
        _fail(f"{name} {state} grad, expected requires_grad={requires_grad}.", why)


def _as_float(value: Any) -> float | None:
    if _type(value) is int or _type(value) is float or _type(value) is bool:
        return _float(value)
    if _is_plain_tensor(value) and value.numel() == 1:
        return _float(value.detach().cpu().reshape(()).item())
    return None


def expect_close(
    actual: Any,
    expected: Any,
    name: str,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    why: str = "",
    show: bool = True,
) -> None:
    """Check that `actual` is numerically close to `expected` (numbers or tensors).

    The message reports where and by how much they differ, not the expected values. With
    show=False it does not say by how much either (a prediction the student must not be able
    to correct from the message)."""
    __tracebackhide__ = True
    if _is_plain_tensor(expected):
        expect_tensor(actual, name, why=why)
        if tuple(actual.shape) != tuple(expected.shape):
            _fail(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.", why)
        if actual.device.type != expected.device.type:
            _fail(f"{name} is on {actual.device}, expected it on {expected.device}.", why)
        a = actual.detach().to(torch.float64)
        e = expected.detach().to(torch.float64)
        if a.numel() == 0:
            return
        ok = _isclose(a, e, rtol=rtol, atol=atol, equal_nan=False)
        if not bool(ok.all()):
            bad = (~ok).nonzero()[0].tolist()
            diff = _abs(a - e)
            diff = diff[~torch.isnan(diff)] if bool(torch.isnan(diff).any()) else diff
            worst = _float(diff.max()) if diff.numel() else math.nan
            count = int((~ok).sum())
            where = f" first at index {tuple(bad)}" if bad else ""
            nan = " It contains NaN." if bool(torch.isnan(a).any()) else ""
            by = f", by up to {worst:.3g}" if show else ""
            _fail(
                f"{name} is not close to the expected values: {count} of {a.numel()} entries "
                f"differ{where}{by}.{nan}",
                why,
            )
        return
    e = _as_float(expected)
    if e is None:
        raise TypeError("expect_close compares numbers or tensors")
    a = _as_float(actual)
    if a is None:
        _fail(f"{name} should be a number, but it is {describe(actual)}.", why)
    if not math.isclose(a, e, rel_tol=rtol, abs_tol=atol):
        off = f" (off by {abs(a - e):.3g})" if show else ""
        _fail(f"{name} is {a:.6g}, which is not the expected value{off}.", why)


def expect_equal(actual: Any, expected: Any, name: str, *, why: str = "", show: bool = True) -> None:
    """Check exact equality of plain values (ints, strings, tuples, dtypes, devices...).

    With show=False the message does not print the expected value (use it when the value is
    the answer)."""
    __tracebackhide__ = True
    if not _is_plain(actual):
        _fail(f"{name} should be {describe(expected)}, but it is {describe(actual)}.", why)
    if actual != expected:
        if show:
            _fail(f"{name} is {actual!r}, expected {expected!r}.", why)
        _fail(f"{name} is {actual!r}, which is not right.", why)


def expect_raises(exc_type: type[BaseException], fn, *args: Any, message: str, **kwargs: Any) -> BaseException:
    """Check that calling fn(*args, **kwargs) raises `exc_type`; fail with `message` if not."""
    __tracebackhide__ = True
    try:
        fn(*args, **kwargs)
    except exc_type as err:
        return err
    _fail(message)
    raise AssertionError("unreachable")  # for type checkers


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Run a block with torch's RNG seeded, restoring the previous RNG state afterwards."""
    devices = [DEVICE.index or 0] if DEVICE.type == "cuda" else []
    with _fork_rng(devices=devices):
        _manual_seed(seed)
        yield
