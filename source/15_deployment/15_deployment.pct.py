# %% [markdown] role="prose" grade_id="title"
# # 15 · Deployment: from a notebook to a running service
#
# **Time:** about 2 h of work (3,500 words to read, 8 exercises). Run top to bottom, the finished
# notebook takes about 10 s.
#
# A model that lives in a notebook runs inside Python, next to the code that built it. A
# deployed model runs somewhere else: a web server with a latency budget, a phone, a C++
# program, a browser. Getting it there means two things. First, **the model has to leave
# Python**: its computation is captured as a graph of operations that another runtime can
# execute without your class definitions. Second, **the model has to get cheaper**: fewer
# bytes to ship and fewer operations to run, without losing the accuracy that made it worth
# shipping.
#
# Every way of capturing a model has the same weak spot: the graph records what the model
# did for *one* example input, so anything that depends on that example (its batch size, the
# branch an `if` took, the mode the model was in) can be frozen into the graph by accident.
# This notebook is about noticing that, and checking the exported model against the original
# every time.
#
# **By the end of this notebook you will be able to:**
# - write an inference function that is deterministic and cheap: `eval()`, `torch.inference_mode()`;
# - capture a model with `torch.export` and keep its batch size dynamic;
# - predict where `torch.jit.trace` and `torch.jit.script` disagree, and pick the right one for
#   a model with data-dependent control flow;
# - export a model to ONNX and check it against ONNX Runtime;
# - quantise a model's linear layers to 8-bit integers and measure what it costs in accuracy
#   and saves in bytes;
# - prune weights by magnitude across a whole network, and say what pruning does not buy.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import copy
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript  # noqa: F401  (torch's ONNX exporter builds its graphs with it)
import torch
import torch._dynamo  # noqa: F401  (the tracer behind torch.export: loaded once, up front)
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from torch import nn
from torch.ao.quantization import quantize_dynamic

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| ONNX", onnx.__version__, "| ONNX Runtime", ort.__version__,
      "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-model"
# ## The model we will ship
#
# The next cell defines `DigitsNet`, a small network for scikit-learn's 8×8 handwritten digits
# (each image flattened to 64 numbers in [0, 1]), with the two layers whose behaviour depends
# on the module's mode: `BatchNorm1d` (batch statistics in training, running statistics in
# evaluation) and `Dropout` (random zeros in training, nothing in evaluation). It trains one
# for a few seconds and leaves it as training leaves every model: **in training mode**. That
# is the state in which models usually reach the code that ships them.

# %% role="locked" grade_id="digits-model"
from sklearn.datasets import load_digits


class DigitsNet(nn.Module):
    """A small MLP for 8x8 digits: (N, 64) or (N, 1, 8, 8) in, (N, n_classes) logits out."""

    def __init__(self, hidden=64, n_classes=10):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x):
        return self.layers(x)


def load_digit_vectors(device, seed=0):
    """(x_train, y_train, x_val, y_val): (N, 64) float32 in [0, 1] and int64 labels, 1,437 / 360."""
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, val = order[:1437], order[1437:]
    return x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device)


