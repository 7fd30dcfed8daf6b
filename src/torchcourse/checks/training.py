"""Helpers for tests of training code: which autograd graphs are still alive.

`GraphWatch` tags tensors (a loss, a hidden state) so that a test can count how many of their
autograd graphs are still referenced. A training loop that keeps graphs alive (`total += loss`,
`losses.append(loss)`, a recurrent hidden state that is never detached) holds on to one graph
per batch; a correct one lets each graph go once its backward pass is done.

    watch = checks.GraphWatch()
    loss_fn = lambda out, y: watch.tag(F.cross_entropy(out, y))
    train_epoch(model, batches, loss_fn, optimizer)
    checks.expect(watch.peak <= 2, "...")
"""
from __future__ import annotations

from torchcourse import private_builtins

private_builtins(globals())

import weakref

import torch

_Function = torch.autograd.Function
_finalize = weakref.finalize


class _Token:
    """Stored on a tagged graph's node; freed (and counted out) when the graph is freed."""

    __slots__ = ("__weakref__",)


class _Tag(_Function):
    @staticmethod
    def forward(ctx, tensor):
        return tensor.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


class GraphWatch:
    """Counts the tagged autograd graphs that are still referenced by someone.

    `tag(t)` returns a copy of `t` (same values, same gradient) whose graph carries a marker.
    `alive` is the number of tagged graphs not yet freed; `peak` is the largest number that
    were alive when a new tensor was tagged (so, how many earlier graphs the code still held
    when it computed the next one); `tagged` counts the calls to `tag`."""

    def __init__(self) -> None:
        self._alive: set[int] = set()
        self._next = 0
        self.peak = 0
        self.tagged = 0

    def _forget(self, key: int) -> None:
        self._alive.discard(key)

    def tag(self, tensor: torch.Tensor) -> torch.Tensor:
        if not (isinstance(tensor, torch.Tensor) and tensor.requires_grad):
            return tensor
        self.peak = max(self.peak, len(self._alive))
        self.tagged += 1
        out = _Tag.apply(tensor)
        token = _Token()
        out.grad_fn._course_token = token  # the node (ctx) keeps the token alive
        key, self._next = self._next, self._next + 1
        self._alive.add(key)
        _finalize(token, self._forget, key)
        return out

    @property
    def alive(self) -> int:
        return len(self._alive)
