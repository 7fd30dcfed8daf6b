# %% [markdown] role="prose" grade_id="title"
# # 08 · Saving, loading, resuming
#
# **Time:** about 2 h 15 min of work (4,100 words to read, 8 exercises). Run top to bottom, the
# finished notebook takes under a second.
#
# Training turns code into numbers: millions of them, bought with hours of compute. Those
# numbers live in memory and vanish when the process ends, unless you write them down. Writing
# them down well is a small skill with large consequences: a model you cannot load next month,
# a checkpoint that only opens on the machine that wrote it, a resumed run that quietly trains
# a different model than the one you stopped, or a file from the internet that runs code on
# your machine when you open it.
#
# **By the end of this notebook you will be able to:**
# - say what a `state_dict` holds (parameters *and* buffers) and why it is a view of the
#   model, not a copy;
# - save a model's state rather than the model object, and load it by rebuilding the
#   architecture first;
# - load files safely with `weights_only=True`, and portably with `map_location`;
# - read what `load_state_dict` reports (missing and unexpected keys) and reuse a backbone
#   under a new head;
# - write checkpoints that hold everything training needs to continue: model, optimiser,
#   epoch and random number generator state;
# - prove that a resumed run is bit-for-bit identical to one that never stopped;
# - seed every random number generator and ask PyTorch for deterministic algorithms.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Every file this notebook writes goes into a
# temporary folder that disappears when the notebook's kernel stops.

# %% role="locked" grade_id="setup"
import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from torchcourse import checks

torch.manual_seed(0)
DEVICE = checks.DEVICE                     # where the tests put models: cpu, or cuda on a GPU grader
scratch = tempfile.TemporaryDirectory()    # removed when the kernel stops
WORK = Path(scratch.name)
print("PyTorch", torch.__version__, "| device:", DEVICE)


# %% [markdown] role="prose" grade_id="md-state"
# ## 1 · A model is code plus numbers
#
# A trained network is two things kept deliberately apart:
# - the **architecture**: Python code (a class, its `__init__` and `forward`) that says which
#   layers exist and how data flows through them;
# - the **state**: the tensors those layers hold, which training has filled with useful values.
#
# PyTorch never stores the first; you keep it in your source files. The second is what
# `model.state_dict()` returns: an ordered dictionary from **names** to **tensors**. Each
# name is the attribute path that leads to the tensor: the attribute that holds a submodule,
# then the next one (the index inside an `nn.Sequential`), then the tensor's own name. A
# module that holds no tensors, such as `nn.ReLU` or `nn.Dropout`, contributes no entry, so
# the numbering in a `state_dict` can have gaps.
#
# The state holds two kinds of tensors:
# - **parameters**, which the optimiser updates (weights and biases);
# - **buffers**, which are part of the model but not learned by gradient descent. The classic
#   example is batch normalisation: during training it keeps a running mean and a running
#   variance of the features it has seen (and a count of batches), and in evaluation mode it
#   normalises with those statistics instead of the batch's. Lose the buffers and a restored
#   model evaluates differently, even though every weight is right.
#
# Here is the model this notebook uses: a small classifier with a **body** (the backbone that
# turns inputs into features) and a **head** (the layer that turns features into class scores).

# %% role="locked" grade_id="model"
class Net(nn.Module):
    """A small classifier: a body that makes features, and a head that scores the classes."""

    def __init__(self, n_in=4, hidden=8, n_out=3, p_drop=0.2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(p_drop),
        )
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.head(self.body(x))


print(Net())

# %% [markdown] role="prose" grade_id="md-predict-state"
# ### Exercise 1 · Predict, then verify: what is in a `state_dict`?
#
# Read the class above and, **without running anything**, predict what
# `sd = Net().state_dict()` holds. Fill in `state_predictions` in the answer cell:
# - `"keys"`: the set of every key of `sd`, as strings;
# - `"buffers"`: the set of those keys that are buffers rather than parameters;
# - `"shares_memory"`: `True` or `False`. Does the tensor `sd["head.weight"]` use the same
#   memory as the model's own `model.head.weight`, or is it a copy?
#
# The hidden test builds the model and compares. Once you have committed to an answer, check
# it yourself in a scratch cell.
#
# <details><summary>Hint 1</summary>
#
# Walk the attributes: `self.body` is an `nn.Sequential` whose children are named `0`, `1`,
# `2`, `3`; `self.head` is a `Linear`. A `Linear` holds `weight` and `bias`. Which children of
# the body hold no tensors at all?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Batch normalisation has a learnable scale and shift (parameters named `weight` and `bias`),
# and three buffers: the two running statistics and a counter of the batches it has tracked.
# Look up the exact names in the documentation of `nn.BatchNorm1d`, or print
# `dict(nn.BatchNorm1d(2).named_buffers())`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Making a `state_dict` is cheap even for a model with billions of numbers. What does that
# suggest about copying?
# </details>

# %% role="answer" grade_id="state-predictions"
state_predictions = {
    "keys": set(),           # every key of Net().state_dict(), e.g. {"head.weight", ...}
    "buffers": set(),        # the keys among them that are buffers
    "shares_memory": None,   # True or False
}
### BEGIN SOLUTION
state_predictions = {
    "keys": {
        "body.0.weight", "body.0.bias",
        "body.1.weight", "body.1.bias",
        "body.1.running_mean", "body.1.running_var", "body.1.num_batches_tracked",
        "head.weight", "head.bias",
    },
    "buffers": {"body.1.running_mean", "body.1.running_var", "body.1.num_batches_tracked"},
    "shares_memory": True,
}
### END SOLUTION

# %% role="test" grade_id="test-state-predictions" points=3
# Hidden tests compare your predictions with the state_dict of the model.
checks.expect(isinstance(state_predictions, dict)
              and set(state_predictions) == {"keys", "buffers", "shares_memory"},
              "Your state_predictions should be a dict with exactly the keys 'keys', 'buffers' and "
              "'shares_memory'.")
for _field in ("keys", "buffers"):
    checks.expect(type(state_predictions[_field]) is set
                  and all(type(_k) is str for _k in state_predictions[_field]),
                  f"Your state_predictions[{_field!r}] should be a set of strings.")
checks.expect(type(state_predictions["shares_memory"]) is bool,
              "Your state_predictions['shares_memory'] should be True or False.")
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

_model = nn.Sequential(_OD(
    body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
    head=nn.Linear(8, 3),
))
_sd = _model.state_dict()
_keys = set(_sd)
_buffers = {_n for _n, _ in _model.named_buffers()}
_got = set(state_predictions["keys"])
checks.expect(not any(_k.startswith(("body.2", "body.3")) for _k in _got),
              "Your keys include entries for body.2 or body.3 (the ReLU and the Dropout). Those "
              "modules hold no tensors, so they add nothing to the state_dict: that is why its "
              "numbering has gaps.")
checks.expect(_buffers <= _got,
              "Your keys leave out some of the buffers. A state_dict holds every parameter and "
              "every buffer: batch normalisation keeps its running statistics and a batch counter "
              "as buffers, and a restored model needs them to evaluate the same way (see Hint 2).")
checks.expect(_got == _keys,
              f"Your set of keys has {len(_keys - _got)} missing and {len(_got - _keys)} that do not "
              "exist. A key is the attribute path to a tensor: the attribute holding the submodule, "
              "the index inside nn.Sequential, then the tensor's own name, joined by dots (see Hint 1).")
checks.expect(set(state_predictions["buffers"]) == _buffers,
              "Your set of buffers is not right. Buffers are the tensors a module keeps without "
              "learning them by gradient descent: here, batch normalisation's running statistics and "
              "its batch counter. Its learnable scale and shift (weight and bias) are parameters.")
checks.expect(state_predictions["shares_memory"] is checks.same_storage(_sd["head.weight"], _model.head.weight),
              "Your prediction for shares_memory is not what PyTorch does. state_dict() returns the "
              "model's own tensors (detached from autograd, but the same memory), not copies: it "
              "is cheap, and it keeps changing while the model trains.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-snapshot"
# ## 2 · A `state_dict` is a view, not a copy
#
# Because `state_dict()` hands out the model's own tensors, holding on to one does not freeze
# anything: the next `optimizer.step()` changes the weights in place, and the tensors in your
# dictionary change with them (they are the same memory). `dict(sd)` does not help either: it
# copies the dictionary, not the tensors.
#
# This bites in a common pattern: "keep the best model seen so far" during training. Writing
# `best = model.state_dict()` at the best epoch and `model.load_state_dict(best)` at the end
# loads... the final weights. A snapshot must copy every tensor. (Writing the state to a file
# copies it too, which is why `torch.save(model.state_dict(), path)` is safe.)
#
# ### Exercise 2 · `snapshot(model)`
#
# Write `snapshot(model)` that returns a dictionary with the same keys as
# `model.state_dict()`, whose tensors hold the same values but are independent copies: on the
# same device, not requiring grad, and unchanged by any later training of `model`. Then
# `model.load_state_dict(snapshot_taken_earlier)` brings the model back to that moment,
# buffers included.
#
# <details><summary>Hint 1</summary>
#
# Start from `model.state_dict()` (it already has every parameter and buffer, detached) and
# build a new dictionary with a copy of each tensor. `Tensor.clone()` allocates new memory.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `model.named_parameters()` leaves out the buffers; a snapshot built from it cannot restore
# batch normalisation's running statistics.
# </details>

# %% role="answer" grade_id="snapshot"
def snapshot(model):
    """An independent copy of model's full state: name -> cloned tensor."""
    ### BEGIN SOLUTION
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    ### END SOLUTION


# %% role="test" grade_id="test-snapshot-sanity" points=1
_net = Net()
_snap = snapshot(_net)
checks.expect(isinstance(_snap, dict), "Your snapshot(model) should return a dict from names to tensors.")
checks.expect(set(_snap) == set(_net.state_dict()),
              "Your snapshot(model) should have exactly the keys of model.state_dict(): every parameter "
              "and every buffer.")
for _name in _snap:
    checks.expect_tensor(_snap[_name], f"the snapshot's entry {_name!r}")
print("snapshot holds", len(_snap), "tensors")

# %% role="test" grade_id="test-snapshot" points=2
# Hidden tests train the model after the snapshot and check that the snapshot did not move,
# and take a snapshot of a model on another device than the CPU.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

with checks.seeded(0):
    _model = nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    _opt = torch.optim.SGD(_model.parameters(), lr=0.5)
    _before = {_k: _v.clone() for _k, _v in _model.state_dict().items()}
    _snap = snapshot(_model)
    checks.expect(isinstance(_snap, dict), "Your snapshot(model) should return a dict from names to tensors.")
    _lost = sorted(set(_before) - set(_snap))
    checks.expect(not [_k for _k in _lost if "running" in _k or "num_batches" in _k],
                  "The snapshot has no entries for batch normalisation's running statistics: the "
                  "buffers are lost, so restoring it would evaluate with the wrong statistics. "
                  "Buffers are part of the state but not of model.parameters(); model.state_dict() "
                  "holds both.")
    checks.expect(not _lost and set(_snap) == set(_before),
                  "Your snapshot(model) should have exactly the keys of model.state_dict().")
    _live = _model.state_dict()
    for _k in _before:
        checks.expect_tensor(_snap[_k], f"the snapshot's entry {_k!r}", device=checks.DEVICE, requires_grad=False,
                             why="A snapshot is data: detached from autograd, on the model's device.")
        checks.expect(not checks.same_storage(_snap[_k], _live[_k]),
                      f"The snapshot's entry {_k!r} shares memory with the model's own tensor, so it will "
                      "change as soon as the model trains. state_dict() returns references to the "
                      "model's tensors, not copies: clone each tensor (see Hint 1).")
    for _ in range(3):
        _x = torch.randn(16, 4, device=checks.DEVICE)
        _y = torch.randint(0, 3, (16,), device=checks.DEVICE)
        _opt.zero_grad()
        nn.functional.cross_entropy(_model(_x), _y).backward()
        _opt.step()
    for _k in _before:
        checks.expect(torch.equal(_snap[_k], _before[_k]),
                      f"The snapshot's entry {_k!r} changed when the model trained after the snapshot. "
                      "A snapshot must copy every tensor; the tensors of state_dict() are the model's "
                      "own memory.")
    _model.load_state_dict(_snap)
    for _k, _v in _model.state_dict().items():
        checks.expect(torch.equal(_v, _before[_k]),
                      f"Loading the snapshot back with model.load_state_dict did not restore {_k}: a "
                      "snapshot must hold every entry of state_dict() with the value it had when the "
                      "snapshot was taken.")
_meta = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)).to("meta")  # a model elsewhere, as on a GPU
try:
    _snap = snapshot(_meta)