def train_digits_net(model, x, y, epochs=5, batch_size=128, seed=0):
    """A plain training loop (05). Leaves the model in training mode, as training does."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            batch = batch.to(x.device)
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model


x_train, y_train, x_val, y_val = load_digit_vectors(checks.DEVICE)
torch.manual_seed(0)
digits_model = train_digits_net(DigitsNet().to(checks.DEVICE), x_train, y_train)
print(f"trained DigitsNet on {len(x_train)} images; it is in training mode: {digits_model.training}")


# %% [markdown] role="prose" grade_id="md-infer"
# ## 1 · Inference: the same answer every time, and nothing else
#
# A served model answers requests. Two requests with the same image must get the same
# answer, and answering must cost as little as possible. Two switches give you that, and
# they are independent of each other:
#
# - **`model.eval()`** changes *what the layers compute*. Dropout stops dropping;
#   batch normalisation uses its stored running statistics instead of the statistics of the
#   current batch, so an image's answer no longer depends on which other images came with it,
#   a batch of one works at all, and the stored statistics stop being updated by requests.
# - **`torch.inference_mode()`** changes *what autograd records*: nothing. No graph, no saved
#   tensors, not even the version counters that `torch.no_grad()` still keeps (03). Tensors
#   made inside it are *inference tensors*: cheaper, and they can never join a graph later,
#   which is what a serving path wants. `no_grad` is the one to use when the results may still
#   meet autograd later, as in a validation loop during training.
#
# Neither implies the other: `eval()` alone still builds a graph for every request, and
# `inference_mode()` alone still drops random units and normalises with batch statistics.
#
# ### Exercise 1 · `infer`
#
# Write `infer(model, x)`: run `model` on the batch `x` for serving and return its logits.
# The answer must be deterministic (the same `x` gives the same logits, whatever else is in
# the batch), must not change the model's parameters or buffers, and must record nothing for
# autograd: the result is an inference tensor. Leave the model in evaluation mode (a served
# model never trains).
#
# <details><summary>Hint 1</summary>
#
# Two lines of setup, one line of work: the mode, the context manager, the forward pass.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.is_inference(t)` tells you whether `t` was made under `torch.inference_mode()`;
# `t.requires_grad` whether it is part of a graph. Try both on your result.
# </details>

# %% role="answer" grade_id="infer"
def infer(model, x):
    """Logits of model for the batch x: eval mode, inference mode, deterministic."""
    ### BEGIN SOLUTION
    model.eval()
    with torch.inference_mode():
        return model(x)
    ### END SOLUTION


# %% role="test" grade_id="test-infer-sanity" points=1
_logits = infer(digits_model, x_val[:5])
checks.expect_tensor(_logits, "infer(digits_model, x_val[:5])", shape=(5, 10), dtype=torch.float32,
                     why="infer returns the model's logits, one row of 10 per image.")
print("predicted classes:", _logits.argmax(dim=1).tolist(), "| true:", y_val[:5].tolist())

# %% role="test" grade_id="test-infer" points=3
# Hidden tests run infer on a fresh network with dropout and batch norm, handed over in training
# mode: same logits twice, logits of a batch of one, no change to its buffers, no autograd record.
### BEGIN HIDDEN TESTS
with checks.seeded(11):
    _model = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
                           nn.Linear(32, 5)).to(checks.DEVICE)
    with torch.no_grad():  # give batch norm running statistics of its own
        _model[1].running_mean.uniform_(-1.0, 1.0)
        _model[1].running_var.uniform_(0.5, 2.0)
    _x = torch.randn(9, 12, device=checks.DEVICE)
_reference = copy.deepcopy(_model).eval()
with torch.no_grad():
    _expected = _reference(_x)
_model.train()
_before = checks.module_state(_model)
with checks.seeded(12):
    _first = infer(_model, _x)
    _second = infer(_model, _x)
checks.expect_tensor(_first, "infer(model, x)", shape=(9, 5), dtype=torch.float32,
                     why="infer returns the model's logits for the batch.")
_changed = checks.changed_state(_before, checks.module_state(_model))
_changed = [_c for _c in _changed if not _c.startswith("training")]  # eval() is expected
checks.expect(not _changed,
              f"infer changed the model's parameters or buffers ({', '.join(_changed[:3])}). A model handed over "
              "in training mode updates batch norm's running statistics on every forward pass: every request "
              "would shift them. Put the model in eval mode before running it.")
checks.expect(torch.equal(_first.detach(), _second.detach()),
              "Two calls of infer with the same input gave different logits: dropout is still active. Serving "
              "needs model.eval(), which turns dropout off and makes batch norm use its running statistics.")
checks.expect_close(_first.detach(), _expected, "infer's logits", rtol=1e-4, atol=1e-5,
                    why="They should be the logits of the model in evaluation mode. If they are not, the model "
                        "was not in eval mode (batch norm normalised with the batch's own statistics), or infer "
                        "returns something other than the raw logits (no softmax, no argmax).")
with checks.seeded(13):
    _one = infer(_model, _x[3:4])
checks.expect_close(_one.detach(), _expected[3:4], "infer's logits for a batch of one image", rtol=1e-4,
                    atol=1e-5, why="An image's answer must not depend on the rest of its batch: eval mode.")
checks.expect(not _first.requires_grad and _first.grad_fn is None,
              "infer's result is part of an autograd graph (requires_grad=True): every request records a graph "
              "it will never use. Run the forward pass under torch.inference_mode().")
checks.expect(torch.is_inference(_first),
              "infer's result is not an inference tensor: the forward pass ran outside torch.inference_mode() "
              "(torch.no_grad() records no graph but still keeps version counters and makes ordinary tensors). "
              "For serving, use torch.inference_mode().")
checks.expect(not _model.training,
              "After infer the model is back in training mode. A served model stays in eval mode.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-export"
# ## 2 · `torch.export`: the whole forward pass as one graph
#
# `torch.export.export(model, (example,))` runs the model's forward pass with *symbolic*
# tensors and records every PyTorch operation it performs, as a graph of `aten` operations,
# into an `ExportedProgram`: the parameters and buffers, the graph, and the assumptions the
# graph makes about its inputs. The program no longer needs your Python class;
# `program.module()` gives you a callable module back to test it with, and other tools (ONNX
# below, AOTInductor, ExecuTorch for phones) take the program from there.
#
# Two things in the example leak into the graph unless you say otherwise:
#
# - **Its shapes.** By default every dimension of the example is a constant of the graph:
#   exported with a batch of 4, the program refuses a batch of 3. A serving model gets
#   batches of every size, so mark the batch dimension as **dynamic**:
#   `batch = torch.export.Dim("batch", min=1)` and `dynamic_shapes=({0: batch},)`, one entry
#   per positional input, mapping a dimension's index to its `Dim`. Export then checks that
#   the model really works for any batch size, and fails if some code pins it.
# - **The module's mode.** Export records the operations that run. In training mode those
#   include dropout's random mask and batch norm's batch statistics. Export in eval mode.
#
# ### Exercise 2 · `export_for_serving`
#
# Write `export_for_serving(model, example)`: export `model` with `torch.export` for inference,
# from the example batch `example` (one positional input), with a dynamic batch dimension of
# at least 1. Return the `ExportedProgram`.
#
# <details><summary>Hint 1</summary>
#
# `torch.export.export(model, (example,), dynamic_shapes=...)`: the example goes in a tuple,
# and `dynamic_shapes` has the same structure as that tuple.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The batch is dimension 0 of the first (and only) input: `dynamic_shapes=({0: batch},)`.
# Give the `Dim` a `min=1`, so that a single request is a valid batch.
# </details>

# %% role="answer" grade_id="export"
def export_for_serving(model, example):
    """An ExportedProgram of model in eval mode, with a dynamic batch dimension (>= 1)."""
    ### BEGIN SOLUTION
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    ### END SOLUTION


# %% role="test" grade_id="test-export" points=4
# A fresh network with dropout and batch norm, handed over in training mode, exported from a batch of 4.
with checks.seeded(21):
    _model = nn.Sequential(nn.Linear(10, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Dropout(0.5),
                           nn.Linear(24, 3)).to(checks.DEVICE)
    with torch.no_grad():
        _model[1].running_mean.uniform_(-1.0, 1.0)
        _model[1].running_var.uniform_(0.5, 2.0)
_reference = copy.deepcopy(_model).eval()
_model.train()
try:
    with checks.seeded(22):
        _program = export_for_serving(_model, torch.randn(4, 10, device=checks.DEVICE))
except NotImplementedError:
    raise
except Exception as _err:
    checks.expect(False, f"export_for_serving raised {type(_err).__name__}: {str(_err)[:300]} ... If export says a "
                         "dimension you marked dynamic was specialised to a constant, you marked the wrong dimension: "
                         "the batch is dimension 0 of the one input, so dynamic_shapes=({0: batch},).")
checks.expect(type(_program) is torch.export.ExportedProgram,
              f"export_for_serving should return a torch.export.ExportedProgram (from torch.export.export), but it "
              f"returned {checks.describe(_program)}.")
print(f"exported: {len(_program.graph.nodes)} graph nodes")
# Hidden tests run the program on batches of other sizes (one included) and compare with the model in
# eval mode.
### BEGIN HIDDEN TESTS
_exported = _program.module()
for _n in (4, 3, 1, 17):
    with checks.seeded(30 + _n):
        _x = torch.randn(_n, 10, device=checks.DEVICE)
    try:
        _out = _exported(_x)
    except Exception as _err:  # the exported program checks its input shapes
        checks.expect(False,
                      f"The exported program refuses a batch of {_n} ({type(_err).__name__}): its batch size "
                      "is a constant of the graph. By default export specialises every dimension to the "
                      "example's size; declare the batch dimension dynamic with torch.export.Dim and "
                      "dynamic_shapes, with min=1 (Hint 2).")
    with torch.no_grad():
        _expected = _reference(_x)
    checks.expect_close(_out, _expected, f"The exported program's output for a batch of {_n}", rtol=1e-4, atol=1e-5,
                        why="It should compute what the model computes in eval mode. Export records the operations "
                            "that run: exported in training mode, the graph keeps dropout's random mask and batch "
                            "norm's batch statistics. Call model.eval() before exporting.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-trace"
# ## 3 · Trace or script: where control flow goes
#
# Before `torch.export`, PyTorch's way out of Python was **TorchScript** (`torch.jit`). It is
# deprecated now (PyTorch warns when you use it; `torch.export` is its successor), but many
# deployed models still run on it, and the question it makes you answer is the one every
# capture raises. It has two ways of capturing a model, and they treat Python control flow in
# opposite ways:
#
# - **`torch.jit.trace(model, example)`** runs the model once on `example` and records the
#   tensor operations that ran. Python itself is not recorded: an `if` on a tensor's value
#   becomes whichever branch the example took; a `for` loop is unrolled as many times as it
#   ran; a Python number computed from the example becomes a constant. PyTorch prints a
#   `TracerWarning` for some of these, not for all. Calls with other inputs then replay the
#   same operations, right or wrong.
# - **`torch.jit.script(model)`** compiles the *source code* of `forward` (a subset of
#   Python, with types), so `if` and `for` survive as real control flow, decided again at
#   every call.
#
# `torch.export` sits between the two: it traces, but it does not quietly pick a branch. When
# an `if` depends on a tensor's *value*, export stops with an error that says so (the fix
# there is `torch.cond`, which records both branches).
#
# ### Exercise 3 · Predict, then verify
#
# The next cell defines two tiny modules. **Without running anything**, predict what each
# capture returns, and fill in `capture_predictions`: a list of floats, or the string
# `"error"` if the call raises.
#
# | key | what runs |
# |---|---|
# | `"gate traced"` | `torch.jit.trace(Gate(), torch.ones(3))` called on `torch.tensor([-1., -2., 2.])` |
# | `"gate scripted"` | `torch.jit.script(Gate())` called on the same tensor |
# | `"gate exported"` | `torch.export.export(Gate(), (torch.ones(3),)).module()` called on the same tensor |
# | `"repeat traced"` | `torch.jit.trace(Repeat(), torch.zeros(2))` called on `torch.zeros(4)` |
# | `"repeat scripted"` | `torch.jit.script(Repeat())` called on `torch.zeros(4)` |
#
# <details><summary>Hint 1</summary>
#
# What is the sum of `[-1, -2, 2]`, and which branch did the example `torch.ones(3)` take?
# </details>
#
# <details><summary>Hint 2</summary>
#
# How many times did `Repeat`'s loop run while it was being traced?
# </details>

# %% role="locked" grade_id="capture-modules"
class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class Repeat(nn.Module):
    def forward(self, x):
        for _ in range(x.shape[0]):
            x = x + 1
        return x


print("eager Gate on [-1, -2, 2]:", Gate()(torch.tensor([-1.0, -2.0, 2.0])).tolist())
print("eager Repeat on zeros(4):", Repeat()(torch.zeros(4)).tolist())

# %% role="answer" grade_id="capture-predictions"
capture_predictions = {
    "gate traced": None,      # a list of floats, or "error"
    "gate scripted": None,
    "gate exported": None,
    "repeat traced": None,
    "repeat scripted": None,
}
### BEGIN SOLUTION
capture_predictions = {
    "gate traced": [-2.0, -4.0, 4.0],
    "gate scripted": [-2.0, -3.0, 1.0],
    "gate exported": "error",
    "repeat traced": [2.0, 2.0, 2.0, 2.0],
    "repeat scripted": [4.0, 4.0, 4.0, 4.0],
}
### END SOLUTION

# %% role="test" grade_id="test-capture-predictions" points=3
# Hidden tests capture the two modules the three ways and compare with your predictions.
_keys = {"gate traced", "gate scripted", "gate exported", "repeat traced", "repeat scripted"}
checks.expect(isinstance(capture_predictions, dict) and set(capture_predictions) == _keys,
              "`capture_predictions` should be a dict with exactly the keys 'gate traced', 'gate scripted', "
              "'gate exported', 'repeat traced' and 'repeat scripted'.")
for _k in sorted(_keys):
    _v = capture_predictions[_k]
    checks.expect(_v == "error" if type(_v) is str else
                  (type(_v) is list and all(type(_e) is int or type(_e) is float for _e in _v)),
                  f"capture_predictions[{_k!r}] should be a list of numbers or the string 'error'; it is "
                  f"{checks.describe(_v)}.")
### BEGIN HIDDEN TESTS
class _Gate(nn.Module):  # the same modules as above, defined here so that the test owns them
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class _Repeat(nn.Module):
    def forward(self, x):
        for _ in range(x.shape[0]):
            x = x + 1
        return x


# torch.jit.script compiles source code, which only the notebook's own cells have: script the
# modules of the cell above, after checking that they still compute what this test's copies do.
for _mine, _theirs, _inputs in [(_Gate, Gate, [torch.tensor([-1.0, -2.0, 2.0]), torch.ones(3), torch.randn(5)]),
                                (_Repeat, Repeat, [torch.zeros(4), torch.zeros(2), torch.randn(3)])]:
    for _v in _inputs:
        checks.expect(torch.equal(_mine()(_v), _theirs()(_v)),
                      f"{_theirs.__name__} no longer computes what the locked cell defines: run the notebook's "
                      "cells as they are, and predict for the modules shown there.")


def _run(capture):
    try:
        return [float(_e) for _e in capture().tolist()]
    except Exception:
        return "error"


_v = torch.tensor([-1.0, -2.0, 2.0])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the TracerWarnings are part of the lesson, not of the grade
    _truth = {
        "gate traced": _run(lambda: torch.jit.trace(_Gate(), torch.ones(3))(_v)),
        "gate scripted": _run(lambda: torch.jit.script(Gate())(_v)),
        "gate exported": _run(lambda: torch.export.export(_Gate(), (torch.ones(3),)).module()(_v)),
        "repeat traced": _run(lambda: torch.jit.trace(_Repeat(), torch.zeros(2))(torch.zeros(4))),
        "repeat scripted": _run(lambda: torch.jit.script(Repeat())(torch.zeros(4))),
    }
_why = {
    "gate traced": "A trace records the operations that ran for the example: the example's sum was positive, so "
                   "the trace is 'x * 2' for every input, whatever its sum (Hint 1).",
    "gate scripted": "Scripting compiles the if statement itself, so the branch is decided again at every call.",
    "gate exported": "torch.export traces too, but an if on a tensor's value cannot be decided for symbolic "
                     "inputs, and export refuses to pick a branch silently.",
    "repeat traced": "A trace unrolls Python loops: the loop ran as many times as the example was long, and the "
                     "trace adds 1 exactly that many times for every input (Hint 2).",
    "repeat scripted": "Scripting keeps the loop and reads x.shape[0] again at every call.",
}
for _k in sorted(_keys):
    _said = capture_predictions[_k]
    _said = _said if type(_said) is str else [float(_e) for _e in _said]
    checks.expect(_said == _truth[_k], f"Your prediction for {_k!r} is not what PyTorch does. {_why[_k]}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-script"
# ## 4 · Shipping a model with a branch
#
# The next cell holds `RoutedNet`, a model that picks one of two heads for each batch from the
# batch's mean activation, and the way someone shipped it: `torch.jit.trace` on one example
# batch. The trace looks fine on the example, and gives wrong answers for every batch that
# should take the other branch. Nothing fails, no exception is raised: the only way to find out
# is to **compare the shipped module with the original** on inputs that exercise every path.
#
# A TorchScript module is self-contained: `torch.jit.save(module, file)` writes the graph and
# the weights, and `torch.jit.load(file)` (in Python, or `torch::jit::load` in C++) runs it
# without the class that defined it.
#
# ### Exercise 4 · Fix a broken snippet
#
# Write `to_torchscript(model)`: return a TorchScript module that computes what `model` does
# in evaluation mode, for every input, both branches included, and that survives
# `torch.jit.save` and `torch.jit.load`. The hidden test builds `RoutedNet`s of other sizes
# and checks inputs that go down each branch.
#
# <details><summary>Hint 1</summary>
#
# Which of the two ways of section 3 keeps an `if` statement?
# </details>
#
# <details><summary>Hint 2</summary>
#
# The mode still matters: a scripted module in training mode keeps its dropout active.
# </details>

# %% role="locked" grade_id="routed-net"
class RoutedNet(nn.Module):
    """Features, then one of two heads, chosen per batch by the sign of the mean feature."""

    def __init__(self, d_in=4, hidden=16, n_out=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Dropout(0.3))
        self.up = nn.Linear(hidden, n_out)
        self.down = nn.Linear(hidden, n_out)

    def forward(self, x):
        h = self.body(x)
        if h.mean() > 0:
            return self.up(h)
        return self.down(h)


def to_torchscript_broken(model):
    model.eval()
    return torch.jit.trace(model, torch.ones(2, 4))


torch.manual_seed(0)
_routed = RoutedNet().eval()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _shipped = to_torchscript_broken(_routed)
for _name, _x in [("ones", torch.ones(2, 4)), ("minus ones", -torch.ones(2, 4))]:
    with torch.no_grad():
        _same = torch.allclose(_routed(_x), _shipped(_x))
    _branch = "up" if _routed.body(_x).mean() > 0 else "down"
    print(f"input of {_name}: the model takes the {_branch} head; the traced module agrees with it: {_same}")


# %% role="answer" grade_id="torchscript"
def to_torchscript(model):
    """A TorchScript module computing model (in eval mode) for every input, branches included."""
    ### BEGIN SOLUTION
    model.eval()
    return torch.jit.script(model)
    ### END SOLUTION


# %% role="test" grade_id="test-torchscript-sanity" points=1
_scripted = to_torchscript(RoutedNet())
checks.expect(isinstance(_scripted, torch.jit.ScriptModule),
              f"to_torchscript should return a TorchScript module (torch.jit.ScriptModule), but it returned "
              f"{checks.describe(_scripted)}.")
print(type(_scripted).__name__)

# %% role="test" grade_id="test-torchscript" points=3
# Hidden tests script RoutedNets of other sizes (handed over in training mode) with to_torchscript,
# save and load the result, and compare it with the model in eval mode on inputs for both branches.
### BEGIN HIDDEN TESTS
# First make sure that RoutedNet still has its branch: traced on one input, it must go wrong on another.
with checks.seeded(40), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _probe = RoutedNet(3, 8, 2).eval()
    _x_up, _x_down = None, None
    for _ in range(200):
        _x = torch.randn(5, 3) * 3
        with torch.no_grad():
            if _probe.body(_x).mean() > 0:
                _x_up = _x if _x_up is None else _x_up
            else:
                _x_down = _x if _x_down is None else _x_down
    checks.expect(_x_up is not None and _x_down is not None
                  and not torch.allclose(torch.jit.trace(_probe, _x_up)(_x_down), _probe(_x_down)),
                  "RoutedNet no longer has the data-dependent branch the locked cell defines: run the notebook's "
                  "cells as they are.")
for _sizes, _seed in [((4, 16, 3), 41), ((6, 10, 5), 42)]:
    with checks.seeded(_seed):
        _model = RoutedNet(*_sizes).to(checks.DEVICE)
    _reference = copy.deepcopy(_model).eval()
    _model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _scripted = to_torchscript(_model)
    checks.expect(isinstance(_scripted, torch.jit.ScriptModule),
                  f"to_torchscript should return a TorchScript module, but it returned {checks.describe(_scripted)}.")
    _buffer = io.BytesIO()
    try:
        torch.jit.save(_scripted, _buffer)
        _buffer.seek(0)
        _loaded = torch.jit.load(_buffer, map_location=checks.DEVICE)
    except Exception as _err:
        checks.expect(False, f"The module to_torchscript returns cannot be saved and loaded with torch.jit.save and "
                             f"torch.jit.load ({type(_err).__name__}). Return the result of torch.jit.script.")
    _found = {"up": 0, "down": 0}
    with checks.seeded(_seed + 100):
        for _ in range(200):
            _x = torch.randn(5, _sizes[0], device=checks.DEVICE) * 3
            with torch.no_grad():
                _branch = "up" if _reference.body(_x).mean() > 0 else "down"
                if _found[_branch] >= 3:
                    continue
                _found[_branch] += 1
                _expected = _reference(_x)
                _got = _loaded(_x)
                checks.expect(torch.equal(_got, _loaded(_x)),
                              "The TorchScript module gives different outputs for the same batch: it was scripted "
                              "in training mode, so its dropout stays active. Call model.eval() first.")
            checks.expect_close(_got, _expected, f"The saved and loaded TorchScript module's output for a batch that "
                                                 f"takes the {_branch} head", rtol=1e-4, atol=1e-5,
                                why="It must compute what the model computes in eval mode for every input. A "
                                    "torch.jit.trace records only the branch its example took, so batches that take "
                                    "the other head get the wrong one: script the model instead, which compiles "
                                    "the if statement.")
    checks.expect(min(_found.values()) > 0, "(test set-up) no input took one of the branches")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-onnx"
# ## 5 · ONNX: a graph any runtime can run
#
# **ONNX** is a file format for computation graphs with a fixed, versioned set of operators
# (the *opset*). Many runtimes execute it: **ONNX Runtime** on CPUs and GPUs, TensorRT,
# OpenVINO, runtimes in browsers and on phones. `torch.onnx.export(model, (example,),
# dynamo=True, ...)` first captures the model with `torch.export` (section 2), then translates
# every `aten` operation into ONNX operators. It returns an `ONNXProgram`;
# `program.model_proto` is the ONNX model itself, and `.SerializeToString()` its bytes, which
# is what you ship. Arguments worth knowing:
#
# - `input_names=[...]`, `output_names=[...]`: the names the runtime will use to feed and
#   fetch tensors. The serving code depends on them, so choose them;
# - `dynamic_shapes=...`: as for `torch.export`; without it the ONNX graph has a fixed batch;
# - `training`: the mode to export in. Unlike `torch.export`, `torch.onnx.export` exports in
#   eval mode unless told otherwise (and puts the model back in its mode afterwards).
#
# ONNX Runtime knows nothing about PyTorch: it takes NumPy arrays in and gives NumPy arrays
# back, fed by name.
#
# ```python
# session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
# name = session.get_inputs()[0].name                        # the graph's input names
# outputs = session.run(None, {name: array})                 # None: every output, in a list
# ```
#
# A translation can go wrong in ways no exception reports (an operator with a subtly different
# definition, a default that differs). So **every export is checked** by running the same
# inputs through the original and through the runtime and comparing, with a tolerance that
# allows for a different order of floating-point additions.
#
# ### Exercise 5 · `export_onnx` and `run_onnx`
#
# - `export_onnx(model, example)`: the ONNX model of `model` in eval mode, as `bytes`, from the
#   example batch `example`, with its input named `"images"`, its output named `"logits"`, and
#   a dynamic batch dimension (1 and up).
# - `run_onnx(model_bytes, x)`: run an ONNX model with ONNX Runtime's CPU provider on the batch
#   `x` (a torch tensor, on any device, possibly part of a graph) fed to the model's first
#   input, whatever its name, and return its first output as a float32 torch tensor on the CPU.
#
# <details><summary>Hint 1</summary>
#
# `torch.onnx.export(model, (example,), dynamo=True, input_names=[...], output_names=[...],
# dynamic_shapes=...)` returns an `ONNXProgram`; its `model_proto.SerializeToString()` is the
# bytes. `ort.InferenceSession` accepts those bytes directly, no file needed.
# </details>
#
# <details><summary>Hint 2</summary>
#
# ONNX Runtime wants a NumPy array: a tensor has to leave the graph (`detach`) and the GPU
# (`cpu`) before `.numpy()`. `torch.from_numpy` turns the answer back into a tensor.
# </details>

# %% role="answer" grade_id="onnx"
def export_onnx(model, example):
    """The ONNX model (bytes) of model in eval mode: input "images", output "logits", dynamic batch."""
    ### BEGIN SOLUTION
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                dynamic_shapes=({0: batch},))
    return program.model_proto.SerializeToString()
    ### END SOLUTION


def run_onnx(model_bytes, x):
    """The first output of the ONNX model for the batch x, run by ONNX Runtime: a float32 CPU tensor."""
    ### BEGIN SOLUTION
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: x.detach().cpu().numpy()})
    return torch.from_numpy(outputs[0])
    ### END SOLUTION


# %% role="test" grade_id="test-onnx-export" points=4
# A fresh network with dropout and batch norm, handed over in training mode, exported from a batch of 4.
with checks.seeded(51):
    _model = nn.Sequential(nn.Linear(7, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Dropout(0.5),
                           nn.Linear(20, 4)).to(checks.DEVICE)
    with torch.no_grad():
        _model[1].running_mean.uniform_(-1.0, 1.0)
        _model[1].running_var.uniform_(0.5, 2.0)
_reference = copy.deepcopy(_model).eval()
_model.train()
with checks.seeded(52):
    _bytes = export_onnx(_model, torch.randn(4, 7, device=checks.DEVICE))
checks.expect(type(_bytes) is bytes, f"export_onnx should return the ONNX model as bytes, but it returned "
                                     f"{checks.describe(_bytes)}. Use the ONNXProgram's model_proto.SerializeToString().")
print(f"ONNX model: {len(_bytes):,} bytes; graph inputs {[_i.name for _i in onnx.load_from_string(_bytes).graph.input]}")
# Hidden tests check the ONNX model and its names, run it with ONNX Runtime on batches of several
# sizes and compare with the model in eval mode.
### BEGIN HIDDEN TESTS
try:
    _proto = onnx.load_from_string(_bytes)
    onnx.checker.check_model(_proto)
except Exception as _err:
    checks.expect(False, f"The bytes export_onnx returns are not a valid ONNX model ({type(_err).__name__}). "
                         "Return program.model_proto.SerializeToString().")
checks.expect([_i.name for _i in _proto.graph.input] == ["images"] and
              [_o.name for _o in _proto.graph.output] == ["logits"],
              f"The ONNX model's inputs are named {[_i.name for _i in _proto.graph.input]} and its outputs "
              f"{[_o.name for _o in _proto.graph.output]}; the serving code feeds 'images' and fetches 'logits'. "
              "Name them with input_names and output_names.")
_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_session = ort.InferenceSession(_bytes, _options, providers=["CPUExecutionProvider"])
for _n in (4, 1, 9):
    with checks.seeded(60 + _n):
        _x = torch.randn(_n, 7, device=checks.DEVICE)
    try:
        _out = _session.run(["logits"], {"images": _x.cpu().numpy()})[0]
    except Exception as _err:
        checks.expect(False,
                      f"ONNX Runtime refuses a batch of {_n} for the model export_onnx made "
                      f"({type(_err).__name__}): the ONNX graph has a fixed batch size. Give torch.onnx.export "
                      "dynamic_shapes with a torch.export.Dim for dimension 0 (min=1).")
    with torch.no_grad():
        _expected = _reference(_x).cpu()
    checks.expect_close(torch.from_numpy(_out), _expected, f"ONNX Runtime's output for a batch of {_n}",
                        rtol=1e-4, atol=1e-4,
                        why="The ONNX model should compute what the model computes in eval mode, for any batch.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-run-onnx" points=2
# An ONNX model built by hand, without PyTorch: tanh(features @ w + b), with two outputs.
from onnx import TensorProto as _TensorProto, helper as _helper, numpy_helper as _numpy_helper

with checks.seeded(71):
    _w, _b = torch.randn(5, 6), torch.randn(6)
_graph = _helper.make_graph(
    [_helper.make_node("MatMul", ["features", "w"], ["linear"]), _helper.make_node("Add", ["linear", "b"], ["pre"]),
     _helper.make_node("Tanh", ["pre"], ["scores"])],
    "hidden_test_model",
    [_helper.make_tensor_value_info("features", _TensorProto.FLOAT, ["n", 5])],
    [_helper.make_tensor_value_info("scores", _TensorProto.FLOAT, ["n", 6]),
     _helper.make_tensor_value_info("pre", _TensorProto.FLOAT, ["n", 6])],
    initializer=[_numpy_helper.from_array(_w.numpy(), "w"), _numpy_helper.from_array(_b.numpy(), "b")])
_proto = _helper.make_model(_graph, opset_imports=[_helper.make_opsetid("", 17)])
_proto.ir_version = 8
_bytes = _proto.SerializeToString()
try:
    _out = run_onnx(_bytes, torch.ones(3, 5, device=checks.DEVICE))
except NotImplementedError:
    raise
except Exception as _err:
    checks.expect(False, f"run_onnx failed on a model whose input is named 'features' ({type(_err).__name__}: "
                         f"{str(_err)[:200]}). Read the input's name from session.get_inputs() instead of assuming "
                         "it, and hand ONNX Runtime a NumPy array (Hint 2).")
checks.expect_tensor(_out, "run_onnx(model_bytes, torch.ones(3, 5))", shape=(3, 6), dtype=torch.float32, device="cpu",
                     why="run_onnx returns the model's first output as a float32 tensor on the CPU: turn ONNX "
                         "Runtime's NumPy array back into a tensor with torch.from_numpy.")
# Hidden tests run run_onnx on a tensor that is part of an autograd graph and compare with PyTorch.
### BEGIN HIDDEN TESTS
with checks.seeded(72):
    _x = torch.randn(7, 5, device=checks.DEVICE, requires_grad=True)
try:
    _out = run_onnx(_bytes, _x * 1.0)
except NotImplementedError:
    raise
except Exception as _err:
    checks.expect(False,
                  f"run_onnx failed on a model whose input is named 'features', fed a tensor that is part of an "
                  f"autograd graph ({type(_err).__name__}: {str(_err)[:200]}). Read the input's name from "
                  "session.get_inputs() instead of assuming it, and hand ONNX Runtime a NumPy array: "
                  "x.detach().cpu().numpy() (Hint 2).")
checks.expect_tensor(_out, "run_onnx's result", shape=(7, 6), dtype=torch.float32, device="cpu",
                     why="Return the first output as a float32 tensor on the CPU (torch.from_numpy).")
_expected = torch.tanh(_x.detach().cpu() @ _w + _b)
checks.expect_close(_out, _expected, "run_onnx's result", rtol=1e-4, atol=1e-5,
                    why="It should be the ONNX model's first output (session.run returns a list, in the order of "
                        "the graph's outputs) for the whole batch x.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-quant"
# ## 6 · Dynamic quantisation: 8-bit weights for linear layers
#
# A float32 weight takes 4 bytes. **Quantisation** stores a tensor as 8-bit integers `q` and
# maps them back with a scale and a zero point, `w ≈ scale · (q − zero_point)`: a quarter of
# the bytes, and integer matrix multiplications, which CPUs do faster. The price is rounding:
# every weight moves by up to half a step `scale / 2`.
#
# **Dynamic** quantisation is the variant that needs no calibration data:
#
# - the **weights** of the chosen layer types are quantised once, ahead of time;
# - the **activations** are quantised on the fly at every call, with a scale computed from
#   that batch's own range (that is the "dynamic"), and the result comes back as float.
#
# It suits models whose time goes into `nn.Linear` (and `nn.LSTM`) layers: MLPs, recurrent
# networks, transformers on a CPU. `quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)`
# returns a copy with every `nn.Linear` replaced by a quantised one; other layers stay as they
# were. Three things to know:
#
# - its kernels run **on the CPU only** (x86's fbgemm, ARM's qnnpack): quantise a CPU copy,
#   even if the model was trained on a GPU, and feed it CPU tensors;
# - it is **for inference**: `quantize_dynamic` switches the copy to eval mode itself, and the
#   result is not for training;
# - `torch.ao.quantization` is deprecated in favour of the separate `torchao` package (PyTorch
#   warns), but `quantize_dynamic` still works and shows the idea with nothing to install;
# - **measure** before you ship: accuracy on held-out data before and after, and the bytes
#   saved. A quantised weight is not a `Parameter` any more (it is packed inside the layer),
#   so counting `parameters()` says nothing about size: measure what `torch.save` writes.
#
# ### Exercise 6 · `quantize_for_cpu` and `quantization_report`
#
# - `quantize_for_cpu(model)`: return a dynamically quantised (qint8) copy of `model`'s linear
#   layers, on the CPU, ready for inference. **Leave `model` as it was**: same device, same
#   mode, same layers and weights (the training code may still be using it).
# - `quantization_report(model, images, labels)`: measure what quantisation does to `model` on
#   the held-out batch `images` with int64 `labels`, and return a dict of four numbers:
#   `"float_accuracy"` and `"quantized_accuracy"` (fractions of correct argmax predictions, in
#   eval mode), and `"float_bytes"` and `"quantized_bytes"` (the length of what
#   `torch.save(m.state_dict(), buffer)` writes into an `io.BytesIO()`). Leave `model` as it
#   was here too.
#
# The hidden test trains a fresh MLP on the digits, quantises it with `quantize_for_cpu`, and asks
# for a quantised accuracy of at least 90%, no more than 2 points below the float model's, at
# under a third of the bytes.
#
# <details><summary>Hint 1</summary>
#
# `copy.deepcopy(model)` first; then the copy may be moved and switched to eval mode.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Your `infer` from exercise 1 gives logits in eval mode; run it on a copy of the float model,
# and on the quantised model with CPU images.
# </details>

# %% role="answer" grade_id="quantize"
def quantize_for_cpu(model):
    """A dynamically quantised (qint8 nn.Linear) CPU copy of model, in eval mode; model unchanged."""
    ### BEGIN SOLUTION
    model = copy.deepcopy(model).cpu().eval()
    return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    ### END SOLUTION


def quantization_report(model, images, labels):
    """Accuracy and saved size of model before and after quantize_for_cpu; model unchanged."""
    ### BEGIN SOLUTION
    def size(m):
        buffer = io.BytesIO()
        torch.save(m.state_dict(), buffer)
        return len(buffer.getvalue())

    def accuracy(m, x, y):
        return (infer(m, x).argmax(dim=1) == y).float().mean().item()

    quantized = quantize_for_cpu(model)
    float_model = copy.deepcopy(model)
    return {
        "float_accuracy": accuracy(float_model, images, labels),
        "quantized_accuracy": accuracy(quantized, images.cpu(), labels.cpu()),
        "float_bytes": size(float_model),
        "quantized_bytes": size(quantized),
    }
    ### END SOLUTION


# %% role="locked" grade_id="quant-run"
# Your report on the DigitsNet trained at the top.
try:
    digits_report = quantization_report(digits_model, x_val, y_val)
    print(f"float:     {digits_report['float_accuracy']:.1%} correct, {digits_report['float_bytes']:,} bytes")
    print(f"quantised: {digits_report['quantized_accuracy']:.1%} correct, "
          f"{digits_report['quantized_bytes']:,} bytes")
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-quantize-sanity" points=1
_q = quantize_for_cpu(digits_model)
checks.expect(isinstance(_q, nn.Module), f"quantize_for_cpu should return a module, but it returned "
                                         f"{checks.describe(_q)}.")
_out = _q(x_val[:3].cpu())
checks.expect_tensor(_out, "The quantised model's output for 3 CPU images", shape=(3, 10), dtype=torch.float32,
                     why="A dynamically quantised model takes and returns float tensors on the CPU.")
_report = quantization_report(digits_model, x_val, y_val)
checks.expect(isinstance(_report, dict) and set(_report) == {"float_accuracy", "quantized_accuracy", "float_bytes",
                                                             "quantized_bytes"},
              "quantization_report should return a dict with exactly the keys 'float_accuracy', "
              "'quantized_accuracy', 'float_bytes' and 'quantized_bytes'.")
print({_k: round(_v, 3) if type(_v) is float else _v for _k, _v in _report.items()})

# %% role="test" grade_id="test-quantize" points=3
# Hidden tests quantise a fresh network handed over in training mode: the copy's linear layers are
# quantised, it runs on the CPU in eval mode, and the original is left exactly as it was.
### BEGIN HIDDEN TESTS
with checks.seeded(81):
    _model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 64), nn.ReLU(),
                           nn.Linear(64, 4)).to(checks.DEVICE)
_model.train()
_before = checks.module_state(_model)
_types = [type(_m) for _m in _model.modules()]
_q = quantize_for_cpu(_model)
checks.expect([type(_m) for _m in _model.modules()] == _types,
              "quantize_for_cpu replaced the layers of the model it was given: quantize_dynamic(..., inplace=True), "
              "or quantising the model itself, turns the caller's float model into a quantised one. Quantise a "
              "copy (copy.deepcopy).")
checks.expect(all(_p.device.type == checks.DEVICE.type for _p in _model.parameters()),
              "quantize_for_cpu moved the caller's model to the CPU. Move a copy (Hint 1).")
_changed = checks.changed_state(_before, checks.module_state(_model))
checks.expect(not _changed,
              f"quantize_for_cpu changed the model it was given ({', '.join(_changed[:3])}): its mode, parameters or "
              "buffers. Make a copy first (Hint 1), then move and switch the copy.")
checks.expect(isinstance(_q, nn.Module), f"quantize_for_cpu should return a module, but it returned "
                                         f"{checks.describe(_q)}.")
_dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
_linears = [_m for _m in _q.modules() if type(_m) is nn.Linear]
_quantised = [_m for _m in _q.modules() if type(_m) is _dynamic_linear]
checks.expect(len(_quantised) == 3 and not _linears,
              f"The quantised copy has {len(_quantised)} dynamically quantised linear layers and {len(_linears)} "
              "float nn.Linear layers left; the model has 3 linear layers. Quantise every nn.Linear: "
              "quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8).")
checks.expect(all(_m.weight().dtype == torch.qint8 for _m in _quantised),
              "The quantised linear layers do not hold 8-bit integer weights (qint8): float16 quantisation halves "
              "the bytes, qint8 quarters them. Pass dtype=torch.qint8.")
with checks.seeded(82):
    _x = torch.randn(8, 16)
with torch.no_grad():
    try:
        _a, _b = _q(_x), _q(_x)
    except Exception as _err:
        checks.expect(False, f"The quantised model fails on a CPU batch ({type(_err).__name__}): dynamic "
                             "quantisation runs on the CPU only; quantise a CPU copy of the model.")
checks.expect(torch.equal(_a, _b) and not any(_m.training for _m in _q.modules() if isinstance(_m, nn.Dropout)),
              "The quantised model is in training mode, with dropout active: the same input gives different "
              "outputs. quantize_dynamic returns its copy in eval mode; leave it there: quantisation is for "
              "inference.")
with torch.no_grad():
    _expected = copy.deepcopy(_model).cpu().eval()(_x)
checks.expect_close(_a, _expected, "The quantised model's output", rtol=0.1, atol=0.05,
                    why="It should be close to the float model's output in eval mode, up to 8-bit rounding.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-quant-report" points=2
# Hidden tests compare quantization_report with their own measurement on a fresh network and data,
# and check that the model it was given is left as it was.
### BEGIN HIDDEN TESTS
with checks.seeded(91):
    _model = nn.Sequential(nn.Linear(20, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Dropout(0.3),
                           nn.Linear(48, 5)).to(checks.DEVICE)
    with torch.no_grad():
        _model[1].running_mean.uniform_(-0.5, 0.5)
    _x = torch.randn(200, 20, device=checks.DEVICE)
    _y = (_model[0](_x)[:, :5].argmax(dim=1)).detach()  # labels the network partly agrees with


def _size(m):
    _buffer = io.BytesIO()
    torch.save(m.state_dict(), _buffer)
    return len(_buffer.getvalue())


def _accuracy(m, x, y):
    m = copy.deepcopy(m).eval()
    with torch.no_grad():
        return (m(x).argmax(dim=1) == y).float().mean().item()


_model.train()
_before = checks.module_state(_model)
with checks.seeded(92):
    _report = quantization_report(_model, _x, _y)
checks.expect(not checks.changed_state(_before, checks.module_state(_model)),
              "quantization_report changed the model it was given (its mode, parameters or buffers). Measure "
              "copies.")
checks.expect(isinstance(_report, dict) and set(_report) == {"float_accuracy", "quantized_accuracy", "float_bytes",
                                                             "quantized_bytes"},
              "quantization_report should return a dict with exactly the keys 'float_accuracy', "
              "'quantized_accuracy', 'float_bytes' and 'quantized_bytes'.")
from torch.ao.quantization import quantize_dynamic as _quantize_dynamic  # not the notebook's name: it can be rebound

_q = _quantize_dynamic(copy.deepcopy(_model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
_truth = {"float_accuracy": _accuracy(_model, _x, _y), "quantized_accuracy": _accuracy(_q, _x.cpu(), _y.cpu()),
          "float_bytes": _size(_model), "quantized_bytes": _size(_q)}
for _k in ("float_accuracy", "quantized_accuracy"):
    checks.expect(type(_report[_k]) is float, f"report[{_k!r}] should be a Python float (a fraction between 0 and "
                                              f"1), but it is {checks.describe(_report[_k])}.")
    checks.expect_close(_report[_k], _truth[_k], f"report[{_k!r}]", rtol=0, atol=0.011,
                        why="Accuracy is the fraction of images whose largest logit is the true class, with the model "
                            "in eval mode (dropout off, batch norm's running statistics), over the whole batch.")
for _k in ("float_bytes", "quantized_bytes"):
    checks.expect(type(_report[_k]) is int, f"report[{_k!r}] should be an int (a number of bytes), but it is "
                                            f"{checks.describe(_report[_k])}.")
    checks.expect_close(_report[_k], _truth[_k], f"report[{_k!r}]", rtol=0.02, atol=0,
                        why="Measure the bytes torch.save writes for the model's state_dict into an io.BytesIO. "
                            "Counting parameters() misses the quantised weights, which are packed inside the "
                            "layers, not Parameters.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-quant-accuracy" points=2
# Hidden tests train a fresh DigitsNet, quantise it with quantize_for_cpu and measure both on the
# validation digits: at least 90% correct after quantisation, at most 2 points lost, under a third
# of the bytes.
### BEGIN HIDDEN TESTS
from sklearn.datasets import load_digits as _load_digits

_images, _labels = _load_digits(return_X_y=True)
_xd = torch.tensor(_images, dtype=torch.float32) / 16.0
_yd = torch.tensor(_labels, dtype=torch.int64)
_order = torch.randperm(len(_xd), generator=torch.Generator().manual_seed(3))
_xt, _yt = _xd[_order[:1437]].to(checks.DEVICE), _yd[_order[:1437]].to(checks.DEVICE)
_xv, _yv = _xd[_order[1437:]], _yd[_order[1437:]]
with checks.seeded(5):
    _model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                           nn.Linear(256, 10)).to(checks.DEVICE)
    _opt = torch.optim.AdamW(_model.parameters(), lr=3e-3)
    for _ in range(4):
        for _batch in torch.randperm(len(_xt)).split(64):
            _batch = _batch.to(checks.DEVICE)
            _opt.zero_grad()
            F.cross_entropy(_model(_xt[_batch]), _yt[_batch]).backward()
            _opt.step()
_model.eval()
with torch.no_grad():
    _float_acc = (_model(_xv.to(checks.DEVICE)).argmax(dim=1).cpu() == _yv).float().mean().item()
_q = quantize_for_cpu(_model)
with torch.no_grad():
    _quant_acc = (_q(_xv).argmax(dim=1) == _yv).float().mean().item()


def _size(m):
    _buffer = io.BytesIO()
    torch.save(m.state_dict(), _buffer)
    return len(_buffer.getvalue())


checks.expect(_quant_acc >= 0.90 and _quant_acc >= _float_acc - 0.02,
              f"The quantised network classifies {_quant_acc:.1%} of the validation digits correctly, against "
              f"{_float_acc:.1%} before quantisation; the target is at least 90% and no more than 2 points lost. "
              "Quantise only the weights of the linear layers, to qint8, from the trained model in eval mode.")
_ratio = _size(_q) / _size(_model)
checks.expect(_ratio < 1 / 3,
              f"The quantised network saves to {_ratio:.0%} of the float network's bytes; 8-bit weights should "
              "bring it under a third. Quantise every nn.Linear to torch.qint8.")
print(f"float {_float_acc:.1%}, quantised {_quant_acc:.1%}, size ratio {_ratio:.2f}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-prune"
# ## 7 · Pruning: zeros by magnitude
#
# Trained networks are redundant: many weights are close to zero and matter little.
# **Magnitude pruning** sets the smallest weights (by absolute value) to exactly zero, then
# usually fine-tunes a little to recover. `torch.nn.utils.prune` does this with a mask:
#
# - `prune.l1_unstructured(module, "weight", amount=0.3)` zeroes the 30% smallest entries of
#   *that one tensor*. It renames the real tensor `weight_orig`, stores a buffer `weight_mask`,
#   and recomputes `weight = weight_orig * weight_mask` before every forward pass (a forward
#   pre-hook). Pruning the same tensor again prunes a fraction of **what is left**.
# - `prune.global_unstructured([(module, "weight"), ...], pruning_method=prune.L1Unstructured,
#   amount=0.3)` ranks the weights of *all* listed tensors together and zeroes the smallest 30%
#   of them overall. Layers differ in scale, and a per-layer 30% removes important weights from
#   a layer whose weights are all small while sparing unimportant ones elsewhere; the global
#   ranking lets each layer lose what it can afford.
# - `prune.remove(module, "weight")` makes it permanent: `weight` becomes a plain parameter
#   holding the zeros, and `weight_orig`, the mask and the hook go away. Until then, the
#   `state_dict` has `weight_orig` and `weight_mask` keys that a plain model cannot load.
#
# What pruning does **not** do by itself: the zeros are stored as zeros in dense tensors, so the
# saved file is no smaller and a dense matrix multiplication no faster. The savings come from
# formats and kernels that skip zeros (sparse tensors, compression of the saved file), or from
# *structured* pruning that removes whole rows or channels so the layers really shrink.
#
# ### Exercise 7 · `prune_linear_weights`
#
# Write `prune_linear_weights(model, amount)`: zero the fraction `amount` of the weights of all
# of `model`'s `nn.Linear` layers together, smallest magnitude first, ranked globally across
# layers; leave biases and every other layer alone; make the pruning permanent, so that the
# `state_dict` has the model's original keys. Work in place and return `model`.
#
# <details><summary>Hint 1</summary>
#
# Collect `(module, "weight")` for every `nn.Linear` in `model.modules()`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `prune.global_unstructured(..., pruning_method=prune.L1Unstructured, amount=amount)`, then
# `prune.remove` on each pair.
# </details>

# %% role="answer" grade_id="prune"
def prune_linear_weights(model, amount):
    """Zero the fraction amount of all nn.Linear weights, smallest |w| first across layers; permanent."""
    ### BEGIN SOLUTION
    targets = [(module, "weight") for module in model.modules() if isinstance(module, nn.Linear)]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)
    return model
    ### END SOLUTION


# %% role="test" grade_id="test-prune-sanity" points=1
_pruned = prune_linear_weights(copy.deepcopy(digits_model).cpu(), 0.5)
_weights = [_m.weight for _m in _pruned.modules() if isinstance(_m, nn.Linear)]
_zeros = sum(int((_w == 0).sum()) for _w in _weights) / sum(_w.numel() for _w in _weights)
checks.expect(abs(_zeros - 0.5) < 0.01, f"After prune_linear_weights(model, 0.5), {_zeros:.1%} of the linear "
                                         "weights are zero; expected 50%.")
print(f"{_zeros:.1%} of the linear weights are zero; keys: {list(_pruned.state_dict())[:3]} ...")

# %% role="test" grade_id="test-prune" points=3
# Hidden tests prune a fresh network whose linear layers have very different scales, then check how
# many weights are zero, that they are the smallest ones across all layers, that biases and batch
# norm are untouched, and that the pruning is permanent.
### BEGIN HIDDEN TESTS
with checks.seeded(101):
    _model = nn.Sequential(nn.Linear(30, 40), nn.BatchNorm1d(40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                           nn.Linear(40, 6)).to(checks.DEVICE)
    with torch.no_grad():
        for _layer, _scale in [(_model[0], 0.05), (_model[3], 1.0), (_model[5], 20.0)]:
            _layer.weight.mul_(_scale)
            _layer.bias.uniform_(-0.01, 0.01)  # as small as the smallest weights: pruned too if they compete
        _model[1].weight.uniform_(0.001, 0.01)
_original = copy.deepcopy(_model)
_keys = list(_model.state_dict())
_amount = 0.4
_result = prune_linear_weights(_model, _amount)
checks.expect(_result is _model, "prune_linear_weights should prune the model in place and return it.")
_new_keys = sorted(set(_model.state_dict()) ^ set(_keys))
checks.expect(not _new_keys,
              f"After prune_linear_weights the state_dict's keys changed ({', '.join(_new_keys[:3])} ...): the "
              "pruning is not permanent. A plain model of the same class cannot load this state. Call "
              "prune.remove(module, 'weight') for every pruned layer.")
checks.expect(all(not _m._forward_pre_hooks for _m in _model.modules()),
              "After prune_linear_weights some modules still carry pruning's forward pre-hook: call prune.remove.")
_linear = [_i for _i in (0, 3, 5)]
for _i in range(len(_model)):
    for _name, _t in _original[_i].named_parameters():
        if _i in _linear and _name == "weight":
            continue
        checks.expect(torch.equal(getattr(_model[_i], _name), _t),
                      f"prune_linear_weights changed {type(_model[_i]).__name__} {_i}'s {_name}. Prune only the "
                      "weights of the nn.Linear layers: biases and other layers stay as they are.")
_old = torch.cat([_original[_i].weight.detach().abs().flatten() for _i in _linear])
_new = torch.cat([_model[_i].weight.detach().flatten() for _i in _linear])
_zero = _new == 0
_expected_zeros = round(_amount * _old.numel())
checks.expect(abs(int(_zero.sum()) - _expected_zeros) <= 1,
              f"prune_linear_weights(model, {_amount}) zeroed {int(_zero.sum())} of the {_old.numel()} linear "
              f"weights; expected {_expected_zeros}. amount is the fraction of weights to remove, counted over all "
              "linear layers together.")
_kept = torch.cat([_original[_i].weight.detach().flatten() for _i in _linear])[~_zero]
checks.expect(torch.equal(_new[~_zero], _kept),
              "prune_linear_weights changed weights that it kept: the weights that stay must keep their values.")
checks.expect(_old[_zero].max() <= _old[~_zero].min(),
              "Some weights that were zeroed are larger in magnitude than weights that were kept, across layers. "
              "The layers have very different scales: ranking each layer separately (prune.l1_unstructured per "
              "layer) removes large weights of a small-scale layer and spares small ones elsewhere, and random "
              "pruning ignores magnitude. Rank all linear weights together: prune.global_unstructured with "
              "prune.L1Unstructured.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-prune-predict"
# ### Exercise 8 · Predict, then verify
#
# **Without running anything**, fill in `pruning_predictions`:
#
# - `"size ratio"`: take an `nn.Linear(256, 256)`, prune 50% of its weight with
#   `prune.l1_unstructured`, call `prune.remove`, and save its `state_dict` with `torch.save`.
#   What is the size of that file divided by the size of the same layer saved unpruned? (a
#   float; two decimals are enough)
# - `"left after twice"`: take a fresh `nn.Linear(256, 256)` and call
#   `prune.l1_unstructured(layer, "weight", amount=0.5)` **twice**. What fraction of its
#   weights is not zero? (a float)
#
# <details><summary>Hint 1</summary>
#
# Does a zero take less room than any other float32 in a dense tensor?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Section 7 says what a second pruning of the same tensor applies to.
# </details>

# %% role="answer" grade_id="prune-predictions"
pruning_predictions = {
    "size ratio": None,        # a float
    "left after twice": None,  # a float
}
### BEGIN SOLUTION
pruning_predictions = {
    "size ratio": 1.0,
    "left after twice": 0.25,
}
### END SOLUTION

# %% role="test" grade_id="test-prune-predictions" points=2
# Hidden tests prune the two layers and compare with your predictions.
checks.expect(isinstance(pruning_predictions, dict) and set(pruning_predictions) == {"size ratio",
                                                                                     "left after twice"},
              "`pruning_predictions` should be a dict with exactly the keys 'size ratio' and 'left after twice'.")
for _k in ("size ratio", "left after twice"):
    checks.expect(type(pruning_predictions[_k]) is int or type(pruning_predictions[_k]) is float,
                  f"pruning_predictions[{_k!r}] should be a number; it is {checks.describe(pruning_predictions[_k])}.")
### BEGIN HIDDEN TESTS
def _saved_size(module):
    _buffer = io.BytesIO()
    torch.save(module.state_dict(), _buffer)
    return len(_buffer.getvalue())


with checks.seeded(111):
    _layer = nn.Linear(256, 256)
    _plain = _saved_size(_layer)
    prune.l1_unstructured(_layer, "weight", amount=0.5)
    prune.remove(_layer, "weight")
    _ratio = _saved_size(_layer) / _plain
    _twice = nn.Linear(256, 256)
    prune.l1_unstructured(_twice, "weight", amount=0.5)
    prune.l1_unstructured(_twice, "weight", amount=0.5)
    _left = (_twice.weight != 0).float().mean().item()
checks.expect_close(float(pruning_predictions["size ratio"]), _ratio, "Your prediction for 'size ratio'",
                    rtol=0, atol=0.03, show=False,
                    why="Unstructured pruning writes zeros into a dense tensor: every entry still takes 4 bytes, "
                        "zero or not (Hint 1).")
checks.expect_close(float(pruning_predictions["left after twice"]), _left, "Your prediction for 'left after twice'",
                    rtol=0, atol=0.01, show=False,
                    why="Pruning a tensor that is already pruned removes the fraction amount of the weights that "
                        "are still there, not of all of them (section 7).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - Serving is `eval()` (what layers compute) plus `torch.inference_mode()` (what autograd
#   records); neither implies the other.
# - `torch.export` captures the forward pass as a graph; mark the batch dimension dynamic and
#   export in eval mode, or the example's batch size and the training-mode layers are frozen in.
# - `torch.jit.trace` freezes Python control flow to the example's path; `torch.jit.script`
#   compiles it; `torch.export` refuses a data-dependent branch instead of picking one.
# - ONNX export goes through `torch.export`; name the inputs and outputs, keep the batch
#   dynamic, and check every export against ONNX Runtime on fresh inputs.
# - Dynamic quantisation stores linear weights as 8-bit integers: a quarter of the bytes, CPU
#   only, for inference; measure accuracy before and after.
# - Global magnitude pruning zeroes the smallest weights across layers; `prune.remove` makes
#   it permanent; dense zeros save neither bytes nor time by themselves.
#
# Next, in **[16 · Debugging](../16_debugging/16_debugging.ipynb)**, the clinic: broken training scripts to diagnose and fix.
