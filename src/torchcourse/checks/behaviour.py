"""Behavioural tools: they watch what code does instead of reading how it is spelled."""
from __future__ import annotations

from torchcourse import private_builtins

private_builtins(globals())

import collections
from typing import Any, Callable, Iterable

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook as _register_global_step_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves as _tree_leaves

from .core import _fail, _is_plain_tensor

_gradcheck = torch.autograd.gradcheck
_no_grad = torch.no_grad
# Runs a function when the current backward pass finishes (the engine's own mechanism).
_queue_callback = torch.autograd.Variable._execution_engine.queue_callback


# --- autograd graphs ------------------------------------------------------------------------

def graph_nodes(tensor: torch.Tensor) -> list:
    """All autograd nodes reachable from tensor.grad_fn, each once (breadth first)."""
    root = getattr(tensor, "grad_fn", None)
    if root is None:
        return []
    seen, order, queue = set(), [], [root]
    while queue:
        node = queue.pop(0)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        queue.extend(child for child, _ in node.next_functions)
    return order


def graph_depth(tensor: torch.Tensor) -> int:
    """Length of the longest chain of autograd nodes from tensor.grad_fn down to a leaf.

    A tensor with no grad_fn (a leaf, or one computed without tracking) has depth 0."""
    memo: dict[int, int] = {}

    def depth(node) -> int:
        if node is None:
            return 0
        key = id(node)
        if key not in memo:
            memo[key] = 0  # guards against cycles, which autograd graphs never have
            memo[key] = 1 + max((depth(child) for child, _ in node.next_functions), default=0)
        return memo[key]

    return depth(getattr(tensor, "grad_fn", None))


# --- memory ---------------------------------------------------------------------------------

def same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when a and b are windows onto the same memory (a view and its base, say)."""
    if not (_is_plain_tensor(a) and _is_plain_tensor(b)):
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


# --- counting torch calls (vectorisation) ---------------------------------------------------

class TorchCallCounter(TorchFunctionMode):
    """Counts every torch function and Tensor method called while it is active.

    A vectorised answer makes a handful of calls whatever the input size; a Python loop makes
    calls in proportion to the input. Tests compare counts, never times."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        self.calls[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def count_torch_calls(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, TorchCallCounter]:
    """Call fn(*args, **kwargs) and return (its result, the counter of torch calls it made)."""
    counter = TorchCallCounter()
    with counter:
        result = fn(*args, **kwargs)
    return result, counter


# --- devices (where memory was actually allocated) -----------------------------------------

class _DeviceRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in _tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.devices.add(leaf.device.type)
        return out


def devices_touched(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, set[str]]:
    """Call fn and return (its result, the device types of every tensor an operation made).

    Seen at the dispatcher, below Python: `torch.randn(n).to(device)` shows "cpu" even though
    the result ends up on `device`, so a detour through the CPU cannot hide."""
    recorder = _DeviceRecorder()
    with recorder:
        result = fn(*args, **kwargs)
    return result, recorder.devices


# --- module state ---------------------------------------------------------------------------

def module_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """A deep snapshot of what an evaluation must not change: parameters, buffers, the
    train/eval flag of every submodule, and (if given) the optimiser's state tensors."""
    with _no_grad():
        snap = {
            "parameters": {n: p.detach().clone() for n, p in module.named_parameters()},
            "buffers": {n: b.detach().clone() for n, b in module.named_buffers()},
            "training": {n or "(the model)": m.training for n, m in module.named_modules()},
            "grads": {n: None if p.grad is None else p.grad.detach().clone()
                      for n, p in module.named_parameters()},
        }
        if optimizer is not None:
            snap["optimizer"] = {
                f"state[{i}].{k}": v.detach().clone()
                for i, st in enumerate(optimizer.state.values())
                for k, v in st.items() if torch.is_tensor(v)
            }
    return snap


def changed_state(before: dict, after: dict) -> list[str]:
    """Names of everything that differs between two module_state snapshots."""
    changed = []
    for section in before:
        old, new = before[section], after.get(section, {})
        for name in sorted(set(old) | set(new)):
            a, b = old.get(name, "missing"), new.get(name, "missing")
            if torch.is_tensor(a) and torch.is_tensor(b):
                same = a.shape == b.shape and bool(torch.equal(a, b))
            else:
                same = (a is None and b is None) or (type(a) is bool and a == b)
            if not same:
                changed.append(f"{section}: {name}")
    return changed


# --- gradient checks ------------------------------------------------------------------------

def expect_gradcheck(fn: Callable, inputs: Iterable[torch.Tensor], name: str, *, why: str = "") -> None:
    """Compare fn's backward with central finite differences (in float64)."""
    __tracebackhide__ = True
    inputs = tuple(inputs)
    try:
        ok = _gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True)
    except NotImplementedError:
        raise
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Jacobian mismatch" in str(err):
            _fail(f"The gradient computed by {name}'s backward does not match finite differences "
                  f"({first}).", why)
        _fail(f"Checking {name}'s backward failed: {first}.", why)
    if not ok:
        _fail(f"The gradient computed by {name}'s backward does not match finite differences.", why)


# --- training loops -------------------------------------------------------------------------