except NotImplementedError as _err:
    if "meta" not in str(_err):
        raise
    _snap = None  # the snapshot copied the tensors to the CPU, which a meta tensor (it holds no data) refuses
_moved = _snap is None or any(type(_v) is torch.Tensor and _v.device.type != "meta" for _v in _snap.values())
checks.expect(not _moved,
              "For a model on another device than the CPU (the meta device here, standing in for a GPU), "
              "snapshot moved the copies off the model's device. Keep each copy where the model's tensor "
              "lives: clone() copies on the same device, and load_state_dict then restores without a "
              "transfer.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-files"
# ## 3 · Files: save the state, not the object
#
# `torch.save(obj, path)` writes any Python object with **pickle**, Python's general-purpose
# serialiser, storing the tensors' data alongside. A pickle is not a table of numbers: it is
# a small *program* of instructions for rebuilding the object, such as "import the class
# `Net` from the module `__main__`, create one, set these attributes". That has two
# consequences.
#
# **Fragility.** `torch.save(model, path)` pickles the module object, which records the
# class by its import path. Loading it needs that class at that path, with compatible code:
# rename the file, move the class, or change its attributes, and the file no longer loads. A
# `state_dict` holds only names and tensors, so it survives any refactoring that keeps the
# layer names.
#
# **Danger.** The rebuild instructions may call *any* importable function with any arguments.
# Loading a pickle runs whatever its author put in it: opening a model file from a stranger
# with a plain unpickler is running their program. The cell below builds a harmless example
# (it only prints), but the same mechanism could delete files or steal credentials.
#
# `torch.load(path, weights_only=True)` uses a restricted unpickler that rebuilds only
# tensors and plain data: numbers, strings, `None`, containers (dicts, lists, tuples, ordered
# dicts) and a few of torch's own types (dtypes, sizes, devices). It refuses everything else,
# unless you allow a class by name with `torch.serialization.add_safe_globals`. A
# `state_dict` loads; a pickled module or a booby-trapped object does not. It has been the default since PyTorch 2.6, but older versions loaded anything by
# default, so say it explicitly: the call is then safe whatever version runs it.
#
# **Devices.** Each saved tensor also records the device it lived on, and `torch.load` puts
# it back there. A file written on a GPU therefore fails to load on a machine without that
# GPU, unless `map_location` tells `torch.load` where to put the tensors. `"cpu"` always
# works: `model.load_state_dict(state)` then *copies* each value into the model's existing
# tensors, on whatever device the model already lives.
#
# The recipe: save `model.state_dict()`; to load, **rebuild the architecture with your code**
# (`Net()`, moved to its device), then load the state into it.

# %% role="locked" grade_id="pickle-demo"
class Surprise:
    """An object that tells pickle how to rebuild it: by calling print with a message."""

    def __reduce__(self):
        return (print, ("    >>> this line ran inside torch.load: the file chose the code <<<",))


trap = WORK / "trap.pt"
torch.save({"weight": torch.zeros(3), "note": Surprise()}, trap)

print("torch.load(trap, weights_only=False):")
torch.load(trap, weights_only=False)
print("torch.load(trap, weights_only=True):")
try:
    torch.load(trap, weights_only=True)
except pickle.UnpicklingError:
    print("    refused: the file asks for", torch.serialization.get_unsafe_globals_in_checkpoint(trap))


# %% [markdown] role="prose" grade_id="md-fix-save"
# ### Exercise 3 · Fix a broken snippet: save and restore a model
#
# `save_model_broken` and `restore_model_broken` below work on the machine that wrote the
# file, and nowhere else. Run their cell: the first file is refused by a safe loader, and the
# second, written as a machine with a GPU this one lacks would have written it, does not load
# at all. (`checks.save_as_if_on` makes such a file: the data is the same, but every tensor
# is labelled with that GPU.)
#
# Write the fixed pair in the answer cell:
# - `save_model(model, path)` writes the model's state (parameters **and** buffers) to `path`:
#   the `state_dict` itself, not wrapped in another dictionary, which is what code that loads
#   weights files expects;
# - `restore_model(path, build_model)` calls `build_model()` once (a function without
#   arguments that returns a freshly built model, already on the device it should live on),
#   loads the saved state into that model, and returns it. It must load **safely** (refusing
#   pickled objects), **portably** (any file, from any device, loads on this machine) and
#   **strictly**: a file whose keys do not match the model's (another architecture, a renamed
#   layer) is an error that reaches the caller, not a partial load (Section 4 says why).
#
# <details><summary>Hint 1</summary>
#
# Save `model.state_dict()`, not `model`. Loading is then two steps: build, then
# `model.load_state_dict(...)`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.load` takes `weights_only=` and `map_location=`. Loading to the CPU is always
# possible; `load_state_dict` copies the values onto the device of the model it fills.
# </details>

# %% role="locked" grade_id="save-broken"
def save_model_broken(model, path):
    torch.save(model, path)                          # pickles the whole object


def restore_model_broken(path, build_model):
    return torch.load(path, weights_only=False)      # unpickles anything, onto the saved device


whole = WORK / "whole_model.pt"
save_model_broken(Net(), whole)
try:
    torch.load(whole, weights_only=True)
except pickle.UnpicklingError:
    print("A safe loader refuses the file; it asks for",
          torch.serialization.get_unsafe_globals_in_checkpoint(whole))

from_gpu = WORK / "whole_model_from_gpu.pt"
checks.save_as_if_on(Net(), from_gpu)              # labelled with a GPU this machine lacks
try:
    restore_model_broken(from_gpu, Net)
except RuntimeError as err:
    print("restore_model_broken failed:", str(err).splitlines()[0][:110], "...")


# %% role="answer" grade_id="save-restore"
def save_model(model, path):
    """Write model's state (parameters and buffers) to path."""
    ### BEGIN SOLUTION
    torch.save(model.state_dict(), path)
    ### END SOLUTION


def restore_model(path, build_model):
    """Build a fresh model with build_model(), load the state saved at path into it, return it."""
    ### BEGIN SOLUTION
    model = build_model()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model
    ### END SOLUTION


# %% role="test" grade_id="test-save-restore-sanity" points=1
with tempfile.TemporaryDirectory() as _tmp:
    _path = os.path.join(_tmp, "net.pt")
    _net = Net().to(DEVICE)
    save_model(_net, _path)
    checks.expect(os.path.isfile(_path), "Your save_model(model, path) should write a file at path.")
    _back = restore_model(_path, lambda: Net().to(DEVICE))
    checks.expect(isinstance(_back, nn.Module),
                  "Your restore_model should return the model that build_model() made, with the saved "
                  "state loaded into it.")
    for (_name, _want), (_, _have) in zip(_net.state_dict().items(), _back.state_dict().items()):
        checks.expect_close(_have, _want, f"the restored {_name}",
                            why="Your restore_model should load the saved state into the model it built.")
print("save_model and restore_model make a round trip")

# %% role="test" grade_id="test-save-restore" points=3
# Hidden tests: a trained model (with moved batch-norm statistics) goes through a file and
# comes back bit for bit, the file holds only names and tensors, and a file that does not match
# the architecture is refused.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD


def _make_net(n_out=3):
    return nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, n_out),
    ))


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "model.pt")
    _model = _make_net().to(checks.DEVICE)
    _opt = torch.optim.SGD(_model.parameters(), lr=0.5)
    for _ in range(3):
        _x = torch.randn(16, 4, device=checks.DEVICE)
        _opt.zero_grad()
        nn.functional.cross_entropy(_model(_x), torch.randint(0, 3, (16,), device=checks.DEVICE)).backward()
        _opt.step()
    _model.eval()
    _x = torch.randn(6, 4, device=checks.DEVICE)
    with torch.no_grad():
        _want = _model(_x)
    _state = {_k: _v.clone() for _k, _v in _model.state_dict().items()}
    save_model(_model, _path)
    checks.expect(os.path.isfile(_path), "Your save_model wrote no file at the path it was given.")
    try:
        _saved = torch.load(_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        _found = torch.serialization.get_unsafe_globals_in_checkpoint(_path)
        checks.expect(False, "The file save_model wrote holds pickled Python objects ("
                             + ", ".join(_found[:3]) + "), not just names and tensors: it saved the "
                             "whole module object. Such a file only loads with your exact code, and a "
                             "safe loader (weights_only=True) refuses it. Save the state, not the "
                             "object (see Hint 1).")
    checks.expect(isinstance(_saved, dict) and all(type(_k) is str for _k in _saved),
                  "The file save_model wrote should hold a dict from names to tensors (a state_dict).")
    _wrapped = any(isinstance(_v, dict) and set(_v) & set(_state) for _v in _saved.values())
    checks.expect(bool(set(_saved) & set(_state)) or not _wrapped,
                  f"The file save_model wrote holds a dict with the keys {sorted(_saved)[:4]}, none of them a "
                  "name of the model's parameters or buffers. Save model.state_dict() itself, not wrapped in "
                  "another dictionary: that is the form restore_model, and any code that loads weights "
                  "files, expects.")
    checks.expect(bool(set(_saved) & set(_state)),
                  f"The file save_model wrote holds the keys {sorted(_saved)[:4]}, none of them a name of the "
                  f"model's parameters or buffers (such as {sorted(_state)[0]!r}). Save model.state_dict() as it "
                  "is, with its own keys: code that loads weights files matches them by name.")
    _lost = sorted(set(_state) - set(_saved))
    checks.expect(not [_k for _k in _lost if "running" in _k or "num_batches" in _k],
                  "The saved file has no batch-normalisation running statistics: the buffers are "
                  "lost, and a restored model would evaluate with default statistics. Buffers are "
                  "part of the state but not of model.parameters(); model.state_dict() holds both.")
    checks.expect(not _lost and set(_saved) == set(_state),
                  "The saved file should have exactly the keys of model.state_dict().")
    for _k in _state:
        checks.expect_tensor(_saved[_k], f"the saved {_k}")
        checks.expect(torch.equal(_saved[_k], _state[_k].cpu()),
                      f"The saved {_k} is not the model's value at the time save_model was called. Save "
                      "model.state_dict() as it is, without changing or re-initialising anything.")
    _built = []

    def _build():
        with checks.seeded(99):
            _fresh = _make_net().to(checks.DEVICE)
        _built.append(_fresh)
        return _fresh

    _back = restore_model(_path, _build)
    checks.expect(len(_built) == 1,
                  f"Your restore_model called build_model() {len(_built)} times; it should build the "
                  "architecture once, then load the state into that model.")
    checks.expect(_back is _built[0],
                  "Your restore_model should return the very model build_model() made, with the state "
                  "loaded into it.")
    for _k, _v in _back.state_dict().items():
        checks.expect_tensor(_v, f"the restored {_k}", device=checks.DEVICE,
                             why="The model should stay on the device build_model() put it on: "
                                 "load_state_dict copies values into the model's own tensors.")
        checks.expect(torch.equal(_v, _state[_k]),
                      f"The restored {_k} is not the saved value: restore_model should load the "
                      "saved state into the model that build_model() made.")
    _back.eval()
    with torch.no_grad():
        checks.expect_close(_back(_x), _want, "the restored model's output in eval mode", rtol=0, atol=0,
                            why="A model restored from its state_dict should compute exactly what the "
                                "saved model computed.")
    _renamed = nn.Sequential(_OD(  # the same shapes, but the head is called classifier
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        classifier=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    try:
        restore_model(_path, lambda: _renamed)
        _refused = False
    except NotImplementedError:
        raise
    except Exception:
        _refused = True
    checks.expect(_refused,
                  "Your restore_model loaded a file into a model whose keys do not match it (the file has "
                  "head.weight and head.bias, the model classifier.weight and classifier.bias) without an "
                  "error: the model kept random values where the file had nothing for it. strict=False "
                  "hides such mismatches; when restoring a model, load strictly (the default), so that an "
                  "architecture that differs from the saved one raises instead of passing unnoticed.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-restore-safe" points=2
# Hidden tests: restore_model refuses a booby-trapped file, and loads a file written on a GPU
# this machine does not have.
### BEGIN HIDDEN TESTS
import contextlib as _contextlib
import io as _io
from collections import OrderedDict as _OD
from unittest import mock as _mock


def _make_net(n_out=3):
    return nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, n_out),
    ))


class _Trap:
    def __reduce__(self):
        return (print, ("@@ code from the file ran @@",))


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _model = _make_net().to(checks.DEVICE)
    _path = os.path.join(_tmp, "model.pt")
    torch.save(_model.state_dict(), _path)
    _error = None
    with _mock.patch.object(torch, "load", wraps=torch.load) as _spy, \
            _mock.patch.object(torch.serialization, "load", _spy):   # the same function, by its other name
        try:
            restore_model(_path, lambda: _make_net().to(checks.DEVICE))
        except Exception as _err:      # judged after the arguments of torch.load
            _error = _err
    checks.expect(_spy.call_count >= 1,
                  "Your restore_model never called torch.load, so the test cannot see how it loads files.")
    for _call in _spy.call_args_list:
        _wo = _call.kwargs.get("weights_only", "not given")
        checks.expect(_wo is not False,
                      "Your restore_model calls torch.load with weights_only=False, which runs whatever "
                      "code a pickled file asks for. A state_dict holds only names and tensors: load "
                      "it with weights_only=True.")
        checks.expect(_wo is True,
                      "Your restore_model calls torch.load without weights_only=True. PyTorch 2.6 made it "
                      "the default, but older versions unpickle anything by default: say "
                      "weights_only=True so the loader is safe whatever version runs it.")
        _ml = _call.kwargs.get("map_location", _call.args[1] if len(_call.args) > 1 else None)
        checks.expect(_ml is not None,
                      "Your restore_model calls torch.load without map_location, so every tensor goes back "
                      "to the device it was saved from, and a file written on a GPU fails to load on "
                      "a machine without that GPU. Pass map_location (see Hint 2).")
    if _error is not None:
        raise _error
    _gpu = os.path.join(_tmp, "from_gpu.pt")
    _where = checks.save_as_if_on(_model.state_dict(), _gpu)
    try:
        restore_model(_gpu, lambda: _make_net().to(checks.DEVICE))
    except RuntimeError as _err:
        checks.expect(False, f"Your restore_model could not load a file written on {_where} (a device this "
                             "machine does not have): tensors go back to the device they were saved "
                             "from unless map_location says otherwise. Load onto the CPU (or this "
                             "model's device); load_state_dict copies the values where the model lives.")
    _bad = os.path.join(_tmp, "trap.pt")
    torch.save({**_model.state_dict(), "note": _Trap()}, _bad)
    _out = _io.StringIO()
    _raised = False
    with _contextlib.redirect_stdout(_out):
        try:
            restore_model(_bad, lambda: _make_net().to(checks.DEVICE))
        except Exception:
            _raised = True
    checks.expect("@@ code from the file ran @@" not in _out.getvalue(),
                  "Loading a booby-trapped file with restore_model ran the code hidden in it: the "
                  "file was unpickled without restrictions. Load with weights_only=True, which "
                  "rebuilds only tensors and plain containers and refuses everything else.")
    checks.expect(_raised,
                  "Your restore_model accepted a file holding a pickled object next to the tensors. A safe "
                  "loader (weights_only=True) refuses such a file with an error; let that error "
                  "reach the caller.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-strict"
# ## 4 · Rebuild, then load: what `load_state_dict` checks
#
# `model.load_state_dict(state)` matches entries **by name**: the value saved under
# `"body.0.weight"` goes into the tensor the model calls `"body.0.weight"`, and it must have
# the same shape. Positions and layer types play no part.
#
# By default loading is **strict**: if the model has a key that the state lacks (a *missing*
# key), or the state has a key that the model lacks (an *unexpected* key), nothing is loaded
# and you get a `RuntimeError` listing both. That is what you want when restoring a model:
# a mismatch means the architecture in your code is not the one that was saved.
#
# Sometimes a partial load is the point. In **transfer learning** you reuse a trained body
# under a new head for a different task. `load_state_dict(state, strict=False)` loads the
# entries whose names match, skips the rest, and **returns a report** with two lists,
# `missing_keys` and `unexpected_keys` (`load_state_dict` always returns this report; with
# `strict=False` it is the only place a mismatch shows up). Read it: a silent partial load (a typo in a prefix,
# say) leaves layers at their random initial values and trains a model that never saw the
# saved weights. And note what `strict=False` does *not* forgive: a name present on both
# sides with a **different shape** is still an error.

# %% [markdown] role="prose" grade_id="md-predict-strict"
# ### Exercise 4 · Predict, then verify: what does a partial load report?
#
# ```python
# old = Net(n_out=3)                 # body + head with 3 classes
#
# class Retarget(nn.Module):         # the same body, a new head for 5 classes
#     def __init__(self):
#         super().__init__()
#         self.body = Net().body     # same layers, same names
#         self.classifier = nn.Linear(8, 5)
#
# report = Retarget().load_state_dict(old.state_dict(), strict=False)
# ```
#
# Predict, in `strict_predictions`:
# - `"missing_keys"`: the set `set(report.missing_keys)`;
# - `"unexpected_keys"`: the set `set(report.unexpected_keys)`;
# - `"five_classes_raises"`: `True` or `False`. Does
#   `Net(n_out=5).load_state_dict(old.state_dict(), strict=False)` raise an error?
#
# <details><summary>Hint 1</summary>
#
# Missing keys belong to the model that receives the state: its entries that found no value.
# Unexpected keys belong to the state being loaded: its entries that found no place.
# </details>
#
# <details><summary>Hint 2</summary>
#
# In `Net(n_out=5)`, every name exists on both sides. Compare the shapes of `head.weight`.
# </details>

# %% role="answer" grade_id="strict-predictions"
strict_predictions = {
    "missing_keys": set(),          # a set of key names
    "unexpected_keys": set(),       # a set of key names
    "five_classes_raises": None,    # True or False
}
### BEGIN SOLUTION
strict_predictions = {
    "missing_keys": {"classifier.weight", "classifier.bias"},
    "unexpected_keys": {"head.weight", "head.bias"},
    "five_classes_raises": True,
}
### END SOLUTION

# %% role="test" grade_id="test-strict-predictions" points=3
# Hidden tests run both loads and compare with your predictions.
checks.expect(isinstance(strict_predictions, dict)
              and set(strict_predictions) == {"missing_keys", "unexpected_keys", "five_classes_raises"},
              "Your strict_predictions should be a dict with exactly the keys 'missing_keys', "
              "'unexpected_keys' and 'five_classes_raises'.")
for _field in ("missing_keys", "unexpected_keys"):
    checks.expect(type(strict_predictions[_field]) is set
                  and all(type(_k) is str for _k in strict_predictions[_field]),
                  f"Your strict_predictions[{_field!r}] should be a set of strings.")
checks.expect(type(strict_predictions["five_classes_raises"]) is bool,
              "Your strict_predictions['five_classes_raises'] should be True or False.")
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD


def _body():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2))


