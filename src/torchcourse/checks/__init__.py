"""Helpers that the course's test cells import, and that students may use too.

Every helper raises `CheckFailure` (an AssertionError) with a message that says what went
wrong and, through the `why=` text the test author passes, which concept it breaks and how to
fix it. Nothing here knows an expected answer: expected values live in the test cells.

The helpers keep their own references to the torch functions they rely on (taken when this
module is first imported), so a submission that rebinds `torch.allclose` does not change
what they compute.
"""
from __future__ import annotations

from .core import (
    DEVICE,
    CheckFailure,
    describe,
    device,
    expect,
    expect_close,
    expect_equal,
    expect_raises,
    expect_tensor,
    seeded,
)
from .explain import explain
from .modules import make_module
from .behaviour import (
    TorchCallCounter,
    TrainingSpy,
    changed_state,
    count_torch_calls,
    devices_touched,
    expect_gradcheck,
    graph_depth,
    graph_nodes,
    module_state,
    same_storage,
)
from .training import GraphWatch
from .parallel import run_in_processes
from .serialization import missing_device, save_as_if_on


def check(*tests: str, notebook=None) -> None:
    """The line under each exercise: print what these test cells say (the visible tests here;
    every test, hidden ones included, through the grader where the whole course is present).
    Grading never runs it. See torchcourse/notebook_check.py."""
    from ..notebook_check import check as run_check

    run_check(*tests, notebook=notebook)

__all__ = [
    "DEVICE",
    "CheckFailure",
    "GraphWatch",
    "TorchCallCounter",
    "TrainingSpy",
    "changed_state",
    "check",
    "count_torch_calls",
    "describe",
    "devices_touched",
    "device",
    "expect",
    "expect_close",
    "expect_equal",
    "expect_gradcheck",
    "expect_raises",
    "expect_tensor",
    "explain",
    "graph_depth",
    "graph_nodes",
    "make_module",
    "missing_device",
    "module_state",
    "run_in_processes",
    "same_storage",
    "save_as_if_on",
    "seeded",
]