class TrainingSpy:
    """Watches a training loop through autograd and optimiser hooks, not method names.

    It records, in order: each backward pass (and whether the parameters' .grad already held
    old gradients when it began), each optimizer.step() (and whether any gradient was there
    to use), and explicit zero_grad() calls on the optimiser or the model. `check_loop()`
    turns the record into a verdict with a message that teaches.

        with checks.TrainingSpy(model, optimizer) as spy:
            train_epoch(model, loader, optimizer, loss_fn)
        spy.check_loop(steps=len(loader))

    With optimizer=None it watches the steps of every optimiser that updates one of the
    model's parameters (for code that creates its own optimiser); zero_grad() is then seen
    only when called on the model, and a misplaced optimizer.zero_grad() shows up as a step
    that found no gradients.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.events: list[tuple[str, dict]] = []
        self._handles: list = []
        self._in_backward = False
        self._patched: list[tuple[object, str, object]] = []

    # event recording
    def _on_param_grad(self, param: torch.Tensor):
        def hook(grad):
            if not self._in_backward:
                # First gradient of a new backward pass: was .grad already holding some?
                self._in_backward = True
                old = param.grad
                stale = old is not None and bool(old.detach().abs().sum() != 0)
                self.events.append(("backward", {"stale": stale, "train_mode": self.model.training}))
                _queue_callback(self._end_of_backward)
            return grad
        return hook

    def _end_of_backward(self) -> None:
        self._in_backward = False

    def _on_step(self, optimizer, args, kwargs):
        if self.optimizer is None:
            mine = {id(p) for p in self.model.parameters()}
            if not any(id(p) in mine for g in optimizer.param_groups for p in g["params"]):
                return
        grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
        has = any(g is not None and bool(g.detach().abs().sum() != 0) for g in grads)
        self.events.append(("step", {"has_grad": has}))

    def _wrap_zero_grad(self, owner: object, label: str) -> None:
        original = owner.zero_grad

        def zero_grad(*args, **kwargs):
            self.events.append(("zero_grad", {"on": label}))
            return original(*args, **kwargs)

        self._patched.append((owner, "zero_grad", owner.__dict__.get("zero_grad")))
        owner.zero_grad = zero_grad  # instance attribute only; the class is untouched

    def __enter__(self) -> "TrainingSpy":
        for p in self.model.parameters():
            if p.requires_grad:
                self._handles.append(p.register_hook(self._on_param_grad(p)))
        if self.optimizer is None:
            self._handles.append(_register_global_step_pre_hook(self._on_step))
        else:
            self._handles.append(self.optimizer.register_step_pre_hook(self._on_step))
            self._wrap_zero_grad(self.optimizer, "optimizer")
        self._wrap_zero_grad(self.model, "model")
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for owner, attr, previous in self._patched:
            if previous is None:
                owner.__dict__.pop(attr, None)
            else:
                owner.__dict__[attr] = previous

    # verdicts
    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def check_loop(self, steps: int | None = None, accumulate: int = 1, name: str = "your training loop") -> None:
        """Fail with a teaching message unless the record shows a correct loop:
        every step is preceded by `accumulate` backward passes, the first of which started
        from clean gradients, and every step found gradients to use."""
        __tracebackhide__ = True
        n_steps = self.kinds.count("step")
        n_back = self.kinds.count("backward")
        if n_back == 0:
            _fail(f"{name} never called loss.backward(), so no gradients were computed and "
                  "nothing could learn. Each step needs a backward pass of the loss first.")
        if n_steps == 0:
            _fail(f"{name} computed gradients but never called optimizer.step(), so the "
                  "parameters never changed. After backward(), step() applies the update.")
        if any(not info["train_mode"] for kind, info in self.events if kind == "backward"):
            _fail(f"{name} ran with the model in eval mode. Call model.train() at the start of "
                  "training: layers such as dropout and batch norm behave differently in training.")
        since_step = 0
        first = True
        previous = None  # the event before this one
        for kind, info in self.events:
            if kind == "backward":
                if first and info["stale"]:
                    _fail(f"In {name}, a backward pass began while the parameters' .grad still "
                          "held gradients from an earlier batch. PyTorch adds new gradients to "
                          ".grad instead of replacing them, so call optimizer.zero_grad() once "
                          "per update, before the backward pass.")
                first = False
                since_step += 1
            elif kind == "zero_grad":
                if since_step:
                    if accumulate > 1:
                        _fail(f"In {name}, zero_grad() ran between the backward passes of one "
                              "accumulation window, wiping the gradients of the micro-batches "
                              "before it. When accumulating, clear the gradients once per "
                              "update: after each optimizer.step(), not after each backward().")
                    _fail(f"In {name}, zero_grad() ran after loss.backward() and before "
                          "optimizer.step(), wiping the gradients the step needed. The order "
                          "is zero_grad, forward, loss, backward, step.")
                first = True
            elif kind == "step":
                if since_step == 0 and previous == "step":
                    _fail(f"In {name}, optimizer.step() ran twice with no backward pass in "
                          "between, so the second step reapplied the same gradients. Each "
                          "update needs its own zero_grad, forward, loss and backward first.")
                if since_step == 0:
                    _fail(f"In {name}, optimizer.step() ran before loss.backward(), so it used "
                          "stale or missing gradients. The order is zero_grad, forward, loss, "
                          "backward, step.")
                if not info["has_grad"]:
                    _fail(f"In {name}, optimizer.step() found no gradients to apply. Make sure "
                          "backward() runs on the loss and nothing clears .grad before step().")
                if since_step != accumulate:
                    if accumulate == 1:
                        _fail(f"In {name}, {since_step} backward passes fed a single "
                              "optimizer.step(); each batch should get its own update.")
                    passes = "backward pass" if since_step == 1 else "backward passes"
                    _fail(f"In {name}, {since_step} {passes} fed one optimizer.step(), "
                          f"but gradient accumulation over {accumulate} micro-batches should "
                          f"step once every {accumulate} backward passes.")
                since_step = 0
                first = True
            previous = kind
        # Checked after the order, whose messages say more about what went wrong.
        if steps is not None and n_steps != steps:
            per = f"group of {accumulate} batches" if accumulate > 1 else "batch"
            _fail(f"{name} called optimizer.step() {n_steps} times; this run should make "
                  f"exactly {steps} updates (one per {per}).")