_old = nn.Sequential(_OD(body=_body(), head=nn.Linear(8, 3)))
_report = nn.Sequential(_OD(body=_body(), classifier=nn.Linear(8, 5))).load_state_dict(_old.state_dict(), strict=False)
_missing, _unexpected = set(_report.missing_keys), set(_report.unexpected_keys)
_pm, _pu = set(strict_predictions["missing_keys"]), set(strict_predictions["unexpected_keys"])
checks.expect(not (_pm == _unexpected and _pu == _missing),
              "You swapped the two lists. missing_keys are the receiving model's own keys that got "
              "no value from the state; unexpected_keys are entries of the state that the model has "
              "no place for (see Hint 1).")
checks.expect(_pm == _missing,
              "Your missing_keys are not what load_state_dict reports. Loading matches by name: "
              "list the keys of the new model that no entry of the old state_dict matches, "
              "parameters and buffers alike.")
checks.expect(_pu == _unexpected,
              "Your unexpected_keys are not what load_state_dict reports. Loading matches by name: "
              "list the entries of the old state_dict whose names the new model does not have.")
try:
    nn.Sequential(_OD(body=_body(), head=nn.Linear(8, 5))).load_state_dict(_old.state_dict(), strict=False)
    _raises = False
except RuntimeError:
    _raises = True
checks.expect(strict_predictions["five_classes_raises"] is _raises,
              "Your prediction for five_classes_raises is not what PyTorch does. strict=False "
              "forgives missing and unexpected names, but not a name present on both sides whose "
              "tensors have different shapes (see Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-backbone"
# ### Exercise 5 · Reuse a backbone under a new head
#
# Write `load_backbone(model, path)`. The file at `path` holds a `state_dict` saved from some
# other model. Copy into `model` every saved entry whose **name exists in `model` with the
# same shape**, and leave everything else in `model` as it was. Load the file safely and
# portably, as in Exercise 3.
#
# Return a pair `(not_loaded, unused)` of lists of key names, in any order:
# - `not_loaded`: the keys of `model` that received no value (they keep their initial values,
#   and you will want to know which they are before training);
# - `unused`: the keys of the file that were not copied into `model`.
#
# For a `Net(n_out=3)` checkpoint loaded into `Net(n_out=5)`, both lists are the head's two
# keys. The hidden tests use other pairs of models too.
#
# <details><summary>Hint 1</summary>
#
# Compare the file's entries with `model.state_dict()` (names and `.shape`) and keep only the
# ones that fit. Then `strict=False` loads them without complaining about the rest.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The report returned by `load_state_dict(..., strict=False)` answers one of the two
# questions. After your filtering, it cannot answer the other: the entries you dropped never
# reached `load_state_dict`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Filter with `model.state_dict()`, not `model.named_parameters()`: the backbone's batch-norm
# statistics are buffers, and they are worth as much as its weights.
# </details>

# %% role="answer" grade_id="backbone"
def load_backbone(model, path):
    """Load the matching entries of the state_dict at path into model; return (not_loaded, unused)."""
    ### BEGIN SOLUTION
    saved = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    usable = {name: value for name, value in saved.items()
              if name in own and value.shape == own[name].shape}
    report = model.load_state_dict(usable, strict=False)
    unused = [name for name in saved if name not in usable]
    return list(report.missing_keys), unused
    ### END SOLUTION


# %% role="test" grade_id="test-backbone-sanity" points=1
with tempfile.TemporaryDirectory() as _tmp:
    _path = os.path.join(_tmp, "old.pt")
    torch.save(Net(n_out=3).state_dict(), _path)
    try:
        _result = load_backbone(Net(n_out=5).to(DEVICE), _path)
    except RuntimeError as _err:
        if isinstance(_err, NotImplementedError):  # the untouched stub: no advice to give yet
            raise
        checks.expect(False, "Your load_backbone raised an error loading a 3-class Net's state into a "
                             "5-class Net: " + str(_err).strip().splitlines()[-1].strip() + " Load only "
                             "the entries that fit, with strict=False (see Hint 1).")
    checks.expect(type(_result) is tuple and len(_result) == 2,
                  "Your load_backbone should return a pair (not_loaded, unused).")
    for _part, _what in zip(_result, ("not_loaded", "unused")):
        checks.expect(type(_part) is list and all(type(_k) is str for _k in _part),
                      f"The {_what} part of the result should be a list of key names (strings).")
print("load_backbone returns", tuple(len(_part) for _part in _result), "keys")

# %% role="test" grade_id="test-backbone" points=3
# Hidden tests load trained backbones into models with new or renamed heads, and check the
# weights, the batch-norm statistics, the untouched head and the report.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD


def _body():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2))


def _check_backbone(_new, _path, _saved, _want_not_loaded, _want_unused, _case):
    _before = {_k: _v.clone() for _k, _v in _new.state_dict().items()}
    try:
        _result = load_backbone(_new, _path)
    except RuntimeError as _err:
        if "size mismatch" in str(_err):
            checks.expect(False, f"Your load_backbone raised a size-mismatch error ({_case}). strict=False "
                                 "forgives missing and unexpected names, but not a name present on both "
                                 "sides with a different shape: keep only the entries whose name and "
                                 "shape match the model's (see Hint 1).")
        if "Missing key" in str(_err) or "Unexpected key" in str(_err):
            checks.expect(False, f"Your load_backbone raised an error about missing or unexpected keys ({_case}). "
                                 "A strict load refuses a partial state; load with strict=False and "
                                 "report what did not match.")
        if "deserialize" in str(_err) or "cuda" in str(_err).lower():
            checks.expect(False, "Your load_backbone could not open a checkpoint written on a GPU this "
                                 "machine does not have: saved tensors go back to the device they came "
                                 "from unless torch.load is told otherwise. Pass map_location so they "
                                 "come to a device that exists here.")
        raise
    checks.expect(type(_result) is tuple and len(_result) == 2
                  and all(type(_p) is list and all(type(_k) is str for _k in _p) for _p in _result),
                  "Your load_backbone should return a pair of lists of key names.")
    _after = _new.state_dict()
    for _k, _v in _after.items():
        checks.expect_tensor(_v, f"the model's {_k} after load_backbone", device=checks.DEVICE,
                             why="Your load_backbone should not move the model: load_state_dict copies values "
                                 "into the model's own tensors.")
        if _k in _saved and _saved[_k].shape == _v.shape:
            _buffer = "running" in _k or "num_batches" in _k
            checks.expect(torch.equal(_v.cpu(), _saved[_k].cpu()),
                          f"The model's {_k} was not loaded from the checkpoint ({_case})."
                          + (" It is a buffer (batch-norm statistics): buffers are part of the "
                             "state_dict but not of named_parameters(), and a backbone needs them "
                             "(see Hint 3)." if _buffer else " Every entry whose name and shape match "
                             "should be copied."))
        else:
            checks.expect(torch.equal(_v, _before[_k]),
                          f"Your load_backbone changed {_k}, which has no matching entry in the checkpoint "
                          f"({_case}): entries that do not match must keep their values.")
    checks.expect(sorted(_result[0]) == sorted(_want_not_loaded),
                  f"The not_loaded list is not right ({_case}): it should name the model's keys that received no "
                  "value from the checkpoint. The report of load_state_dict(strict=False) lists them as "
                  "missing_keys (see Hint 2).")
    checks.expect(sorted(_result[1]) == sorted(_want_unused),
                  f"The unused list is not right ({_case}): it should name every key of the checkpoint that was not "
                  "copied, including those you left out because their shapes differ. The report of "
                  "load_state_dict cannot know about entries you never passed to it (see Hint 2).")


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _old = nn.Sequential(_OD(body=_body(), head=nn.Linear(8, 3))).to(checks.DEVICE)
    _opt = torch.optim.SGD(_old.parameters(), lr=0.5)
    for _ in range(3):
        _opt.zero_grad()
        _x = torch.randn(16, 4, device=checks.DEVICE)
        nn.functional.cross_entropy(_old(_x), torch.randint(0, 3, (16,), device=checks.DEVICE)).backward()
        _opt.step()
    _saved = {_k: _v.clone() for _k, _v in _old.state_dict().items()}
    _path = os.path.join(_tmp, "old.pt")
    torch.save(_old.state_dict(), _path)
    _head = ["head.weight", "head.bias"]
    _check_backbone(nn.Sequential(_OD(body=_body(), head=nn.Linear(8, 5))).to(checks.DEVICE), _path, _saved,
                    _head, _head, "a new 5-class head with the same name")
    _check_backbone(nn.Sequential(_OD(body=_body(), classifier=nn.Linear(8, 5))).to(checks.DEVICE), _path, _saved,
                    ["classifier.weight", "classifier.bias"], _head, "a new head named classifier")
    _check_backbone(nn.Sequential(_OD(body=_body(), head=nn.Linear(8, 3))).to(checks.DEVICE), _path, _saved,
                    [], [], "the same architecture")
    _gpu = os.path.join(_tmp, "old_from_gpu.pt")
    checks.save_as_if_on(_old.state_dict(), _gpu)
    _check_backbone(nn.Sequential(_OD(body=_body(), head=nn.Linear(8, 2))).to(checks.DEVICE), _gpu, _saved,
                    _head, _head, "a checkpoint written on a GPU this machine lacks")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-checkpoint"
# ## 5 · Checkpoints: everything training needs to continue
#
# A model's state is enough to *use* a model. To *continue training* it, you need everything
# that decides what the next step will do:
# - the **model's state** (parameters and buffers);
# - the **optimiser's state**. Adam keeps, for every parameter, a step count and two running
#   averages: `exp_avg` of the gradients (the first moment) and `exp_avg_sq` of their squares
#   (the second moment). SGD with momentum keeps a velocity. Restart Adam with empty state and its first updates
#   use fresh averages and a restarted bias correction: the run takes different steps from
#   there on. `optimizer.state_dict()` holds it all, indexed by the position of each
#   parameter, which is why you build the optimiser over the new model's parameters, in the
#   same order, before loading it;
# - the **epoch** (or step) counter, so the loop knows where to carry on, and a learning-rate
#   **scheduler**'s state if you use one (`scheduler.state_dict()`: how many steps it has
#   counted, so the rate carries on from where it was instead of restarting its schedule);
# - the **random number generator (RNG) state**. Dropout masks, random batches, shuffling and
#   augmentations all draw from PyTorch's generators. `torch.get_rng_state()` returns the CPU
#   generator's state as a tensor of bytes and `torch.set_rng_state(state)` puts it back; each
#   GPU has a generator of its own (`torch.cuda.get_rng_state_all()` and
#   `torch.cuda.set_rng_state_all(states)`, for when `torch.cuda.is_available()`). Both
#   setters want CPU byte tensors, one more reason to load checkpoints with
#   `map_location="cpu"`. A DataLoader that shuffles with a generator of its own (06) does not
#   draw from the global one: save that generator's state too, `generator.get_state()`, and put
#   it back with `generator.set_state(state)`, or the resumed run shuffles its next epochs
#   differently.
#
# Put them in one dictionary and save that. Every piece is a `state_dict`, a tensor, or a
# plain number, so the whole checkpoint loads with `weights_only=True`. (Do not put the
# model or optimiser *objects* in it, nor NumPy arrays: those are pickled objects, and a safe
# loader refuses them.)
#
# A crash *while* saving can leave a half-written file where your only checkpoint used to be.
# Careful code writes to a temporary name next to it and then renames it over the old one
# with `os.replace`, which is atomic. It is not required below, but it is a good habit.
#
# ### Exercise 6 · `save_checkpoint` and `load_checkpoint`
#
# - `save_checkpoint(path, model, optimizer, epoch, scheduler=None, generator=None)` writes one
#   file holding the model's and optimiser's states, the integer `epoch`, the RNG state of the
#   CPU (and of every GPU, when CUDA is available), and, when they are given, the scheduler's
#   state and the state of `generator` (the `torch.Generator` a DataLoader shuffles with).
# - `load_checkpoint(path, model, optimizer, scheduler=None, generator=None)` loads that file
#   safely and portably, restores the model (strictly, as in Exercise 3: a checkpoint of
#   another architecture is an error), the optimiser, the RNG state and, when they are given,
#   the scheduler and the generator, all in place, and returns the saved `epoch`.
#
# How you lay out the dictionary is up to you.
#
# <details><summary>Hint 1</summary>
#
# A checkpoint is a dictionary, for example with the keys `"model"`, `"optimizer"`, `"epoch"`
# and `"rng"`, each holding what `state_dict()`, the epoch and the RNG functions above give.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Restoring is the mirror image: `model.load_state_dict(...)`, `optimizer.load_state_dict(...)`
# and `torch.set_rng_state(...)`. Load with `map_location="cpu"`: the two `load_state_dict`
# calls move what they receive to the device of the parameters, and the RNG setter needs the
# state on the CPU.
# </details>

# %% role="answer" grade_id="checkpoint"
def save_checkpoint(path, model, optimizer, epoch, scheduler=None, generator=None):
    """Save model, optimizer, epoch and RNG state (and scheduler and generator, if given) to path."""
    ### BEGIN SOLUTION
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "rng": rng,
    }
    if scheduler is not None:
        checkpoint["scheduler"] = scheduler.state_dict()
    if generator is not None:
        checkpoint["generator"] = generator.get_state()
    torch.save(checkpoint, path)
    ### END SOLUTION


def load_checkpoint(path, model, optimizer, scheduler=None, generator=None):
    """Restore model, optimizer, RNG state (and scheduler and generator, if given) in place; return the epoch."""
    ### BEGIN SOLUTION
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"]["cpu"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if generator is not None:
        generator.set_state(checkpoint["generator"])
    return checkpoint["epoch"]
    ### END SOLUTION


# %% role="test" grade_id="test-checkpoint-sanity" points=1
with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "checkpoint.pt")
    _net = Net().to(DEVICE)
    save_checkpoint(_path, _net, torch.optim.Adam(_net.parameters()), 3)
    checks.expect(os.path.isfile(_path), "Your save_checkpoint should write a file at path.")
    _fresh = Net().to(DEVICE)
    _epoch = load_checkpoint(_path, _fresh, torch.optim.Adam(_fresh.parameters()))
    checks.expect_equal(_epoch, 3, "the epoch load_checkpoint returned")
print("save_checkpoint and load_checkpoint make a round trip")

# %% role="test" grade_id="test-checkpoint-state" points=3
# Hidden tests: after training with Adam, a checkpoint restores the model (buffers included),
# every piece of the optimiser's state, and the epoch, into freshly built objects; a checkpoint
# of another architecture is refused.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD


def _build():
    _m = nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    return _m, torch.optim.Adam(_m.parameters(), lr=1e-2)


def _train(_m, _o, _steps):
    _m.train()
    for _ in range(_steps):
        _x = torch.randn(16, 4, device=checks.DEVICE)
        _o.zero_grad()
        nn.functional.cross_entropy(_m(_x), torch.randint(0, 3, (16,), device=checks.DEVICE)).backward()
        _o.step()


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "checkpoint.pt")
    _m, _o = _build()
    _train(_m, _o, 3)
    _want_model = {_k: _v.clone() for _k, _v in _m.state_dict().items()}
    _want_opt = {_i: {_k: (_v.clone() if torch.is_tensor(_v) else _v) for _k, _v in _s.items()}
                 for _i, _s in _o.state_dict()["state"].items()}
    save_checkpoint(_path, _m, _o, 5)
    _train(_m, _o, 2)                          # the run goes on after the checkpoint
    with checks.seeded(7):
        _m2, _o2 = _build()
    _epoch = load_checkpoint(_path, _m2, _o2)
    checks.expect(type(_epoch) is int and _epoch == 5,
                  "Your load_checkpoint should return the epoch that save_checkpoint stored, as an int.")
    for _k, _v in _m2.state_dict().items():
        _buffer = "running" in _k or "num_batches" in _k
        checks.expect(torch.equal(_v, _want_model[_k]),
                      f"After load_checkpoint, the model's {_k} is not the saved value."
                      + (" It is a buffer (batch-norm statistics): save model.state_dict(), which "
                         "holds buffers as well as parameters." if _buffer else
                         " Save model.state_dict() and load it with model.load_state_dict()."))
    _got_opt = _o2.state_dict()["state"]
    checks.expect(len(_got_opt) > 0,
                  "After load_checkpoint the optimizer has no state at all: the optimizer state "
                  "(Adam's moment estimates exp_avg and exp_avg_sq, and its step counts) was not "
                  "restored, so the resumed run would take different steps. Save "
                  "optimizer.state_dict() in the checkpoint and load it with "
                  "optimizer.load_state_dict().")
    checks.expect(set(_got_opt) == set(_want_opt),
                  "After load_checkpoint the optimizer state covers different parameters than the "
                  "saved one: build the optimizer over the new model's parameters, then load its state.")
    for _i, _s in _want_opt.items():
        for _k, _v in _s.items():
            _have = _got_opt[_i].get(_k)
            checks.expect(torch.is_tensor(_have) and torch.equal(_have.cpu(), _v.cpu()) if torch.is_tensor(_v) else _have == _v,
                          f"After load_checkpoint, the optimizer state {_k!r} of parameter {_i} is not "
                          "the saved one: the optimizer state (Adam's moments and step counts) must "
                          "come back exactly.")
    _tracked = [_p for _g in _o2.param_groups for _p in _g["params"]]
    _params = list(_m2.parameters())
    checks.expect(len(_tracked) == len(_params) and all(_a is _b for _a, _b in zip(_tracked, _params)),
                  "After load_checkpoint the optimizer no longer updates the model's parameters. "
                  "Load the states into the objects you were given, in place.")
    _renamed = nn.Sequential(_OD(  # the same shapes, but the head is called classifier
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        classifier=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    try:
        load_checkpoint(_path, _renamed, torch.optim.Adam(_renamed.parameters(), lr=1e-2))
        _refused = False
    except NotImplementedError:
        raise
    except Exception:
        _refused = True
    checks.expect(_refused,
                  "Your load_checkpoint resumed a model whose keys do not match the checkpoint (the "
                  "checkpoint has head.weight and head.bias, the model classifier.weight and "
                  "classifier.bias) without an error: training would carry on from random values for "
                  "those layers. strict=False hides such mismatches; load the model's state strictly "
                  "(the default), so that a checkpoint of another architecture raises.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-checkpoint-rng" points=2
# Hidden tests: after load_checkpoint, the random number generator continues exactly where it
# was when the checkpoint was saved: the CPU's, and each GPU's (on a machine without one, on a
# simulated GPU).
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD


def _build():
    _m = nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    return _m, torch.optim.Adam(_m.parameters(), lr=1e-2)


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "checkpoint.pt")
    _m, _o = _build()
    torch.rand(100)
    save_checkpoint(_path, _m, _o, 1)
    _next_cpu = torch.rand(8)
    _next_gpu = torch.rand(8, device=checks.DEVICE) if checks.DEVICE.type == "cuda" else None
    torch.manual_seed(1234)                    # a new process starts with some other RNG state
    torch.rand(50)
    _m2, _o2 = _build()
    load_checkpoint(_path, _m2, _o2)
    checks.expect(torch.equal(torch.rand(8), _next_cpu),
                  "After load_checkpoint, PyTorch's random number generator does not continue from "
                  "where it was when the checkpoint was saved: the RNG state was not saved and "
                  "restored. Dropout masks and random batches after resuming then differ from the "
                  "run that never stopped. Save torch.get_rng_state() in the checkpoint and restore "
                  "it with torch.set_rng_state().")
    if _next_gpu is not None:
        checks.expect(torch.equal(torch.rand(8, device=checks.DEVICE), _next_gpu),
                      "After load_checkpoint, the GPU's random number generator does not continue "
                      "from where it was: each GPU has an RNG of its own. Save "
                      "torch.cuda.get_rng_state_all() too and restore it with "
                      "torch.cuda.set_rng_state_all().")

if checks.DEVICE.type != "cuda":
    # A machine with one GPU, simulated: torch.cuda says CUDA is available, and its RNG state
    # functions read and write a fake generator state (a byte tensor on the CPU, as the real ones).
    import torch.cuda.random as _cuda_random
    from unittest import mock as _mock

    _gpu_rng = [torch.arange(16, dtype=torch.uint8)]

    def _index(device="cuda"):
        return device if type(device) is int else (torch.device(device).index or 0)

    def _get_state(device="cuda"):
        return _gpu_rng[_index(device)].clone()

    def _set_state(new_state, device="cuda"):
        _gpu_rng[_index(device)] = new_state.clone()

    def _get_all():
        return [_s.clone() for _s in _gpu_rng]

    def _set_all(new_states):
        for _i, _s in enumerate(new_states):
            _gpu_rng[_i] = _s.clone()

    _fakes = {"get_rng_state": _get_state, "set_rng_state": _set_state,
              "get_rng_state_all": _get_all, "set_rng_state_all": _set_all}
    with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0), _mock.patch.multiple(
            torch.cuda, is_available=lambda: True, device_count=lambda: 1, **_fakes), \
            _mock.patch.multiple(_cuda_random, **_fakes):
        _path = os.path.join(_tmp, "checkpoint.pt")
        _m, _o = _build()
        save_checkpoint(_path, _m, _o, 1)
        _saved_gpu = _gpu_rng[0].clone()
        _gpu_rng[0] = torch.full((16,), 200, dtype=torch.uint8)   # the new process's GPU generator
        _m2, _o2 = _build()
        load_checkpoint(_path, _m2, _o2)
        _gpu_back = torch.equal(_gpu_rng[0], _saved_gpu)
    checks.expect(_gpu_back,
                  "On a machine with a GPU (simulated here), load_checkpoint did not put the GPU's random "
                  "number generator back where it was when the checkpoint was saved. Each GPU has a "
                  "generator of its own, which draws the dropout masks and random batches of a model on "
                  "that GPU, so a resumed run there would diverge. Whenever torch.cuda.is_available(), "
                  "save torch.cuda.get_rng_state_all() in the checkpoint and restore it with "
                  "torch.cuda.set_rng_state_all().")
### END HIDDEN TESTS

# %% role="test" grade_id="test-checkpoint-safe" points=2
# Hidden tests: the checkpoint holds only tensors, numbers and containers, load_checkpoint
# loads with weights_only=True, and it opens a checkpoint written on a GPU this machine lacks,
# and one meant for a model on another device than the CPU.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD
from unittest import mock as _mock


def _build():
    _m = nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    return _m, torch.optim.Adam(_m.parameters(), lr=1e-2)


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "checkpoint.pt")
    _m, _o = _build()
    _x = torch.randn(16, 4, device=checks.DEVICE)
    nn.functional.cross_entropy(_m(_x), torch.randint(0, 3, (16,), device=checks.DEVICE)).backward()
    _o.step()
    save_checkpoint(_path, _m, _o, 2)
    _found = torch.serialization.get_unsafe_globals_in_checkpoint(_path)
    checks.expect(not _found,
                  "The checkpoint holds pickled Python objects (" + ", ".join(_found[:3]) + "), not "
                  "only tensors, numbers, strings and containers, so a safe loader "
                  "(weights_only=True) refuses it. Save the state_dict() of the model and of the "
                  "optimizer, never the objects themselves (and no NumPy arrays).")
    _m2, _o2 = _build()
    _error = None
    with _mock.patch.object(torch, "load", wraps=torch.load) as _spy, \
            _mock.patch.object(torch.serialization, "load", _spy):   # the same function, by its other name
        try:
            load_checkpoint(_path, _m2, _o2)
        except Exception as _err:      # judged after the arguments of torch.load
            _error = _err
    checks.expect(_spy.call_count >= 1,
                  "Your load_checkpoint never called torch.load, so the test cannot see how it loads files.")
    for _call in _spy.call_args_list:
        _wo = _call.kwargs.get("weights_only", "not given")
        checks.expect(_wo is not False,
                      "Your load_checkpoint calls torch.load with weights_only=False, which runs whatever "
                      "code a pickled file asks for. A checkpoint of state_dicts, numbers and RNG "
                      "tensors loads with weights_only=True.")
        checks.expect(_wo is True,
                      "Your load_checkpoint calls torch.load without weights_only=True. PyTorch 2.6 made it "
                      "the default, but older versions unpickle anything by default: say "
                      "weights_only=True so the loader is safe whatever version runs it.")
        _ml = _call.kwargs.get("map_location", _call.args[1] if len(_call.args) > 1 else None)
        checks.expect(_ml is not None,
                      "Your load_checkpoint calls torch.load without map_location, so every tensor goes "
                      "back to the device it was saved from, and a checkpoint written on a GPU fails "
                      "to load on a machine without that GPU. Load with map_location=\"cpu\" (see "
                      "Hint 2).")
    if _error is not None:
        raise _error
    _gpu = os.path.join(_tmp, "from_gpu.pt")
    _where = checks.save_as_if_on(torch.load(_path, map_location="cpu", weights_only=True), _gpu)
    _m3, _o3 = _build()
    try:
        load_checkpoint(_gpu, _m3, _o3)
    except RuntimeError as _err:
        checks.expect(False, f"Your load_checkpoint could not load a checkpoint written on {_where} (a device "
                             "this machine does not have). Load with map_location=\"cpu\": the "
                             "load_state_dict calls move what they need to the parameters' device, and "
                             "torch.set_rng_state needs its state on the CPU.")
    for _k, _v in _m3.state_dict().items():
        checks.expect(torch.equal(_v, _m.state_dict()[_k]),
                      f"After loading the checkpoint written on {_where}, the model's {_k} is not the "
                      "saved value: load_checkpoint should restore the model's full state, parameters "
                      "and buffers.")
    _meta_m = nn.Sequential(_OD(  # a model on another device than the CPU, as on a GPU
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2)),
        head=nn.Linear(8, 3),
    )).to("meta")
    try:
        load_checkpoint(_path, _meta_m, torch.optim.Adam(_meta_m.parameters(), lr=1e-2))
    except (TypeError, RuntimeError, NotImplementedError) as _err:
        checks.expect(False, "With the model on another device than the CPU (the meta device here, standing in "
                             f"for a GPU), load_checkpoint failed ({type(_err).__name__}: "
                             f"{str(_err).strip().splitlines()[0][:80]}). Load the checkpoint with "
                             "map_location=\"cpu\", not onto the model's device: the load_state_dict calls "
                             "copy what they receive to the parameters' device themselves, and "
                             "torch.set_rng_state accepts only a CPU byte tensor.")
    # DEVICE (the notebook's, or checks.DEVICE) is the CPU here and a GPU on a GPU grader. A
    # loader that maps onto it passes here and fails there, so for one call the test points
    # both at the meta device, standing in for the GPU, and looks at what torch.load was asked.
    _m5, _o5 = _build()
    _ns = load_checkpoint.__globals__
    _had = _ns.get("DEVICE", None)
    _ns["DEVICE"] = torch.device("meta")
    try:
        with _mock.patch.object(checks, "DEVICE", torch.device("meta")), \
                _mock.patch.object(torch, "load", wraps=torch.load) as _spy, \
                _mock.patch.object(torch.serialization, "load", _spy):
            try:
                load_checkpoint(_path, _m5, _o5)
            except Exception:  # noqa: BLE001  (judged by the arguments of torch.load below)
                pass
    finally:
        _ns["DEVICE"] = _had
    for _call in _spy.call_args_list:
        _ml = _call.kwargs.get("map_location", _call.args[1] if len(_call.args) > 1 else None)
        checks.expect(str(_ml) != "meta",
                      "Your load_checkpoint maps the checkpoint onto DEVICE, the device where the tests "
                      "put models. It is the CPU on this grader, so nothing shows here, but on a GPU "
                      "grader every tensor would land on the GPU and torch.set_rng_state, which accepts "
                      "only a CPU byte tensor, would fail. Load with map_location=\"cpu\" (see Hint 2).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-checkpoint-schedule" points=2
# Hidden tests interrupt a run with a step scheduler and a shuffling DataLoader with its own
# generator, resume it from the checkpoint, and compare the learning rates and batch orders
# with the run that never stopped.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD


def _build():
    _m = nn.Sequential(_OD(body=nn.Linear(4, 8), head=nn.Linear(8, 3))).to(checks.DEVICE)
    _o = torch.optim.SGD(_m.parameters(), lr=0.4)
    return _m, _o, torch.optim.lr_scheduler.StepLR(_o, step_size=2, gamma=0.5)


def _epochs(model, optimizer, scheduler, loader, n):
    """n epochs; returns each epoch's learning rate and order of samples."""
    _seen = []
    for _ in range(n):
        _order = []
        for _batch in loader:
            _order += _batch.tolist()
            optimizer.zero_grad()
            model(torch.ones(len(_batch), 4, device=checks.DEVICE)).sum().backward()
            optimizer.step()
        _seen.append((optimizer.param_groups[0]["lr"], _order))
        scheduler.step()
    return _seen


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "checkpoint.pt")
    _m, _o, _s = _build()
    _g = torch.Generator().manual_seed(3)
    _loader = torch.utils.data.DataLoader(range(12), batch_size=4, shuffle=True, generator=_g)
    _epochs(_m, _o, _s, _loader, 3)
    save_checkpoint(_path, _m, _o, 3, scheduler=_s, generator=_g)
    _want = _epochs(_m, _o, _s, _loader, 3)                 # the run that never stopped
    _m2, _o2, _s2 = _build()
    _g2 = torch.Generator().manual_seed(99)                 # a new process: another generator state
    _epoch = load_checkpoint(_path, _m2, _o2, scheduler=_s2, generator=_g2)
    checks.expect(_epoch == 3, f"load_checkpoint returned {checks.describe(_epoch)}; the checkpoint was saved at epoch 3.")
    _loader2 = torch.utils.data.DataLoader(range(12), batch_size=4, shuffle=True, generator=_g2)
    _got = _epochs(_m2, _o2, _s2, _loader2, 3)
_fresh = [0.4 * 0.5 ** (_k // 2) for _k in range(3)]
checks.expect(not ([_lr for _lr, _ in _got] != [_lr for _lr, _ in _want]
                   and all(abs(_a - _b) < 1e-12 for (_a, _), _b in zip(_got, _fresh))),
              "After resuming, the learning rate starts its schedule again from the beginning: the "
              "scheduler's state was not restored. Save scheduler.state_dict() in the checkpoint and give it "
              "back with scheduler.load_state_dict(...) when a scheduler is passed (section 5).")
checks.expect(all(abs(_a[0] - _b[0]) < 1e-12 for _a, _b in zip(_got, _want)),
              f"After resuming, the learning rates of the next epochs are {[_lr for _lr, _ in _got]}; the run "
              f"that never stopped used {[_lr for _lr, _ in _want]}. Restore the scheduler's state.")
checks.expect([_order for _, _order in _got] == [_order for _, _order in _want],
              "After resuming, the DataLoader shuffles its next epochs differently from the run that never "
              "stopped: the state of its generator was not restored. Save generator.get_state() and put it "
              "back with generator.set_state(...) when a generator is passed (section 5).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-resume"
# ## 6 · Resuming exactly
#
# Long runs get interrupted: a time limit, a pre-empted machine, a crash. A training script
# that saves a checkpoint after every epoch and, when it starts, continues from the latest
# one, turns an interruption into a pause.
#
# What does "continues" mean? The strongest answer is also the most useful: the resumed run
# must be **bit-for-bit identical** to the run that never stopped. Not close: identical.
# That is achievable because floating-point arithmetic is deterministic when the same
# operations run in the same order on the same device, and it is testable: train straight
# through; train again, stop halfway, start afresh from the checkpoint, finish; compare every
# tensor with `torch.equal`. Any difference means some state was not carried over, and each
# missing piece has a signature:
# - optimiser state dropped: the first updates after resuming differ (Adam restarts its
#   averages);
# - RNG state dropped: the dropout masks and random batches differ from the first resumed
#   step;
# - epoch wrong: the run repeats or skips epochs, doing more or fewer updates in total.
#
# `train_epoch` below trains for one epoch on fresh random data through a model with dropout,
# so it draws random numbers at every step, and `build` makes a model with an Adam
# optimiser. Your loop will receive such functions as arguments.

# %% role="locked" grade_id="train-epoch"
def train_epoch(model, optimizer, steps=4, batch=16):
    """One epoch on fresh random data: every batch and every dropout mask uses torch's RNG."""
    model.train()
    device = next(model.parameters()).device
    for _ in range(steps):
        x = torch.randn(batch, 4, device=device)
        y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()    # 3 classes
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def build():
    """A fresh model (random initial weights) and its optimiser."""
    model = Net().to(DEVICE)
    return model, torch.optim.Adam(model.parameters(), lr=1e-2)


# %% [markdown] role="prose" grade_id="md-run-training"
# ### Exercise 7 · A training loop that survives interruptions
#
# Write `run_training(build, train_epoch, epochs, path, stop_after=None)`:
# 1. call `build()` once to get a fresh `(model, optimizer)`;
# 2. if a checkpoint exists at `path`, restore it with your `load_checkpoint` and carry on
#    from the epoch it records; otherwise start from the beginning;
# 3. for each remaining epoch, call `train_epoch(model, optimizer)` once, then save a
#    checkpoint at `path` with `save_checkpoint`, recording the number of epochs completed so
#    far;
# 4. if `stop_after` is given, return right after saving the checkpoint of epoch number
#    `stop_after` (counting from 1), as if the machine had gone down;
# 5. return `(model, optimizer)`.
#
# Calling `run_training(build, train_epoch, 4, path)` on a fresh `path` trains 4 epochs.
# Calling it with `stop_after=2`, then again without, trains 2 epochs and then the other 2,
# and the hidden test checks that the model and optimiser end up **exactly** where the
# uninterrupted run ended, with the RNG disturbed in between (as a new process would find it).
# It also interrupts runs the hard way (a `train_epoch` that raises an error in the middle of
# the run, as a crash would) and resumes a run twice (`stop_after=2`, then `stop_after=3`).
#
# <details><summary>Hint 1</summary>
#
# `os.path.exists(path)` tells you whether there is something to resume from. If a
# checkpoint records that 2 epochs are complete, the next epoch to run is the third one.
# </details>
#
# <details><summary>Hint 2</summary>
#
# If the resumed run is not identical, test your checkpoint functions first: every piece of
# state that the next epoch uses must go through the file and come back.
# </details>

# %% role="answer" grade_id="run-training"
def run_training(build, train_epoch, epochs, path, stop_after=None):
    """Train for `epochs` epochs in total, resuming from the checkpoint at path if there is one."""
    ### BEGIN SOLUTION
    model, optimizer = build()
    done = 0
    if os.path.exists(path):
        done = load_checkpoint(path, model, optimizer)
    while done < epochs:
        train_epoch(model, optimizer)
        done += 1
        save_checkpoint(path, model, optimizer, done)
        if stop_after is not None and done == stop_after:
            break
    return model, optimizer
    ### END SOLUTION


# %% role="test" grade_id="test-run-training-sanity" points=1
with tempfile.TemporaryDirectory() as _tmp, checks.seeded(0):
    _path = os.path.join(_tmp, "run.pt")
    _epochs_run = []

    def _counting_epoch(model, optimizer):
        _epochs_run.append(1)
        train_epoch(model, optimizer, steps=1)

    _result = run_training(build, _counting_epoch, 2, _path)
    checks.expect(type(_result) is tuple and len(_result) == 2,
                  "Your run_training should return the pair (model, optimizer).")
    checks.expect(len(_epochs_run) == 2,
                  f"Your run_training(build, train_epoch, 2, path) ran {len(_epochs_run)} epochs on a fresh "
                  "path, where 2 were asked for.")
    checks.expect(os.path.isfile(_path), "Your run_training should save a checkpoint at path.")
print("run_training trains and saves")

# %% role="test" grade_id="test-run-training" points=4
# Hidden tests: an uninterrupted 4-epoch run, a run stopped after 2 epochs, a run that crashes
# in its third epoch and a run stopped twice, each resumed in a "new process" (other RNG state,
# freshly built model), must end bit for bit identical.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

_calls = []


def _build():
    _m = nn.Sequential(_OD(
        body=nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3)),
        head=nn.Linear(8, 3),
    )).to(checks.DEVICE)
    return _m, torch.optim.Adam(_m.parameters(), lr=1e-2)


def _epoch(_m, _o):
    _calls.append(1)
    _m.train()
    for _ in range(3):
        _x = torch.randn(16, 4, device=checks.DEVICE)
        _y = torch.randint(0, 3, (16,), device=checks.DEVICE)
        _o.zero_grad()
        nn.functional.cross_entropy(_m(_x), _y).backward()
        _o.step()


def _opt_tensors(_o):
    return {f"{_i}.{_k}": _v for _i, _s in _o.state_dict()["state"].items()
            for _k, _v in _s.items() if torch.is_tensor(_v)}


with tempfile.TemporaryDirectory() as _tmp:
    _straight, _broken = os.path.join(_tmp, "straight.pt"), os.path.join(_tmp, "interrupted.pt")
    with checks.seeded(0):
        _init = {_k: _v.clone() for _k, _v in _build()[0].state_dict().items()}
    with checks.seeded(0):
        del _calls[:]
        _result = run_training(_build, _epoch, 4, _straight)
    checks.expect(type(_result) is tuple and len(_result) == 2,
                  "Your run_training should return the pair (model, optimizer).")
    _m1, _o1 = _result
    checks.expect(len(_calls) == 4,
                  f"An uninterrupted run_training(..., 4, path) called train_epoch {len(_calls)} times; "
                  "it should run each of the 4 epochs once.")
    checks.expect(any(not torch.equal(_v, _init[_k]) for _k, _v in _m1.state_dict().items()),
                  "Your run_training returned a model that did not train: return the model that "
                  "train_epoch updated.")
    with checks.seeded(0):
        del _calls[:]
        run_training(_build, _epoch, 4, _broken, stop_after=2)
    checks.expect(len(_calls) == 2,
                  f"Your run_training(..., 4, path, stop_after=2) ran {len(_calls)} epochs; it should stop "
                  "right after saving the checkpoint of epoch 2.")
    with checks.seeded(4321):                  # a new process: another RNG state, fresh weights
        torch.rand(77)
        del _calls[:]
        _m2, _o2 = run_training(_build, _epoch, 4, _broken)
    checks.expect(len(_calls) != 4,
                  "The resumed run started again from the first epoch (it ran all 4). When a "
                  "checkpoint exists, restore it and carry on from the epoch it records.")
    checks.expect(len(_calls) == 2,
                  f"The resumed run ran {len(_calls)} epochs, where 2 of the 4 were left: the epoch "
                  "stored in the checkpoint and the loop disagree about how many epochs are done, so "
                  "an epoch is repeated or skipped. Store the number of epochs completed, and "
                  "continue with the next one.")
    _s1, _s2 = _m1.state_dict(), _m2.state_dict()
    _diff = [_k for _k in _s1 if not torch.equal(_s1[_k], _s2[_k])]
    _t1, _t2 = _opt_tensors(_o1), _opt_tensors(_o2)
    _diff_opt = [_k for _k in _t1 if _k not in _t2 or not torch.equal(_t1[_k], _t2[_k])]
    checks.expect(not _diff and not _diff_opt,
                  f"The resumed run is not bit-for-bit identical to the uninterrupted one: "
                  f"{len(_diff)} of {len(_s1)} model tensors and {len(_diff_opt)} of {len(_t1)} "
                  "optimizer tensors differ. Everything the next epoch uses must be carried over: "
                  "the model (parameters and buffers), the optimizer state (Adam's moments), the "
                  "epoch, and the RNG state that draws the batches and dropout masks. Check your "
                  "checkpoint functions (see Hint 2).")

    class _Crash(Exception):
        pass

    def _crashing(_m, _o):
        if len(_calls) == 2:
            raise _Crash("the machine went down during the third epoch")
        _epoch(_m, _o)

    _crashed = os.path.join(_tmp, "crashed.pt")
    with checks.seeded(0):
        del _calls[:]
        try:
            run_training(_build, _crashing, 4, _crashed)
        except NotImplementedError:
            raise
        except Exception:                      # the crash, as it is or wrapped in another error
            pass
    with checks.seeded(4321):                  # a new process after the crash
        torch.rand(77)
        del _calls[:]
        _m3, _o3 = run_training(_build, _epoch, 4, _crashed)
    _s3, _t3 = _m3.state_dict(), _opt_tensors(_o3)
    checks.expect(len(_calls) == 2 and all(torch.equal(_s1[_k], _s3[_k]) for _k in _s1)
                  and all(_k in _t3 and torch.equal(_t1[_k], _t3[_k]) for _k in _t1),
                  f"A run that crashed during its third epoch (train_epoch raised an error) was resumed with "
                  f"{len(_calls)} epochs to go instead of 2, or did not end where the uninterrupted run ended: "
                  "the checkpoint of the second epoch was not on disk when the crash came. A crash gives no "
                  "warning, so save a checkpoint after every epoch, not only when the loop stops or ends.")

    _twice = os.path.join(_tmp, "twice.pt")     # stopped after epoch 2, then after epoch 3, then finished
    with checks.seeded(0):
        run_training(_build, _epoch, 4, _twice, stop_after=2)
    with checks.seeded(4321):
        torch.rand(77)
        del _calls[:]
        run_training(_build, _epoch, 4, _twice, stop_after=3)
    checks.expect(len(_calls) == 1,
                  f"Resumed from the checkpoint of epoch 2 with stop_after=3, your run_training ran {len(_calls)} "
                  "epochs instead of 1. stop_after is the number of an epoch of the whole run (counting from "
                  "1), not a number of epochs for this call: stop right after saving the checkpoint of "
                  "epoch stop_after.")
    with checks.seeded(99):
        torch.rand(5)
        _m4, _o4 = run_training(_build, _epoch, 4, _twice)
    _s4, _t4 = _m4.state_dict(), _opt_tensors(_o4)
    checks.expect(all(torch.equal(_s1[_k], _s4[_k]) for _k in _s1)
                  and all(_k in _t4 and torch.equal(_t1[_k], _t4[_k]) for _k in _t1),
                  "A run interrupted twice (after epochs 2 and 3) did not end bit for bit where the "
                  "uninterrupted run ended: each resume must restore everything the next epoch uses.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-seeds"
# ## 7 · Reproducibility: seeds and deterministic algorithms
#
# Resuming restores a state that was saved. Reproducing a run from scratch means *starting*
# from the same state, which takes two things.
#
# **Seeds.** Every random number generator your code touches must start from a known seed,
# and there are several: Python's `random` module, NumPy's global generator, and PyTorch's
# generators (`torch.manual_seed` seeds the CPU's and every GPU's at once). Data loading adds
# its own (a `torch.Generator` passed to the `DataLoader`, and worker seeds: see 06). Seeding
# only one of them is the usual cause of "I set the seed and the results still change".
#
# **Deterministic algorithms.** The same seed is not enough if an operation itself is not
# deterministic. Some GPU kernels add numbers with atomic operations whose order varies from
# run to run, so the rounding varies; cuDNN's benchmark mode times several algorithms on the
# first call and keeps the fastest, which may differ between runs. To rule that out:
# - `torch.use_deterministic_algorithms(True)` makes PyTorch pick deterministic
#   implementations, and raise an error for an operation that has none (rather than quietly
#   giving different results);
# - `torch.backends.cudnn.benchmark = False` keeps cuDNN's choice fixed;
# - on CUDA, cuBLAS needs the environment variable `CUBLAS_WORKSPACE_CONFIG=":4096:8"` (set
#   before the first matrix multiplication) to be deterministic.
#
# Deterministic algorithms can be slower, so this is a switch you turn on when you need
# exact reproducibility (debugging, tests, published results). And reproducible means on the
# same software and hardware: a different PyTorch version, or a CPU instead of a GPU, may
# give different numbers from the same seed.
#
# ### Exercise 8 · `seed_everything`
#
# Write `seed_everything(seed, deterministic=False)` that seeds Python's `random`, NumPy's
# global generator and PyTorch (CPU and GPUs) with `seed`. When `deterministic` is true, it
# also turns on deterministic algorithms (in the mode that raises an error for an operation
# without a deterministic implementation, not the one that only warns), turns off cuDNN's
# benchmark mode, and sets `CUBLAS_WORKSPACE_CONFIG` to `":4096:8"` unless it is already set.
# It returns nothing.
#
# <details><summary>Hint 1</summary>
#
# Three seeding calls: `random.seed`, `np.random.seed`, `torch.manual_seed`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `os.environ.setdefault(name, value)` sets a variable only if it is not set yet.
# </details>

# %% role="answer" grade_id="seed"
def seed_everything(seed, deterministic=False):
    """Seed Python, NumPy and PyTorch; optionally ask for deterministic algorithms."""
    ### BEGIN SOLUTION
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    ### END SOLUTION


# %% role="test" grade_id="test-seed-sanity" points=1
with checks.seeded(0):
    seed_everything(3)
    _first = torch.rand(4)
    seed_everything(3)
    checks.expect(torch.equal(torch.rand(4), _first),
                  "After seed_everything(3) twice, torch.rand should give the same numbers both times.")
print("seed_everything(3) makes torch.rand repeat")

# %% role="test" grade_id="test-seed" points=2
# Hidden tests draw from Python's, NumPy's and PyTorch's generators after seeding, and check
# the deterministic settings (and put every setting back afterwards).
### BEGIN HIDDEN TESTS
_py_state, _np_state = random.getstate(), np.random.get_state()
_det, _warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
_bench = torch.backends.cudnn.benchmark
_cublas = os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def _draws():
    _d = {"Python's random module": random.random(),
          "NumPy's global generator": float(np.random.rand()),
          "PyTorch's CPU generator": torch.rand(3)}
    if checks.DEVICE.type == "cuda":
        _d["PyTorch's GPU generator"] = torch.rand(3, device=checks.DEVICE)
    return _d


def _same(_a, _b):
    return torch.equal(_a, _b) if torch.is_tensor(_a) else _a == _b


try:
    with checks.seeded(0):
        _r = seed_everything(11)
        checks.expect(_r is None, "Your seed_everything should return nothing (None).")
        _a = _draws()
        torch.rand(5), random.random(), np.random.rand()
        seed_everything(11)
        _b = _draws()
        seed_everything(12)
        _c = _draws()
        for _name in _a:
            checks.expect(_same(_a[_name], _b[_name]),
                          f"After seed_everything(11), {_name} gave different numbers on two runs: it "
                          "was not seeded. Every generator your code uses must be seeded, or the run "
                          "is not reproducible (see Hint 1).")
            checks.expect(not _same(_a[_name], _c[_name]),
                          f"Your seed_everything(11) and seed_everything(12) give the same numbers from "
                          f"{_name}: seed it with the seed you are given.")
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
        seed_everything(11)
        checks.expect(not torch.are_deterministic_algorithms_enabled(),
                      "Your seed_everything(11) (deterministic=False) turned on deterministic algorithms: "
                      "they can be slower, so only turn them on when asked.")
        seed_everything(11, deterministic=True)
        checks.expect(torch.are_deterministic_algorithms_enabled(),
                      "Your seed_everything(11, deterministic=True) did not turn on deterministic "
                      "algorithms: call torch.use_deterministic_algorithms(True), so operations "
                      "without a deterministic implementation raise instead of varying.")
        checks.expect(not torch.is_deterministic_algorithms_warn_only_enabled(),
                      "Your seed_everything(11, deterministic=True) turned on deterministic algorithms with "
                      "warn_only=True: an operation without a deterministic implementation then only "
                      "warns, and still gives different results from run to run. Leave warn_only at its "
                      "default (False), so that such an operation raises an error you cannot miss.")
        checks.expect(torch.backends.cudnn.benchmark is False,
                      "Your seed_everything(11, deterministic=True) left cuDNN's benchmark mode on: it "
                      "picks the fastest algorithm by timing, which can differ between runs. Set "
                      "torch.backends.cudnn.benchmark = False.")
        checks.expect(os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8"),
                      "Your seed_everything(11, deterministic=True) did not set CUBLAS_WORKSPACE_CONFIG: "
                      "on CUDA, cuBLAS is deterministic only with a fixed workspace configuration "
                      "(\":4096:8\") (see Hint 2).")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"
        seed_everything(11, deterministic=True)
        checks.expect(os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":16:8",
                      "Your seed_everything overwrote a CUBLAS_WORKSPACE_CONFIG that was already set: "
                      "set it only when it is missing (see Hint 2).")
finally:
    torch.use_deterministic_algorithms(_det, warn_only=_warn)
    torch.backends.cudnn.benchmark = _bench
    if _cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = _cublas
    random.setstate(_py_state)
    np.random.set_state(_np_state)
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A model is code plus state. `state_dict()` is the state: every parameter and buffer by
#   name, as references to the model's own tensors (clone them for a snapshot).
# - Save the state, not the object. Load by rebuilding the architecture, then
#   `load_state_dict`, with `torch.load(..., weights_only=True, map_location=...)`: pickles
#   can run code, and saved tensors remember devices that another machine may not have.
# - `load_state_dict` matches by name; strict loading refuses mismatches, `strict=False`
#   reports them (and still refuses different shapes). Read the report.
# - A checkpoint holds model, optimiser, epoch and RNG state; with all four, a resumed run is
#   bit-for-bit the run that never stopped, and a test can prove it.
# - Reproducibility needs every generator seeded and, on GPUs, deterministic algorithms.
#
# This closes the core track: you can build, train, evaluate and now keep a model. The
# advanced track starts with **[09 · Convolutional networks](../09_cnn/09_cnn.ipynb)**.
