# %% [markdown] role="prose" grade_id="title"
# # 04 · Models: `nn.Module`
#
# **Time:** about 2 h 30 min of work (4,900 words to read, 9 exercises). Run top to bottom, the
# finished notebook takes under a second.
#
# A PyTorch model is not a special object that a framework builds for you: it is an instance of
# an ordinary Python class that subclasses `nn.Module`. That class does two jobs. It **owns
# tensors**: the weights that training will change, and other state that must travel with the
# model. And it **describes a computation**: how an input becomes an output. Everything else you
# will do with a model (give its weights to an optimiser, save it, move it to a GPU, switch it to
# evaluation mode, look inside it) works only because `nn.Module` keeps an exact record of what
# it owns. This notebook is about that record: how things get into it, how they stay out of it by
# accident, and what you can do with it once it is right.
#
# **By the end of this notebook you will be able to:**
# - tell what belongs in `__init__` (parts built once) from what belongs in `forward` (the
#   computation run on every call), and why you call `model(x)` rather than `model.forward(x)`;
# - predict which attributes a module registers as parameters, buffers and submodules, and
#   which it silently ignores;
# - build models with `nn.Sequential`, `nn.ModuleList` and `nn.ModuleDict`;
# - keep state that is not learned (running statistics) in buffers that are saved and moved
#   with the model, and update it safely;
# - predict what `.to(device)` moves and what it leaves behind;
# - repair a model whose parts are invisible to PyTorch;
# - count parameters, choose what learns by freezing, and initialise weights (Xavier, Kaiming)
#   in place;
# - attach forward hooks that watch activations, and remove them cleanly.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first.

# %% role="locked" grade_id="setup"
import math

import torch
from torch import nn

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__)

# %% [markdown] role="prose" grade_id="md-modules"
# ## 1 · A module owns tensors and describes a computation
#
# Every model you write has two methods, and they run at very different times:
#
# - `__init__` runs **once**, when you build the model. It creates the parts: layers, weight
#   tensors, constants. Whatever it stores on `self` lives as long as the model does, which is
#   exactly what a weight needs if training is to improve it step after step.
# - `forward` runs **on every call**. It says how an input flows through the parts. Nothing it
#   creates outlives the call: a layer built inside `forward` is a brand-new, randomly
#   initialised layer each time, and no optimiser ever sees it.
#
# You run a model by calling it, `model(x)`. The call goes through `nn.Module.__call__`, which
# runs `forward` *and* the machinery around it (hooks, which you will meet in section 9).
# `model.forward(x)` returns the same numbers, so the mistake goes unnoticed, but it skips that
# machinery.
#
# **How a module knows what it owns.** `nn.Module` intercepts attribute assignment. When
# `__init__` runs `self.fc = nn.Linear(4, 3)`, the module sees that the value is itself a module
# and files it in its registry of **submodules**; an `nn.Parameter` is filed as a **parameter**.
# Anything else (a plain tensor, a number, a Python list or dict, even a list full of layers)
# becomes an ordinary Python attribute. It is still there, and `forward` can use it, but the
# methods that walk the registries cannot see it: `parameters()` (what you give the optimiser),
# `state_dict()` (what you save), `.to()` (what moves to a GPU), `train()` and `eval()`,
# `zero_grad()`.
#
# The registries themselves are created by `nn.Module.__init__`. That is why a model's
# `__init__` begins with `super().__init__()`: before that call there is nowhere to file a
# layer, and PyTorch stops you with `cannot assign module before Module.__init__() call`, or
# with stranger errors later if the first attributes you set happened to be plain values.
#
# ### Exercise 1 · Predict, then verify
#
# Read this module **without running it** and predict what PyTorch reports about it.
#
# ```python
# class Probe(nn.Module):
#     def __init__(self):
#         super().__init__()
#         self.proj = nn.Linear(4, 3)
#         self.gain = nn.Parameter(torch.ones(3))
#         self.offset = torch.zeros(3)
#         self.blocks = [nn.Linear(3, 6), nn.Linear(6, 2)]
#
#     def forward(self, x):
#         h = self.proj(x) * self.gain + self.offset
#         for block in self.blocks:
#             h = block(h)
#         return h
#
# probe = Probe()
# ```
#
# Fill in the dictionary `predictions`:
# - `"parameter tensors"`: `len(list(probe.parameters()))`, an int;
# - `"parameter values"`: how many numbers those tensors hold together
#   (`sum(p.numel() for p in probe.parameters())`), an int;
# - `"state_dict keys"`: `set(probe.state_dict())`, a set of strings;
# - `"children"`: `len(list(probe.children()))`, the number of registered direct submodules;
# - `"output shape"`: `tuple(probe(torch.zeros(5, 4)).shape)`, a tuple of ints.
#
# When you have committed to your answers, paste the class into a scratch cell and check them.
# The hidden test does the same.
#
# <details><summary>Hint 1</summary>
#
# Go through `__init__` line by line and ask of each value: is it an `nn.Module`, an
# `nn.Parameter`, or something else? Only the first two get registered.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `nn.Linear(in_features, out_features)` owns a `weight` of shape `(out_features, in_features)`
# and a `bias` of shape `(out_features,)`. A `state_dict` key is a dotted path: the submodule's
# attribute name, a dot, the tensor's name; a parameter of the model itself has no dot.
# </details>
#
# <details><summary>Hint 3</summary>
#
# For the output shape: being unregistered does not stop a layer from running. `forward` is
# plain Python, and it uses whatever is stored on `self`.
# </details>

# %% role="answer" grade_id="predict-registry"
predictions = {
    "parameter tensors": None,  # an int
    "parameter values": None,   # an int
    "state_dict keys": None,    # a set of strings, such as {"name.weight", ...}
    "children": None,           # an int
    "output shape": None,       # a tuple of ints
}
### BEGIN SOLUTION
predictions = {
    "parameter tensors": 3,
    "parameter values": 18,
    "state_dict keys": {"proj.weight", "proj.bias", "gain"},
    "children": 1,
    "output shape": (5, 2),
}
### END SOLUTION

# %% role="test" grade_id="test-predict-registry" points=3
# Hidden tests build Probe and compare your predictions with what PyTorch reports.
checks.expect(isinstance(predictions, dict) and set(predictions) == {
    "parameter tensors", "parameter values", "state_dict keys", "children", "output shape"},
    "The answer cell should set predictions to a dict with exactly the keys 'parameter tensors', "
    "'parameter values', 'state_dict keys', 'children' and 'output shape'.")
checks.expect(all(type(predictions[k]) is int for k in ("parameter tensors", "parameter values", "children")),
              "Your predictions for 'parameter tensors', 'parameter values' and 'children' should each be an int.")
checks.expect(type(predictions["state_dict keys"]) is set and all(type(k) is str for k in predictions["state_dict keys"]),
              "Your prediction for 'state_dict keys' should be a set of strings, such as {\"name.weight\"}.")
checks.expect(type(predictions["output shape"]) in (tuple, torch.Size)
              and all(type(d) is int for d in predictions["output shape"]),
              "Your prediction for 'output shape' should be a tuple of ints, such as (7, 1) (not a list).")
### BEGIN HIDDEN TESTS
class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.gain = nn.Parameter(torch.ones(3))
        self.offset = torch.zeros(3)
        self.blocks = [nn.Linear(3, 6), nn.Linear(6, 2)]

    def forward(self, x):
        h = self.proj(x) * self.gain + self.offset
        for block in self.blocks:
            h = block(h)
        return h


_probe = _Probe()
_unregistered = ("Only values assigned to self as an nn.Module or an nn.Parameter are registered: a "
                 "plain tensor attribute, and layers kept in a plain Python list, are invisible to "
                 "parameters(), state_dict() and children().")
checks.expect_equal(predictions["parameter tensors"], len(list(_probe.parameters())),
                    "Your prediction for the number of parameter tensors", show=False,
                    why="parameters() yields the registered Parameters of the model and of its "
                        "registered submodules. " + _unregistered)
checks.expect_equal(predictions["parameter values"], sum(p.numel() for p in _probe.parameters()),
                    "Your prediction for the number of parameter values", show=False,
                    why="Add up the sizes of the registered parameter tensors only (see Hint 2 for "
                        "the shapes of a Linear layer's tensors). " + _unregistered)
_keys = predictions["state_dict keys"]
checks.expect(type(_keys) is set and all(type(k) is str for k in _keys),
              "Your prediction for the state_dict keys should be a set of strings.")
_want = set(_probe.state_dict())
checks.expect("offset" not in _keys,
              "Your state_dict keys include 'offset'. A plain tensor assigned to self is not part of "
              "the module's state: it is neither a parameter nor a buffer, so state_dict() does not "
              "save it.")
checks.expect(not any(k.startswith("blocks") for k in _keys),
              "Your state_dict keys include entries for blocks. Layers kept in a plain Python list "
              "are not registered, so their weights are not part of the state_dict.")
checks.expect(sorted(_keys) == sorted(_want),
              "Your state_dict keys are not what PyTorch reports. The state_dict holds every registered "
              "parameter and buffer, named by its dotted path: a submodule's attribute name, a dot, "
              "the tensor's name (a parameter of the model itself has no dot).")
checks.expect_equal(predictions["children"], len(list(_probe.children())),
                    "Your prediction for the number of children", show=False,
                    why="children() yields the registered direct submodules. " + _unregistered)
checks.expect_equal(predictions["output shape"], tuple(_probe(torch.zeros(5, 4)).shape),
                    "Your prediction for the output shape", show=False,
                    why="Unregistered does not mean unused: forward is plain Python and runs every "
                        "layer it reaches, registered or not. Follow the shapes through proj and "
                        "the two blocks.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-containers"
# ## 2 · Containers that register: `Sequential`, `ModuleList`, `ModuleDict`
#
# The number of layers in a real model is often decided when it is built ("three hidden
# layers of width 64"), so you build the layers in a loop and keep them in a collection. A
# Python list is the natural thing to reach for, and it is the classic trap: the module
# registers what is assigned to its attributes, a list is not a module, and so the layers inside
# it stay invisible (the `blocks` of `Probe`). Training then seems to work, but those layers never
# learn, are never saved, and stay behind when the model moves to a GPU.
#
# PyTorch has three containers that *are* modules, so whatever they hold is registered:
#
# | container | what it is | its own `forward` |
# |---|---|---|
# | `nn.Sequential(a, b, c)` | a pipeline | feeds each layer's output into the next |
# | `nn.ModuleList([a, b, c])` | a list that registers | none: you loop over it in your `forward` |
# | `nn.ModuleDict({"x": a, "y": b})` | a dict with string keys that registers | none: you pick entries by name |
#
# Use `Sequential` when data flows straight through; `ModuleList` when your `forward` does
# something between the layers (keeps intermediate results, adds skip connections);
# `ModuleDict` when layers are chosen by name (one output head per task, say). A container
# names its children by position or key, and those names become part of the dotted paths in
# `named_parameters()` and `state_dict()`: `layers.0.weight`, `heads.digit.bias`.
#
# One habit from section 1 matters here: inside `forward`, call each layer as `layer(h)`, never
# `layer.forward(h)`. The numbers are the same until someone attaches a hook to that layer, and
# then the hook silently never runs.
#
# ### Exercise 2 · A configurable MLP
#
# Write `MLP(in_features, hidden, out_features, activation=nn.ReLU)`, a multi-layer perceptron:
# - `hidden` is a list of hidden-layer widths, possibly empty. The network has one `nn.Linear`
#   per step `in_features → hidden[0] → … → hidden[-1] → out_features`, so `len(hidden) + 1`
#   of them.
# - After every `Linear` **except the last**, it applies an activation module made by calling
#   `activation()` (a class such as `nn.ReLU` or `nn.Tanh`; make one per position). The last
#   layer's output is returned as it is: raw scores.
# - All layers are built in `__init__` and kept in registered containers (which ones is your
#   choice).
# - `forward(x)` maps a `(batch, in_features)` tensor to a `(batch, out_features)` tensor.
#
# <details><summary>Hint 1</summary>
#
# Start from the list of widths `[in_features, *hidden, out_features]`: each pair of neighbours
# is the `(in, out)` size of one `Linear`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Collecting the layers in a Python list *while building* is fine. What matters is what you
# store on `self`: a container module such as `nn.Sequential(*layers)` or
# `nn.ModuleList(layers)`, not the list itself.
# </details>
#
# <details><summary>Hint 3</summary>
#
# The whole of `__init__` is yours, including its first line: `super().__init__()`.
# </details>

# %% role="answer" grade_id="mlp"
class MLP(nn.Module):
    """Linear layers with an activation between consecutive ones (none after the last)."""

    def __init__(self, in_features, hidden, out_features, activation=nn.ReLU):
        ### BEGIN SOLUTION
        super().__init__()
        widths = [in_features, *hidden, out_features]
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(activation())
        self.layers = nn.Sequential(*layers)
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.layers(x)
        ### END SOLUTION


# %% role="test" grade_id="test-mlp-sanity" points=1
_mlp = checks.make_module(MLP, 4, [8, 8], 3)
_y = _mlp(torch.randn(5, 4))
checks.expect_tensor(_y, "MLP(4, [8, 8], 3)(x) for x of shape (5, 4)", shape=(5, 3),
                     why="forward maps (batch, in_features) to (batch, out_features): the layers chain "
                         "4 → 8 → 8 → 3.")
_n = sum(p.numel() for p in _mlp.parameters())
checks.expect(_n == 139,
              f"MLP(4, [8, 8], 3) registers {_n} parameter values, but its three Linear layers "
              "(4→8, 8→8, 8→3) hold 139. Layers kept in a plain Python list, or created inside "
              "forward, are invisible to parameters(): build them in __init__ and keep them in "
              "nn.Sequential or nn.ModuleList.")
print(_mlp)

# %% role="test" grade_id="test-mlp" points=4
# Hidden tests: several sizes and activations, registered layers, parity with torch's layers, hooks firing.
### BEGIN HIDDEN TESTS
for _in, _hidden, _out, _act in [(3, [], 2, nn.ReLU), (5, [7], 4, nn.Tanh), (6, [10, 9, 8], 1, nn.GELU)]:
    _desc = f"MLP({_in}, {_hidden}, {_out}, activation=nn.{_act.__name__})"
    _given = list(_hidden)
    with checks.seeded(0):
        _model = checks.make_module(MLP, _in, _given, _out, activation=_act).to(checks.DEVICE)
    checks.expect(_given == _hidden,
                  f"{_desc} changed the list hidden it was given (it now reads {_given}). Build your own list "
                  "of widths, [in_features, *hidden, out_features], instead of inserting into the caller's.")
    _linears = [m for m in _model.modules() if type(m) is nn.Linear]
    _want = list(zip([_in, *_hidden], [*_hidden, _out]))
    checks.expect(len(_linears) == len(_want),
                  f"{_desc} registers {len(_linears)} nn.Linear layers, not one per step from in_features "
                  "through the hidden widths to out_features. Layers kept in a plain Python list, or "
                  "created inside forward, are not registered: build them in __init__ and keep them "
                  "in nn.Sequential or nn.ModuleList.")
    _sizes = [(m.in_features, m.out_features) for m in _linears]
    checks.expect(_sizes == _want,
                  f"The Linear layers of {_desc} have (in, out) sizes {_sizes}: consecutive layers "
                  "should chain from in_features through each hidden width to out_features.")
    _acts = [m for m in _model.modules() if type(m) is _act]
    _uses = [m for _, m in _model.named_modules(remove_duplicate=False) if type(m) is _act]
    checks.expect(len(_acts) == len(_hidden) or len(_uses) != len(_hidden),
                  f"{_desc} reuses one {_act.__name__} object at every position ({len(_uses)} positions, "
                  f"{len(_acts)} distinct module). The specification asks for one activation module per "
                  "position, each made by calling activation(): an activation with parameters of its own "
                  "(nn.PReLU, say) would otherwise share them across layers.")
    checks.expect(len(_acts) == len(_hidden),
                  f"{_desc} contains {len(_acts)} {_act.__name__} modules: there should be one after "
                  "every Linear except the last (the output is raw scores), each made by calling "
                  "activation(), so that the activation the caller chose is the one used.")
    with checks.seeded(1):
        _x = torch.randn(11, _in, device=checks.DEVICE)
    _count = len(list(_model.parameters()))
    _y = _model(_x)
    _y2 = _model(_x)
    checks.expect(len(list(_model.parameters())) == _count and torch.equal(_y, _y2),
                  f"Calling {_desc} twice on the same input gave different results. Create every layer "
                  "once, in __init__: a layer made inside forward is new (and random) on every call, "
                  "and no optimiser ever sees it.")
    _h = _x
    for _i, _lin in enumerate(_linears):
        _h = nn.functional.linear(_h, _lin.weight, _lin.bias)
        if _i < len(_linears) - 1:
            _h = _act()(_h)
    checks.expect_close(_y, _h, f"{_desc}(x)", rtol=1e-5, atol=1e-6,
                        why="forward should apply the Linear layers in order, with the activation after "
                            "every one except the last.")
    _fired = []
    _handles = [m.register_forward_hook(lambda mod, inp, out, _k=_k: _fired.append(_k))
                for _k, m in enumerate(_linears)]
    try:
        _model(_x)
    finally:
        for _handle in _handles:
            _handle.remove()
    checks.expect(sorted(_fired) == list(range(len(_linears))),
                  f"Forward hooks attached to the Linear layers of {_desc} did not fire when the model "
                  "was called. Hooks run inside __call__: call each layer as layer(h), never "
                  "layer.forward(h), or its hooks (and everything else __call__ does) are skipped.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-buffers"
# ## 3 · State that is not learned: buffers
#
# Some tensors belong to a model without being trained. Batch normalisation keeps running
# averages of the means and variances it has seen; a model that standardises its inputs keeps
# the statistics of its training set; an attention layer may keep a fixed mask. Such a tensor
# must be
# - **saved** with the model, or a reloaded model behaves differently;
# - **moved** with the model by `.to(device)`, or `forward` mixes devices;
# - **left out** of `parameters()`, so the optimiser does not change it by gradient descent: it
#   is computed, not learned.
#
# A parameter passes the first two tests and fails the third. A plain tensor attribute fails
# the first two, and it fails them quietly: you find out when a reloaded model gives different
# answers, or on the first run on a GPU. The right tool is a **buffer**:
# `self.register_buffer("running_mean", torch.zeros(n))` registers the tensor, after which
# `self.running_mean` reads it, `named_buffers()` lists it, `state_dict()` saves it and `.to()`
# moves it, while `parameters()` leaves it out. (`persistent=False` keeps a buffer out of the
# `state_dict`, for things that are cheap to rebuild.) Assigning a new tensor to a registered
# buffer's name (`self.running_mean = new`) keeps it registered.
#
# Updating a buffer inside `forward` needs care twice:
# - **Only while training.** `model.train()` and `model.eval()` set the flag `self.training` on
#   every submodule. Statistics are gathered in training mode; in evaluation mode the module
#   uses what it gathered and changes nothing.
# - **Outside autograd.** If the input requires grad, an update such as
#   `self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(0)` is recorded in the graph,
#   and each batch's update is chained onto the previous one's: the buffer becomes the tip of
#   a graph that grows with every batch and holds on to all of them. Do the update inside
#   `with torch.no_grad():`. The output, on the other hand, must stay connected to `x`, so
#   that gradients can flow through the layer.
#
# ### Exercise 3 · A module with running statistics
#
# Write `RunningStandardize(num_features, momentum=0.1, eps=1e-5)`, a layer that standardises
# each feature. It is the core of `nn.BatchNorm1d` without its learnable scale and shift, and
# the hidden tests compare it with `nn.BatchNorm1d(num_features, affine=False,
# momentum=momentum, eps=eps)`.
# - Buffers: `running_mean` (zeros) and `running_var` (ones), both float32 of shape
#   `(num_features,)`, and `num_batches_tracked`, a 0-d int64 tensor that starts at 0. No
#   parameters.
# - `forward(x)`, for `x` of shape `(batch, num_features)`:
#   - in training mode: with the batch mean `mean = x.mean(0)` and the biased batch variance
#     `var = x.var(0, unbiased=False)`, return `(x - mean) / sqrt(var + eps)`. Update the
#     buffers: `running_mean ← (1 - momentum) · running_mean + momentum · mean`,
#     `running_var ← (1 - momentum) · running_var + momentum · x.var(0)` (here the **unbiased**
#     variance, as BatchNorm does), and add 1 to `num_batches_tracked`.
#   - in evaluation mode: return `(x - running_mean) / sqrt(running_var + eps)` and change
#     nothing.
#
# <details><summary>Hint 1</summary>
#
# `self.register_buffer(name, tensor)` in `__init__`, once per buffer. `torch.zeros((),
# dtype=torch.long)` is a 0-d int64 zero. Store `momentum` and `eps` as plain attributes: they
# are settings, not tensors.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Branch on `self.training`. In-place updates under `torch.no_grad()` keep the same buffer
# tensors: `self.running_mean.mul_(1 - m).add_(m * mean)`. Reassigning the buffer's name works
# too.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Only the buffer updates go under `no_grad`. The normalised output is computed from `mean` and
# `var` outside it, so it stays connected to `x`.
# </details>

# %% role="answer" grade_id="running-standardize"
class RunningStandardize(nn.Module):
    """Standardise each feature; keep running averages of the batch statistics in buffers."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        ### BEGIN SOLUTION
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps)
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * x.var(0))
            self.num_batches_tracked += 1
        return (x - mean) / torch.sqrt(var + self.eps)
        ### END SOLUTION


# %% role="test" grade_id="test-running-sanity" points=1
_rs = checks.make_module(RunningStandardize, 3)
checks.expect_equal(sorted(name for name, _ in _rs.named_buffers()),
                    ["num_batches_tracked", "running_mean", "running_var"],
                    "The list of buffer names of RunningStandardize(3)",
                    why="Register each with self.register_buffer(name, tensor) in __init__: a plain "
                        "tensor attribute is not a buffer.")
checks.expect(len(list(_rs.parameters())) == 0,
              "RunningStandardize(3) has parameters. Running statistics are computed, not learned: "
              "keep them in buffers, not in nn.Parameter.")
_y = _rs(torch.randn(8, 3))
checks.expect_tensor(_y, "RunningStandardize(3)(x) for x of shape (8, 3)", shape=(8, 3), dtype=torch.float32,
                     why="Standardising each feature keeps the input's shape and dtype.")
print("buffers after one batch:", {name: b.tolist() for name, b in _rs.named_buffers()})

# %% role="test" grade_id="test-running-state" points=3
# Hidden tests: the buffers are saved, moved with .to(), never trained, never part of a graph, and counted.
### BEGIN HIDDEN TESTS
_names = ["num_batches_tracked", "running_mean", "running_var"]
_m = checks.make_module(RunningStandardize, 4)
_keys = sorted(_m.state_dict())
_missing = [k for k in _names if k not in _keys]
_hidden_buffers = [k for k in _missing if k in dict(_m.named_buffers())]
checks.expect(not _hidden_buffers,
              f"RunningStandardize's state_dict() lacks {', '.join(_hidden_buffers)}, though they are buffers: "
              "persistent=False keeps a buffer out of the state_dict, which is only for things that are cheap "
              "to rebuild. Running statistics are learned from the data and must be saved with the model: "
              "register them with the default persistent=True.")
checks.expect(not _missing,
              f"RunningStandardize's state_dict() lacks {', '.join(_missing)}, so a saved and reloaded model "
              "would lose them. A plain tensor attribute is invisible to state_dict(); register each with "
              "self.register_buffer.")
checks.expect(_keys == _names,
              f"RunningStandardize's state_dict() has the keys {_keys}: it should hold exactly the three "
              "buffers of the specification.")
_params = [name for name, _ in _m.named_parameters()]
checks.expect(not _params,
              f"RunningStandardize registers parameters ({', '.join(_params)}). Running statistics are "
              "computed, not learned: an optimiser given model.parameters() would change them by "
              "gradient descent. Use register_buffer, not nn.Parameter.")
checks.expect_tensor(_m.running_mean, "The buffer running_mean", shape=(4,), dtype=torch.float32,
                     why="It holds one float32 average per feature: torch.zeros(num_features).")
checks.expect_tensor(_m.running_var, "The buffer running_var", shape=(4,), dtype=torch.float32,
                     why="It holds one float32 variance per feature: torch.ones(num_features).")
checks.expect_tensor(_m.num_batches_tracked, "The buffer num_batches_tracked", shape=(), dtype=torch.int64,
                     why="It counts batches, so it is a 0-d integer tensor: torch.zeros((), dtype=torch.long).")
checks.expect(bool((_m.running_mean == 0).all()) and bool((_m.running_var == 1).all())
              and int(_m.num_batches_tracked) == 0,
              "A new RunningStandardize should start with running_mean at 0, running_var at 1 and "
              "num_batches_tracked at 0.")
# .to() moves registered buffers; the meta device shows where everything went
_meta = checks.make_module(RunningStandardize, 4).to("meta")
_left = [name for name in ("running_mean", "running_var", "num_batches_tracked")
         if getattr(_meta, name).device.type != "meta"]
checks.expect(not _left,
              f"After model.to('meta'), {', '.join(_left)} stayed on {getattr(_meta, _left[0]).device if _left else ''}. "
              ".to() moves only registered parameters and buffers; a plain tensor attribute stays "
              "behind and forward would mix devices. Register it with self.register_buffer.")
_meta.train()
_out, _touched = checks.devices_touched(_meta, torch.zeros(8, 4, device="meta"))
checks.expect(_touched <= {"meta"},
              "RunningStandardize's forward created tensors on the CPU for a model and input on another "
              "device. Compute with the buffers and the input, which are already where the model lives.")
# no graph through the buffers, but the output stays connected to x
with checks.seeded(0):
    _m = checks.make_module(RunningStandardize, 4).to(checks.DEVICE)
    _x = (torch.randn(16, 4, device=checks.DEVICE) * 2 + 1).requires_grad_(True)
_m.train()
_y = _m(_x)
_graphed = [name for name, b in _m.named_buffers() if b.requires_grad or b.grad_fn is not None]
checks.expect(not _graphed,
              f"After a training step on an input that requires grad, these buffers are part of the autograd "
              f"graph: {', '.join(_graphed)}. Update running statistics inside torch.no_grad(): otherwise every batch's "
              "graph is chained onto the previous one.")
checks.expect_tensor(_y, "RunningStandardize(4)(x)", shape=(16, 4), requires_grad=True,
                     why="Only the buffer updates belong under torch.no_grad(). The output must stay "
                         "connected to x (through the batch mean and variance), or no gradient can flow "
                         "back through this layer.")
_y.sum().backward()
checks.expect(_x.grad is not None,
              "No gradient reached x through RunningStandardize's output. In training mode the output is "
              "computed from x and its batch statistics outside torch.no_grad(), so that autograd records it.")
checks.expect_equal(int(_m.num_batches_tracked), 1, "The counter num_batches_tracked after one training batch",
                    why="Add 1 to num_batches_tracked on every forward pass in training mode.")
_m.eval()
_m(_x.detach())
checks.expect_equal(int(_m.num_batches_tracked), 1, "The counter num_batches_tracked after a training batch and an evaluation batch",
                    why="In evaluation mode the module uses the statistics it gathered and changes nothing, "
                        "the counter included.")
checks.expect(_m.num_batches_tracked.dtype == torch.int64,
              "num_batches_tracked is no longer an int64 tensor after a training step. Add 1 in place "
              "(+= 1) to keep its dtype.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-running-parity" points=3
# Hidden tests: training and evaluation steps against nn.BatchNorm1d(affine=False), outputs and buffers.
### BEGIN HIDDEN TESTS
for _momentum, _eps in [(0.1, 1e-5), (0.3, 1e-2)]:
    with checks.seeded(1):
        _m = checks.make_module(RunningStandardize, 5, momentum=_momentum, eps=_eps).to(checks.DEVICE)
        _ref = nn.BatchNorm1d(5, affine=False, momentum=_momentum, eps=_eps).to(checks.DEVICE)
        _batches = [torch.randn(12, 5, device=checks.DEVICE) * 3 + 2 for _ in range(4)]
    _steps = [("training", _batches[0]), ("training", _batches[1]), ("evaluation", _batches[2]),
              ("training", _batches[3]), ("evaluation", _batches[0])]
    for _i, (_mode, _x) in enumerate(_steps, start=1):
        _m.train(_mode == "training")
        _ref.train(_mode == "training")
        _before = checks.module_state(_m)
        _x0 = _x.clone()
        _y = _m(_x)
        _where = f"(momentum={_momentum}, eps={_eps}, step {_i}, {_mode} mode)"
        checks.expect(torch.equal(_x, _x0),
                      f"RunningStandardize's forward changed its input in place {_where} (x -= mean, say): the "
                      "caller's batch is altered. Compute the standardised output as a new tensor.")
        _want = _ref(_x)
        if _mode == "training":
            checks.expect_close(_y, _want, f"The output {_where}", rtol=1e-4, atol=1e-4,
                                why="In training mode, standardise with the statistics of this batch: its "
                                    "mean and its biased variance (unbiased=False), with eps added inside "
                                    "the square root.")
        else:
            _changed = [c.split(": ", 1)[-1] for c in checks.changed_state(_before, checks.module_state(_m))]
            checks.expect(not _changed,
                          f"A forward pass in evaluation mode changed {', '.join(_changed)}. Evaluation must "
                          "not change the running statistics: update them only when self.training is True.")
            checks.expect_close(_y, _want, f"The output {_where}", rtol=1e-4, atol=1e-4,
                                why="In evaluation mode, standardise with the running statistics, not with "
                                    "the batch's own: a model in evaluation must give each input the same "
                                    "answer whatever else is in the batch.")
        checks.expect_close(_m.running_mean, _ref.running_mean, f"The running_mean {_where}", rtol=1e-4, atol=1e-5,
                            why="running_mean ← (1 − momentum)·running_mean + momentum·(batch mean): "
                                "momentum weighs the new batch, not the old average.")
        checks.expect_close(_m.running_var, _ref.running_var, f"The running_var {_where}", rtol=1e-4, atol=1e-5,
                            why="running_var blends in the unbiased batch variance, x.var(0), with weight "
                                "momentum on the new value (the output uses the biased one).")
        checks.expect_equal(int(_m.num_batches_tracked), int(_ref.num_batches_tracked),
                            f"The counter num_batches_tracked {_where}",
                            why="It counts the training batches seen so far.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-devices"
# ## 4 · Where a model lives: `.to()`
#
# A model's parameters and buffers are tensors, each with a device and a dtype.
# `module.to(device)` walks the registries and moves every parameter and buffer of the module
# and of all its submodules. It works **in place** and returns the module itself, so
# `model.to(device)` and `model = model.to(device)` do the same thing.
#
# `tensor.to(device)` is different: a tensor is never moved in place. You get a new tensor on
# the other device (or the same tensor, if it is already there), and the original stays where
# it was. `x.to(device)` on a line of its own therefore does nothing useful: keep the result,
# `x = x.to(device)`.
#
# `.to(dtype)` (and `.double()`, `.half()`) converts the floating-point parameters and buffers
# only. An integer buffer, such as a counter, keeps its integer dtype: a count of batches makes
# no sense as a float.
#
# To see where things go without needing a GPU, this notebook uses the **meta** device. A meta
# tensor has a shape, a dtype and a device, but no data: nothing is allocated or computed. The
# tests use it too, to check that code puts things where it is told to.
#
# ### Exercise 4 · Predict, then verify
#
# Predict the state of things after this code runs:
#
# ```python
# class Shifter(nn.Module):
#     def __init__(self):
#         super().__init__()
#         self.lin = nn.Linear(3, 3)
#         self.register_buffer("mean", torch.zeros(3))
#         self.register_buffer("count", torch.zeros((), dtype=torch.long))
#         self.scale = torch.ones(3)
#
#     def forward(self, x):
#         return self.lin(x - self.mean) * self.scale
#
# model = Shifter()
# x = torch.zeros(2, 3)
# returned = model.to("meta")
# x.to("meta")
# model.to(torch.float64)
# ```
#
# In the answer cell, write device types as strings (`"cpu"` or `"meta"`) and dtypes as torch
# dtypes (such as `torch.float32`).
#
# <details><summary>Hint 1</summary>
#
# Which of `lin.weight`, `mean`, `count` and `scale` are in the module's registries? Only those
# are visited by `model.to(...)`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `x.to("meta")` returns something. Was it kept?
# </details>

# %% role="answer" grade_id="predict-to"
to_predictions = {
    "lin.weight device": None,  # "cpu" or "meta"
    "mean device": None,        # "cpu" or "meta"
    "scale device": None,       # "cpu" or "meta"
    "x device": None,           # "cpu" or "meta"
    "returned is model": None,  # True or False
    "lin.weight dtype": None,   # a torch dtype
    "count dtype": None,        # a torch dtype
}
### BEGIN SOLUTION
to_predictions = {
    "lin.weight device": "meta",
    "mean device": "meta",
    "scale device": "cpu",
    "x device": "cpu",
    "returned is model": True,
    "lin.weight dtype": torch.float64,
    "count dtype": torch.int64,
}
### END SOLUTION

# %% role="test" grade_id="test-predict-to" points=2
# Hidden tests run the code and compare.
checks.expect(isinstance(to_predictions, dict) and set(to_predictions) == {
    "lin.weight device", "mean device", "scale device", "x device", "returned is model",
    "lin.weight dtype", "count dtype"},
    "The answer cell should set to_predictions to a dict with exactly the seven keys of the template.")
checks.expect(all(type(to_predictions[k]) is str and to_predictions[k] in ("cpu", "meta")
                  for k in ("lin.weight device", "mean device", "scale device", "x device")),
              "Write each device prediction as the string \"cpu\" or \"meta\" (the device's type, not a "
              "torch.device).")
checks.expect(type(to_predictions["returned is model"]) is bool,
              "Your prediction for 'returned is model' should be True or False.")
checks.expect(all(type(to_predictions[k]) is torch.dtype for k in ("lin.weight dtype", "count dtype")),
              "Write each dtype prediction as a torch dtype, such as torch.float32 (not a string).")
### BEGIN HIDDEN TESTS
class _Shifter(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.scale = torch.ones(3)

    def forward(self, x):
        return self.lin(x - self.mean) * self.scale


_model = _Shifter()
_x = torch.zeros(2, 3)
_returned = _model.to("meta")
_x.to("meta")
_model.to(torch.float64)
_moved = ("module.to() moves every registered parameter and buffer of the module and its submodules, "
          "in place.")
checks.expect_equal(to_predictions["lin.weight device"], _model.lin.weight.device.type,
                    "Your prediction for the device of lin.weight", show=False, why=_moved)
checks.expect_equal(to_predictions["mean device"], _model.mean.device.type,
                    "Your prediction for the device of mean", show=False,
                    why=_moved + " A buffer is registered, just like a parameter.")
checks.expect_equal(to_predictions["scale device"], _model.scale.device.type,
                    "Your prediction for the device of scale", show=False,
                    why="A plain tensor attribute is not registered, so module.to() does not see it: it "
                        "stays behind, and forward would mix devices.")
checks.expect_equal(to_predictions["x device"], _x.device.type,
                    "Your prediction for the device of x", show=False,
                    why="tensor.to() never moves a tensor in place: it returns a new tensor, and the "
                        "original is unchanged unless you keep the result (x = x.to(device)).")
checks.expect_equal(to_predictions["returned is model"], _returned is _model,
                    "Your prediction for `returned is model`", show=False,
                    why="module.to() works in place and returns the module itself, which is why "
                        "model.to(device) and model = model.to(device) do the same thing.")
checks.expect_equal(to_predictions["lin.weight dtype"], _model.lin.weight.dtype,
                    "Your prediction for the dtype of lin.weight", show=False,
                    why="model.to(dtype) converts every floating-point parameter and buffer.")
checks.expect_equal(to_predictions["count dtype"], _model.count.dtype,
                    "Your prediction for the dtype of count", show=False,
                    why="model.to(dtype) converts floating-point tensors only: integer buffers keep "
                        "their integer dtype.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-broken"
# ## 5 · Repair a model that hides its parts
#
# Sections 1 to 4 come down to one question: does the module's record hold everything the model
# needs? `MultiHeadBroken` below is meant to be a shared trunk feeding one linear head per task
# (a digit classifier and an odd/even classifier on the same features, say), with its inputs
# centred by a stored mean that will be computed from the training set. Run its cell and read
# the error. That error is only the first of its problems: it keeps state out of the registries
# in every way you have met so far.
#
# ### Exercise 5 · Fix a broken snippet
#
# Write the repaired `MultiHead(in_features, hidden, tasks)`, where `tasks` maps task names to
# output sizes (for example `{"digit": 10, "parity": 2}`). Keep exactly this structure and
# these names, so that its `state_dict` matches a reference model key for key:
# - `center`: a buffer of zeros of shape `(in_features,)` (it will hold the training set's mean,
#   so it must be saved and moved with the model, but not trained);
# - `trunk`: an `nn.Sequential` of `Linear(in_features, hidden)`, `ReLU`, `Linear(hidden,
#   hidden)`, `ReLU` (the broken version builds that second `Linear` inside `forward`; it
#   belongs here);
# - `heads`: an `nn.ModuleDict` with one `Linear(hidden, size)` per task.
#
# `forward(x)` returns a dict that maps each task name to `heads[name](trunk(x - center))`.
#
# <details><summary>Hint 1</summary>
#
# Count the problems. In `__init__`: a missing call, and three values that are not registered
# (a tensor, a list, a dict). In `forward`: a layer that is born and thrown away on every call.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The layer built inside `forward` has visible symptoms once the rest is fixed: two calls on
# the same input give different outputs, and its weights are in no `parameters()` list.
# </details>
#
# <details><summary>Hint 3</summary>
#
# `nn.ModuleDict` is built from a dict of modules, just like the one the broken version makes;
# `nn.Sequential` takes its layers as separate arguments.
# </details>

# %% role="locked" grade_id="multihead-broken"
class MultiHeadBroken(nn.Module):
    """A shared trunk, then one linear head per task; inputs are centred first. (Broken.)"""

    def __init__(self, in_features, hidden, tasks):
        self.center = torch.zeros(in_features)  # will hold the training set's mean
        self.trunk = [nn.Linear(in_features, hidden), nn.ReLU()]
        self.heads = {name: nn.Linear(hidden, size) for name, size in tasks.items()}
        self.hidden = hidden

    def forward(self, x):
        h = x - self.center
        for layer in self.trunk:
            h = layer(h)
        h = torch.relu(nn.Linear(self.hidden, self.hidden)(h))
        return {name: head(h) for name, head in self.heads.items()}


_broken = MultiHeadBroken(6, 16, {"digit": 10, "parity": 2})
try:
    _broken(torch.randn(4, 6))
except AttributeError as err:
    print("MultiHeadBroken failed:", err)


# %% role="answer" grade_id="multihead"
class MultiHead(nn.Module):
    """A shared trunk, then one linear head per task; inputs are centred by the buffer center."""

    def __init__(self, in_features, hidden, tasks):
        ### BEGIN SOLUTION
        super().__init__()
        self.register_buffer("center", torch.zeros(in_features))
        self.trunk = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, size) for name, size in tasks.items()})
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        h = self.trunk(x - self.center)
        return {name: head(h) for name, head in self.heads.items()}
        ### END SOLUTION


# %% role="test" grade_id="test-multihead-sanity" points=1
_net = checks.make_module(MultiHead, 6, 16, {"digit": 10, "parity": 2})
_out = _net(torch.randn(4, 6))
checks.expect(type(_out) is dict and sorted(_out) == ["digit", "parity"],
              "MultiHead's forward should return a dict with one entry per task name.")
checks.expect_tensor(_out["digit"], "the 'digit' output for a batch of 4", shape=(4, 10))
checks.expect_tensor(_out["parity"], "the 'parity' output for a batch of 4", shape=(4, 2))
print("state_dict keys:", list(_net.state_dict()))


# %% role="test" grade_id="test-multihead" points=4
# Hidden tests: state_dict keys against a reference, buffer vs parameter, a state_dict round trip, .to('meta').
### BEGIN HIDDEN TESTS
class _RefMultiHead(nn.Module):
    def __init__(self, in_features, hidden, tasks):
        super().__init__()
        self.register_buffer("center", torch.zeros(in_features))
        self.trunk = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, size) for name, size in tasks.items()})

    def forward(self, x):
        h = self.trunk(x - self.center)
        return {name: head(h) for name, head in self.heads.items()}


_tasks = {"digit": 10, "parity": 2, "big": 1}
with checks.seeded(0):
    _net = checks.make_module(MultiHead, 5, 12, _tasks)
    _ref = _RefMultiHead(5, 12, _tasks)
    _ref.center.normal_()
_keys, _want = set(_net.state_dict()), set(_ref.state_dict())
_missing = _want - _keys
checks.expect("center" not in _missing or "center" not in dict(_net.named_buffers()),
              "The tensor center is a buffer, but not in MultiHead's state_dict, so the stored mean would be lost on "
              "saving: persistent=False keeps a buffer out of the state_dict, which is only for things "
              "that are cheap to rebuild. The training set's mean must be saved with the model.")
checks.expect("center" not in _missing,
              "'center' is not in MultiHead's state_dict, so the stored mean would be lost on saving. A "
              "plain tensor attribute is not part of the module's state: use self.register_buffer.")
checks.expect(not any(k.startswith("trunk.0.") for k in _missing),
              "The trunk's layers are not in MultiHead's state_dict. Layers kept in a plain Python list "
              "are not registered: keep them in an nn.Sequential.")
_extra = sorted(_keys - _want)
checks.expect(not (_extra and any(k.startswith("trunk.") for k in _missing)),
              f"MultiHead's state_dict lacks {sorted(k for k in _missing if k.startswith('trunk.'))} and has keys "
              f"the reference does not have ({_extra}). Keep exactly the structure of the specification: the "
              "second Linear and its ReLU belong inside trunk, an nn.Sequential of Linear, ReLU, Linear, ReLU.")
checks.expect(not any(k.startswith("trunk.") for k in _missing),
              "The trunk's second Linear is not in MultiHead's state_dict. A layer created inside forward "
              "is brand new (and random) on every call, is never trained and never saved: create it "
              "once, in __init__, as part of the trunk.")
checks.expect(not any(k.startswith("heads.") for k in _missing),
              "The heads are not in MultiHead's state_dict. Layers kept in a plain Python dict are not "
              "registered: keep them in an nn.ModuleDict.")
checks.expect(not _keys - _want,
              f"MultiHead's state_dict has unexpected keys {sorted(_keys - _want)}: keep exactly the "
              "structure and names of the specification.")
_buffers = dict(_net.named_buffers())
checks.expect("center" in _buffers,
              "The tensor center is registered, but not as a buffer. It is computed from the data, not learned: an "
              "optimiser given model.parameters() would change it. Use self.register_buffer.")
try:
    _net.load_state_dict(_ref.state_dict())
except RuntimeError as _err:
    checks.expect(False, "The reference state_dict does not fit MultiHead: some tensor has another shape "
                         f"({str(_err).splitlines()[-1].strip()}). Check each layer's sizes.")
_net.to(checks.DEVICE)
_ref.to(checks.DEVICE)
with checks.seeded(1):
    _x = torch.randn(7, 5, device=checks.DEVICE)
_x0 = _x.clone()
_out = _net(_x)
checks.expect(torch.equal(_x, _x0),
              "MultiHead's forward changed its input in place (x -= center, say): the caller's batch is "
              "altered, and a second call on it gives another answer. Compute x - center as a new tensor.")
_out2, _want_out = _net(_x), _ref(_x)
checks.expect(type(_out) is dict and sorted(_out) == sorted(_tasks),
              "MultiHead's forward should return a dict with one entry per task name.")
checks.expect(all(torch.equal(_out[k], _out2[k]) for k in _tasks),
              "Two calls of MultiHead on the same input gave different outputs. A layer created inside "
              "forward is new and random on every call: build every layer once, in __init__.")
for _k in _tasks:
    checks.expect_close(_out[_k], _want_out[_k], f"MultiHead's '{_k}' output (with the reference's weights loaded)",
                        rtol=1e-5, atol=1e-5,
                        why="Each head's output should be heads[name](trunk(x - center)): centre the input "
                            "with the buffer, then run the trunk, then the head.")
sum(o.sum() for o in _out.values()).backward()
_no_grad = [n for n, p in _net.named_parameters() if p.grad is None]
checks.expect(not _no_grad,
              f"No gradient reached {', '.join(_no_grad)}: every layer should take part in the forward pass.")
_net.to("meta")
_left = [n for n, t in [*_net.named_parameters(), *_net.named_buffers()] if t.device.type != "meta"]
checks.expect(not _left and _net.center.device.type == "meta",
              "After model.to('meta'), some tensors of MultiHead stayed behind: .to() moves only registered "
              "parameters and buffers.")
_meta_out, _touched = checks.devices_touched(_net, torch.zeros(3, 5, device="meta"))
checks.expect(_touched <= {"meta"},
              "MultiHead's forward created tensors on the CPU while the model lived on another device. A "
              "layer created inside forward is made on the CPU whatever the model's device: create it in "
              "__init__.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-counting"
# ## 6 · Looking inside: `named_parameters` and counting
#
# The registries form a tree: the model, its children, their children. So every parameter has a
# path, and `named_parameters()` yields `(name, tensor)` pairs with dotted names such as
# `trunk.0.weight`, the same names the `state_dict` uses. `named_buffers()`, `named_children()`
# and `named_modules()` do the same for the rest of the tree, and `model.get_submodule("trunk.0")`
# follows a path back to a module.
#
# Counting parameters is the first thing to check about a new model: it is the model's size,
# and the quickest test that nothing was left unregistered. Three details matter:
# - count **numbers**, not tensors: `p.numel()` is the number of values in a tensor;
# - count **parameters**, not the `state_dict`: the state also holds buffers (a batch-norm
#   layer's running statistics are not parameters);
# - count each tensor **once**. Layers can share a weight (language models often use one matrix
#   for the input embedding and the output layer), and one tensor then sits under two names.
#   `parameters()` yields each tensor once. Walking `modules()` yourself and asking each module
#   for its `parameters()` counts nested layers several times, since a module's parameters
#   include its children's.
#
# *Trainable* parameters are those with `requires_grad=True`: the ones training can change
# (section 7).
#
# ### Exercise 6 · `count_parameters`
#
# Write `count_parameters(model, trainable_only=False)`, which returns an `int`: the number of
# values in the model's parameters, each shared tensor counted once. With `trainable_only=True`,
# count only the parameters that require grad. For `nn.Linear(3, 2)` the answer is 8.
#
# <details><summary>Hint 1</summary>
#
# Each tensor knows how many values it holds: `p.numel()`. Which method hands you every
# parameter tensor exactly once?
# </details>
#
# <details><summary>Hint 2</summary>
#
# A generator expression can carry a condition: `sum(... for p in ... if ...)`. The sum of
# `numel()` values is already a Python `int`.
# </details>

# %% role="answer" grade_id="count-parameters"
def count_parameters(model, trainable_only=False):
    """The number of parameter values in model (shared tensors once); only trainable ones if asked."""
    ### BEGIN SOLUTION
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
    ### END SOLUTION


# %% role="test" grade_id="test-count-sanity" points=1
_n = count_parameters(nn.Linear(3, 2))
checks.expect(type(_n) is int, f"The result of count_parameters should be a Python int, not {checks.describe(_n)}.")
checks.expect(_n == 8,
              f"For nn.Linear(3, 2), count_parameters gives {_n}, but a Linear(3, 2) holds a 2×3 weight and 2 biases: "
              "8 values. Count numbers (p.numel()), not tensors.")
print("nn.Linear(3, 2) has", _n, "parameters")


# %% role="test" grade_id="test-count" points=2
# Hidden tests: buffers, tied weights, nested modules, frozen parameters, and a model with no parameters.
### BEGIN HIDDEN TESTS
class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10)
        self.out.weight = self.embed.weight  # one tensor, two names


_cases = [
    ("a nested model", nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), nn.Linear(3, 1)), False,
     "Count each parameter once: a module's parameters() already include its children's, so walking "
     "modules() and adding up each one's parameters() counts nested layers again."),
    ("a model with batch norm", nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)), False,
     "A batch-norm layer's running statistics are buffers, not parameters: count from parameters(), "
     "not from the state_dict."),
    ("a model with tied weights", _Tied(), False,
     "A weight shared by two layers is one tensor and counts once: parameters() yields it once."),
    ("a model with no parameters", nn.Sequential(nn.ReLU(), nn.Flatten()), False,
     "A model without parameters has 0 of them."),
]
_frozen = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
_frozen[0].requires_grad_(False)
_cases += [
    ("a partly frozen model, trainable_only=True", _frozen, True,
     "With trainable_only=True, count only the parameters with requires_grad=True."),
    ("a partly frozen model, trainable_only=False", _frozen, False,
     "With trainable_only=False (the default), count every parameter, frozen or not."),
]
for _name, _model, _trainable, _why in _cases:
    _got = count_parameters(_model, trainable_only=_trainable)
    checks.expect(type(_got) is int,
                  f"The result of count_parameters should be a Python int, but for {_name} it is {checks.describe(_got)}.")
    _want = sum(p.numel() for p in _model.parameters() if p.requires_grad or not _trainable)
    _tensors = sum(1 for p in _model.parameters() if p.requires_grad or not _trainable)
    checks.expect(_got == _want or _got != _tensors,
                  f"For {_name}, count_parameters gives {_got}, the number of parameter tensors. Count the "
                  "values they hold (p.numel() for each), not the tensors.")
    checks.expect(_got == _want, f"For {_name}, count_parameters gives {_got}, which is not right. {_why}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-freezing"
# ## 7 · What learns: `requires_grad` and freezing
#
# A parameter changes during training only when two things happen: `backward()` computes a
# gradient for it, and the optimiser applies that gradient. `requires_grad` controls the first.
# A parameter with `requires_grad=False` is a constant to autograd: `backward()` leaves its
# `.grad` as `None`, and optimisers skip parameters whose `.grad` is `None`. That is
# **freezing**. Its everyday use: reuse a network that was already trained (the *body*) and train
# only a new last layer (the *head*) for your task, which is faster and needs less data than
# training everything.
#
# Freeze with the methods that set the flag on the tensors themselves: `p.requires_grad_(False)`
# on one parameter, or `module.requires_grad_(False)` on every parameter of a module. Three
# look-alikes do nothing of the sort:
# - `module.requires_grad = False` (no underscore, no call) only adds a Python attribute to the
#   module object; no parameter changes;
# - `model.eval()` changes how layers such as dropout and batch norm behave; every parameter
#   still gets its gradient;
# - choosing parameters by a string prefix (`name.startswith("head")`) also catches
#   `head_old.weight` or `header.bias`; follow the module tree instead
#   (`model.get_submodule("head")`).
#
# "All but the head frozen" describes the whole model: the head is trainable afterwards even if
# an earlier step froze it. When you build the optimiser, you can give it only what is
# trainable: `[p for p in model.parameters() if p.requires_grad]`.
#
# ### Exercise 7 · `freeze_all_but_head`
#
# Write `freeze_all_but_head(model, head)`, where `head` is the name of a submodule of `model`,
# possibly a dotted path such as `"heads.digit"`:
# - afterwards, exactly the parameters inside that submodule require grad, and no other
#   parameter does, whatever the flags were before;
# - it returns a list of the names of the trainable parameters, spelled as `model.named_parameters()`
#   spells them and in that order;
# - if the model has no submodule of that name, it raises an error (the `AttributeError` that
#   `get_submodule` raises is fine) instead of quietly freezing everything.
#
# <details><summary>Hint 1</summary>
#
# `model.get_submodule(head)` finds the head by following its path, and raises when there is
# no such submodule.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Two calls of `requires_grad_` do the flags: one for the whole model, one for the head. Then
# read the names off `model.named_parameters()`.
# </details>

# %% role="answer" grade_id="freeze"
def freeze_all_but_head(model, head):
    """Make only the parameters of the submodule `head` trainable; return their names."""
    ### BEGIN SOLUTION
    head_module = model.get_submodule(head)
    model.requires_grad_(False)
    head_module.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]
    ### END SOLUTION


# %% role="test" grade_id="test-freeze-sanity" points=1
_net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
_names = freeze_all_but_head(_net, "2")
checks.expect(not _net[0].weight.requires_grad and not _net[0].bias.requires_grad,
              "After freeze_all_but_head(net, '2'), the first layer's parameters still require grad. Freezing "
              "sets the flag on the tensors themselves: requires_grad_(False), on a parameter or a module.")
checks.expect(_net[2].weight.requires_grad and _net[2].bias.requires_grad,
              "After freeze_all_but_head(net, '2'), the head's parameters should require grad.")
checks.expect_equal(_names, ["2.weight", "2.bias"], "The list returned by freeze_all_but_head(net, '2')")
print("trainable:", _names)


# %% role="test" grade_id="test-freeze" points=3
# Hidden tests: a previously frozen head, look-alike names, dotted paths, a training step, and a missing head.
### BEGIN HIDDEN TESTS
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
        self.head = nn.Linear(6, 3)
        self.head_old = nn.Linear(6, 3)
        self.heads = nn.ModuleDict({"digit": nn.Linear(6, 10), "parity": nn.Linear(6, 2)})

    def forward(self, x):
        h = self.body(x)
        return self.head(h).sum() + self.head_old(h).sum() + sum(m(h).sum() for m in self.heads.values())


def _check_flags(model, head, names):
    _inside = {f"{head}.{n}" for n, _ in model.get_submodule(head).named_parameters()}
    for _n, _p in model.named_parameters():
        if _n in _inside:
            checks.expect(_p.requires_grad,
                          f"After freeze_all_but_head(model, '{head}'), {_n} does not require grad. All but the "
                          "head frozen means the head is trainable, even if an earlier step froze it.")
        else:
            _lookalike = _n.startswith(head) and not _n.startswith(head + ".")
            checks.expect(not _p.requires_grad,
                          f"After freeze_all_but_head(model, '{head}'), {_n} still requires grad, so backward "
                          "would compute its gradient and the optimiser would update it. "
                          + ("Its name merely starts with the same letters as the head's: choosing "
                             "parameters by a string prefix catches look-alikes; follow the module tree "
                             "(model.get_submodule) instead." if _lookalike else
                             "Set the flag on the tensors: p.requires_grad_(False), or "
                             "module.requires_grad_(False) for all of a module's parameters. "
                             "(module.requires_grad = False only adds a plain attribute to the module, and "
                             "model.eval() changes how layers behave, not what learns.)"))
    _want = [n for n, p in model.named_parameters() if n in _inside]
    checks.expect(type(names) is list and all(type(n) is str for n in names),
                  "The result of freeze_all_but_head should be a list of strings.")
    checks.expect(names == _want,
                  f"The names freeze_all_but_head(model, '{head}') returned are {names}. Return the trainable parameters' "
                  "full dotted names, as model.named_parameters() spells them (a path from the model, such "
                  "as 'heads.digit.weight'), in that order.")


with checks.seeded(0):
    _net = _Net().to(checks.DEVICE)
_net.head.requires_grad_(False)  # frozen by an earlier step
_check_flags(_net, "head", freeze_all_but_head(_net, "head"))
# one training step: only the head may change
_opt = torch.optim.SGD(_net.parameters(), lr=0.1)
_before = checks.module_state(_net)
with checks.seeded(1):
    _x = torch.randn(8, 4, device=checks.DEVICE)
_net.train()
_net(_x).backward()
_with_grad = sorted(n for n, p in _net.named_parameters() if p.grad is not None)
checks.expect(_with_grad == ["head.bias", "head.weight"],
              f"After freezing all but the head, backward() computed gradients for {_with_grad}: frozen "
              "parameters (requires_grad=False) get none.")
_opt.step()
_changed = sorted(c.split(": ")[1] for c in checks.changed_state(_before, checks.module_state(_net))
                  if c.startswith("parameters: "))
checks.expect(_changed == ["head.bias", "head.weight"],
              f"An optimiser step after freezing changed {_changed}: only the head should learn.")
# a dotted path into a ModuleDict
with checks.seeded(2):
    _net = _Net().to(checks.DEVICE)
try:
    _names = freeze_all_but_head(_net, "heads.digit")
except (AttributeError, KeyError) as _err:
    checks.expect("heads.digit" not in str(_err),
                  f"freeze_all_but_head(model, 'heads.digit') raised {type(_err).__name__}, though the model has "
                  "that submodule: a dotted path names a submodule of a submodule, and getattr follows one level "
                  "only (so does a lookup in model._modules). Follow the whole path through the module tree "
                  "(see Hint 1).")
    raise
_check_flags(_net, "heads.digit", _names)
# a name that is not there
with checks.seeded(3):
    _net = _Net().to(checks.DEVICE)
checks.expect_raises((AttributeError, KeyError, ValueError, LookupError), freeze_all_but_head, _net, "tail",
                     message="Calling freeze_all_but_head(model, 'tail') did not raise, though the model has no "
                             "submodule 'tail'. A typo in the head's name would then freeze the whole model "
                             "and training would silently do nothing: look the head up with "
                             "model.get_submodule(head), which raises.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-init"
# ## 8 · Initialisation: where the weights start
#
# A freshly built layer already holds random weights, and their scale matters more than it
# seems. Each output of a `Linear` layer is a sum of `fan_in` products of a weight and an input.
# If the weights have variance `v`, an output's variance is roughly `fan_in · v` times the
# inputs'. Stack a few layers with `fan_in · v` a little above 1 and the activations blow up; a
# little below and they fade towards zero, and so do the gradients. A good initialisation picks
# `v` so that the signal keeps its scale from layer to layer:
# - **Xavier (Glorot)**, for activations that are close to linear around zero (tanh, sigmoid,
#   or none): it balances the forward and the backward pass with `Var(w) = 2 / (fan_in +
#   fan_out)`. Its uniform version draws from `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`.
# - **Kaiming (He)**, for ReLU: a ReLU zeroes about half of its inputs, which halves the
#   variance, so the weights make up for it with `Var(w) = 2 / fan_in`. Its normal version draws
#   from `N(0, 2 / fan_in)`.
#
# For `nn.Linear(fan_in, fan_out)`, `weight` has shape `(fan_out, fan_in)`. Schemes like these
# usually start the biases at zero (`nn.Linear`'s own default draws them from a small uniform
# range instead).
#
# `torch.nn.init` has both (`xavier_uniform_`, `kaiming_normal_`, and `zeros_`; the trailing
# underscore means "in place"). *How* you change the weights matters as much as what you put
# in them:
# - **In place, with autograd off.** A parameter is a leaf that requires grad, and autograd
#   refuses to let such a leaf be changed in place while it records. The `nn.init` functions
#   switch recording off themselves; your own `w.normal_(...)` or `w.copy_(...)` must run
#   inside `with torch.no_grad():`.
# - **Keep the same `Parameter` objects.** `layer.weight = nn.Parameter(new)` puts a new tensor
#   in the model: an optimiser built earlier still holds the old one and keeps updating a tensor
#   the model no longer uses.
# - **Where the weight already lives.** Filling a tensor in place creates nothing anywhere else;
#   making a new tensor with `torch.randn(...)` and copying it in takes a detour through the
#   CPU: for a model on a GPU, every layer costs an extra allocation and a copy from host to
#   device.
#
# To reach every layer, however deeply nested, loop over `model.modules()` (every module of the
# tree, the model included) or call `model.apply(fn)`, which calls `fn` on each of them.
# `model.children()` stops at the first level.
#
# ### Exercise 8 · `init_weights`
#
# Write `init_weights(model, scheme="kaiming")`, which re-initialises every `nn.Linear` of the
# model, at any depth, in place:
# - `scheme="kaiming"`: weights drawn from `N(0, 2 / fan_in)` (Kaiming normal, for ReLU);
# - `scheme="xavier"`: weights drawn from `U(-a, a)` with `a = sqrt(6 / (fan_in + fan_out))`
#   (Xavier uniform);
# - biases (when the layer has one) set to zero;
# - every other module and parameter (embeddings, normalisation layers, ...) left exactly as it
#   was, and every parameter still the same object, on the same device.
#
# It returns nothing.
#
# <details><summary>Hint 1</summary>
#
# Loop over `model.modules()` and pick the layers with `isinstance(module, nn.Linear)`, not by
# the shape of their tensors (an embedding's weight is 2-D too).
# </details>
#
# <details><summary>Hint 2</summary>
#
# `nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")` and
# `nn.init.xavier_uniform_(w)` do the drawing in place. If you write the formulas yourself,
# remember that `normal_` takes a standard deviation, the square root of the variance, and
# work under `torch.no_grad()`.
# </details>

# %% role="answer" grade_id="init-weights"
def init_weights(model, scheme="kaiming"):
    """Re-initialise every nn.Linear of model in place: Kaiming normal or Xavier uniform, zero bias."""
    ### BEGIN SOLUTION
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                raise ValueError(f"unknown scheme {scheme!r}")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    ### END SOLUTION


# %% role="test" grade_id="test-init-sanity" points=1
with checks.seeded(0):
    _lin = nn.Linear(400, 300)
    try:
        init_weights(_lin)
    except RuntimeError as _err:
        if "leaf Variable that requires grad" in str(_err):
            checks.expect(False, "A parameter was changed in place by init_weights while autograd was recording, and "
                                 "PyTorch refused: a leaf that requires grad cannot be modified in place. Fill "
                                 "the weights inside torch.no_grad() (the nn.init functions do it for you).")
        raise
_std = _lin.weight.std().item()
checks.expect(abs(_std / math.sqrt(2 / 400) - 1) < 0.1,
              f"After init_weights(nn.Linear(400, 300)), the weights' standard deviation is {_std:.4f}; Kaiming "
              "normal has variance 2 / fan_in, where fan_in = 400 is the number of inputs.")
checks.expect(bool((_lin.bias == 0).all()), "After init_weights, the bias should be all zeros.")
print(f"weight std after init_weights: {_std:.4f}")


# %% role="test" grade_id="test-init" points=3
# Hidden tests: nested layers, other modules untouched, same Parameter objects, both schemes, and the meta device.
### BEGIN HIDDEN TESTS
class _Tree(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 64)
        self.body = nn.Sequential(nn.Linear(64, 500), nn.ReLU(), nn.Sequential(nn.Linear(500, 300)))
        self.norm = nn.LayerNorm(300)
        self.head = nn.ModuleDict({"out": nn.Linear(300, 40, bias=False)})


def _init(model, scheme):
    try:
        return init_weights(model) if scheme == "kaiming" else init_weights(model, scheme)
    except RuntimeError as err:
        if "leaf Variable that requires grad" in str(err):
            checks.expect(False, "A parameter was changed in place by init_weights while autograd was recording, and "
                                 "PyTorch refused: a leaf that requires grad cannot be modified in place. Fill "
                                 "the weights inside torch.no_grad() (the nn.init functions do it for you).")
        raise
    except (AttributeError, ValueError) as err:
        if "NoneType" in str(err):
            checks.expect(False, f"A layer without a bias made init_weights fail ({type(err).__name__}: {err}). "
                                 "An nn.Linear built with bias=False has bias None: set the bias to zero only "
                                 "when the layer has one.")
        raise


def _fresh(device):
    with checks.seeded(0):
        tree = _Tree().to(device)
    if device != "meta":
        with torch.no_grad():
            tree.norm.weight.fill_(0.5)
            tree.norm.bias.fill_(0.25)
    return tree


_linears = ["body.0", "body.2.0", "head.out"]
for _scheme in ("kaiming", "xavier"):
    _tree = _fresh(checks.DEVICE)
    _objects = dict(_tree.named_parameters())
    _before = {n: p.detach().clone() for n, p in _tree.named_parameters()}
    with checks.seeded(1):
        _init(_tree, _scheme)
    _now = dict(_tree.named_parameters())
    checks.expect(sorted(_now) == sorted(_objects) and all(_now[n] is _objects[n] for n in _objects),
                  "Some Parameter objects were replaced by init_weights. Change the existing weights in place (under "
                  "torch.no_grad(), or with the nn.init functions): an optimiser built before initialisation "
                  "still holds the old tensors and would update tensors the model no longer uses.")
    for _n, _p in _now.items():
        checks.expect(type(_p) is nn.Parameter and _p.requires_grad and _p.grad_fn is None,
                      f"After init_weights, {_n} is no longer a trainable leaf Parameter. Initialise in place "
                      "with autograd off, so nothing is recorded and the parameter stays a leaf that requires grad.")
        checks.expect(_p.device.type == checks.DEVICE.type,
                      f"The parameter {_n} was moved to {_p.device} by init_weights: initialise the weights where they already live.")
    for _n in ("embed.weight", "norm.weight", "norm.bias"):
        checks.expect(torch.equal(_now[_n], _before[_n]),
                      f"The parameter {_n} was changed by init_weights, though it does not belong to an nn.Linear. Select the layers by "
                      "type (isinstance(module, nn.Linear)), not by the shape of their tensors, and leave every "
                      "other module as it was.")
    for _name in _linears:
        _layer = _tree.get_submodule(_name)
        _w = _layer.weight.detach().double()
        _fan_out, _fan_in = _w.shape
        _std = _w.std().item()
        checks.expect(not torch.equal(_layer.weight, _before[_name + ".weight"]),
                      f"The nn.Linear '{_name}' was not reached by init_weights. Visit every module of the tree, "
                      "however deeply nested (model.modules() or model.apply); model.children() stops at the "
                      "first level.")
        if _layer.bias is not None:
            checks.expect(bool((_layer.bias == 0).all()),
                          f"The bias of '{_name}' is not zero after init_weights: set every Linear's bias to zero.")
        if _scheme == "kaiming":
            _target = math.sqrt(2 / _fan_in)
            _msg = (f"After init_weights(model), the weights of '{_name}' (fan_in={_fan_in}, fan_out={_fan_out}) "
                    f"have standard deviation {_std:.4f}. Kaiming normal draws from N(0, 2 / fan_in): fan_in is "
                    "the number of inputs (weight.shape[1]), and the standard deviation is the square root of "
                    "the variance.")
            checks.expect(abs(_std / _target - 1) < 0.06, _msg)
            _tail = (_w.abs() > math.sqrt(3) * _target).double().mean().item()
            checks.expect(_tail > 0.04,
                          f"The weights of '{_name}' have the right spread but no values beyond the bounds of a "
                          "uniform distribution: scheme 'kaiming' asks for the normal version (kaiming_normal_), "
                          "not the uniform one.")
        else:
            _bound = math.sqrt(6 / (_fan_in + _fan_out))
            checks.expect(_w.abs().max().item() <= _bound * (1 + 1e-5) and abs(_std / (_bound / math.sqrt(3)) - 1) < 0.06,
                          f"After init_weights(model, 'xavier'), the weights of '{_name}' (fan_in={_fan_in}, "
                          f"fan_out={_fan_out}) have standard deviation {_std:.4f} and reach "
                          f"{_w.abs().max().item():.4f}. Xavier uniform draws from U(-a, a) with "
                          "a = sqrt(6 / (fan_in + fan_out)), which uses both fans.")
        checks.expect(abs(_w.mean().item()) < 0.1 * _std,
                      f"The weights of '{_name}' are not centred on zero after init_weights. Both schemes "
                      "draw from distributions centred on 0: N(0, 2 / fan_in) and U(-a, a).")
# the meta device: weights are filled where they live, with no detour through the CPU
for _scheme in ("kaiming", "xavier"):
    _tree = _fresh("meta")
    _, _touched = checks.devices_touched(_init, _tree, _scheme)
    checks.expect("cpu" not in _touched,
                  f"For a model on the meta device, init_weights(model, '{_scheme}') created tensors on the CPU, "
                  "then copied them in. Fill the existing weights in place (nn.init functions, or normal_ / "
                  "uniform_ / zero_ under torch.no_grad()), so nothing leaves the model's device.")
    _off = [n for n, t in _tree.named_parameters() if t.device.type != "meta"]
    checks.expect(not _off, f"Some parameters left the model's device during init_weights: {', '.join(_off)}.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-hooks"
# ## 9 · Hooks: watching a model run
#
# Sometimes you need to see inside a running model without editing its code: the shape of every
# intermediate result while you debug, the fraction of zeros after each ReLU to spot dead units,
# the features of a middle layer to reuse elsewhere. A **forward hook** is a function you attach
# to one module instance:
#
# ```python
# def show(module, inputs, output):   # inputs: the tuple of forward's positional arguments
#     print(type(module).__name__, tuple(output.shape))
#
# handle = model.layers[0].register_forward_hook(show)
# model(x)          # show runs right after that layer's forward
# handle.remove()   # and is detached again
# ```
#
# Hooks are run by `__call__`, the machinery behind `module(x)`: it runs the module's forward
# pre-hooks, then `forward`, then its forward hooks. `module.forward(x)` runs only the middle
# step, so every hook on that module is skipped; in a model whose `forward` calls its layers
# with `.forward`, no hook on those layers ever fires. A hook that returns something other than
# `None` replaces the module's output, so a hook that only watches returns nothing.
#
# A hook stays attached until it is removed. A forgotten one runs on every later call, and
# keeps alive whatever it holds on to. Remove hooks when you are done, and make sure that
# happens even when the forward pass fails: that is what `try … finally` is for.
#
# ### Exercise 9 · Record activation shapes
#
# Write `activation_shapes(model, x)`. It runs `model(x)` once, under `torch.no_grad()` (no
# graph is needed to look at shapes), and returns a list of `(name, shape)` pairs, one per call
# of a **leaf** module (a module without children: `Linear`, `ReLU`, ...), in the order the
# calls happened. `name` is the module's name as `model.named_modules()` gives it (the model
# itself is named `""`) and `shape` is the output's shape as a tuple of ints. A leaf that is
# called twice appears twice. Before returning (or failing, when the model raises an error),
# it removes every hook it added.
#
# For `nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))` and `x` of shape `(5, 4)`
# the answer is `[("0", (5, 8)), ("1", (5, 8)), ("2", (5, 2))]`.
#
# <details><summary>Hint 1</summary>
#
# A module is a leaf when `next(module.children(), None) is None`. Each hook needs to know its
# module's name: a small function that makes a hook for a given name
# (`def make_hook(name): ...` returning the hook) avoids the classic trap of lambdas defined in
# a loop, which all see the loop variable's last value.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep the handles that `register_forward_hook` returns, and remove them in a `finally:` block
# that wraps both the registering and the call.
# </details>
#
# <details><summary>Hint 3</summary>
#
# If a bare layer such as `nn.Linear(3, 2)` gives you an empty list, look at how you run the
# model.
# </details>

# %% role="answer" grade_id="activation-shapes"
def activation_shapes(model, x):
    """(name, output shape) for every call of a leaf module while model(x) runs, in call order."""
    ### BEGIN SOLUTION
    record, handles = [], []

    def make_hook(name):
        def hook(module, inputs, output):
            record.append((name, tuple(output.shape)))
        return hook

    try:
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return record
    ### END SOLUTION


# %% role="test" grade_id="test-shapes-sanity" points=1
_seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
_shapes = activation_shapes(_seq, torch.randn(5, 4))
checks.expect(type(_shapes) is list, f"The result of activation_shapes should be a list, not {checks.describe(_shapes)}.")
checks.expect_equal(_shapes, [("0", (5, 8)), ("1", (5, 8)), ("2", (5, 2))],
                    "The list returned by activation_shapes(nn.Sequential(Linear(4, 8), ReLU(), Linear(8, 2)), x)",
                    why="Record one (name, tuple(output.shape)) per call of a leaf module, from inside a forward hook.")
print(_shapes)


# %% role="test" grade_id="test-shapes" points=3
# Hidden tests: call order, a reused layer, a bare layer, no graph, and hooks removed (even when the model fails).
### BEGIN HIDDEN TESTS
class _Tangled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.act = nn.ReLU()
        self.b = nn.Linear(3, 4)
        self.block = nn.Sequential(nn.Linear(6, 2), nn.Tanh())

    def forward(self, x):
        h = self.act(self.b(x))
        h = self.act(self.a(h))
        return self.block(h)


class _Failing(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 3)
        self.second = nn.Linear(3, 3)

    def forward(self, x):
        self.first(x)
        raise RuntimeError("this model fails on purpose, half-way through its forward pass")


def _leftover_hooks(model):
    return ([n or "(the model)" for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
            + (["(a global hook)"] if nn.modules.module._global_forward_hooks else []))


def _check_shapes(got, want, what, model):
    checks.expect(type(got) is list and all(type(e) is tuple and len(e) == 2 and type(e[0]) is str for e in got),
                  f"The result of activation_shapes({what}, x) should be a list of (name, shape) pairs.")
    _parents = [n for n, m in model.named_modules() if next(m.children(), None) is not None]
    _recorded = [repr(n) for n in _parents if n in {e[0] for e in got}]
    checks.expect(not _recorded,
                  f"For {what}, activation_shapes recorded modules that have children ({', '.join(_recorded)}). "
                  "Record leaf modules only: their outputs are the activations, and a container's output is "
                  "just its last child's output again.")
    _names = [e[0] for e in got]
    if len(got) > 1 and len(set(_names)) == 1 and len({e[0] for e in want}) > 1:
        checks.expect(False, f"For {what}, every entry of activation_shapes carries the same name. Your hooks "
                             "share one loop variable: a lambda or function defined in a loop sees its last "
                             "value when it finally runs (see Hint 1).")
    checks.expect_equal(got, want, f"The list returned by activation_shapes({what}, x)", show=False,
                        why="Record one (name, tuple(output.shape)) per call of a leaf module, from inside a "
                            "forward hook, so the list follows the order the calls happened (a leaf called "
                            "twice appears twice). Modules that have children are not recorded.")


with checks.seeded(0):
    _model = _Tangled().to(checks.DEVICE)
    _x = torch.randn(7, 3, device=checks.DEVICE)
_grad_modes = []
_spy = _model.a.register_forward_hook(lambda m, i, o: _grad_modes.append(torch.is_grad_enabled()))
try:
    _got = activation_shapes(_model, _x)
    _calls = len(_grad_modes)
    with torch.no_grad():
        _model(_x)  # the hook the test attached before the call must still be there
    _spy_kept = len(_grad_modes) > _calls
finally:
    _spy.remove()
_left = _leftover_hooks(_model)
checks.expect(not _left,
              f"After activation_shapes returned, hooks were still attached to {', '.join(_left)}. A hook stays "
              "until it is removed, and fires on every later call: keep the handles register_forward_hook "
              "returns, and call handle.remove() on each.")
checks.expect(_spy_kept,
              "activation_shapes removed a forward hook it had not added (the test attached one to a layer "
              "before the call). Clearing module._forward_hooks wipes out everyone's hooks: remove only your "
              "own, through the handles register_forward_hook returned.")
_check_shapes(_got, [("b", (7, 4)), ("act", (7, 4)), ("a", (7, 6)), ("act", (7, 6)),
                     ("block.0", (7, 2)), ("block.1", (7, 2))], "a model with a reused ReLU", _model)
checks.expect(_grad_modes and not any(_grad_modes),
              "The model ran with autograd recording during activation_shapes. Looking at shapes needs no graph: "
              "run the model under torch.no_grad().")
with checks.seeded(1):
    _bare = nn.Linear(3, 2).to(checks.DEVICE)
_through_call = []  # a hook of the test's own fires only when the model runs through __call__
_bare_spy = _bare.register_forward_hook(lambda m, i, o: _through_call.append(True))
try:
    _got = activation_shapes(_bare, torch.randn(4, 3, device=checks.DEVICE))
finally:
    _bare_spy.remove()
checks.expect(_got != [] or not _through_call,
              "For a bare nn.Linear(3, 2), activation_shapes recorded nothing, though the model did run as "
              "model(x) (a hook of the test's own fired): no hook of yours was attached to it. Here the model "
              "itself is the only leaf: model.named_modules() lists it too, under the name '', so do not skip it.")
checks.expect(_got != [],
              "For a bare nn.Linear(3, 2), activation_shapes recorded nothing: the model itself is the only leaf, and "
              "its hook did not fire. Hooks run inside __call__: run the model as model(x), never "
              "model.forward(x), which skips them.")
_check_shapes(_got, [("", (4, 2))], "nn.Linear(3, 2)", _bare)
checks.expect(not _leftover_hooks(_bare), "A hook was left attached to the bare layer by activation_shapes.")
# a model that fails half-way: the error propagates, and no hook is left behind
_failing = _Failing().to(checks.DEVICE)
checks.expect_raises(RuntimeError, activation_shapes, _failing, torch.randn(2, 3, device=checks.DEVICE),
                     message="The model's error did not come out of activation_shapes. Let it propagate: the caller "
                             "needs to know the forward pass failed.")
_left = _leftover_hooks(_failing)
checks.expect(not _left,
              f"When the model raised an error, activation_shapes left hooks attached to {', '.join(_left)}. "
              "Remove them in a finally: block, which runs whether or not the forward pass fails.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A model is a Python object: `__init__` builds its parts once, `forward` runs on every call,
#   and `model(x)` (through `__call__`) runs `forward` together with its hooks.
# - `nn.Module` keeps registries of parameters, buffers and submodules, filled by attribute
#   assignment once `super().__init__()` has created them. Plain tensors, lists and dicts stay
#   out; `nn.Sequential`, `nn.ModuleList`, `nn.ModuleDict` and `register_buffer` bring things in.
# - Everything else is built on those registries: `parameters()` for the optimiser,
#   `state_dict()` for saving, `.to()` for devices and dtypes, `named_parameters()` for looking
#   inside, `requires_grad_` for choosing what learns.
# - Initialise in place with autograd off, and keep the `Parameter` objects you have.
# - Hooks let you watch a model without changing it: attach, run, and always remove.
#
# Next, in **05 · Training**, these models meet losses and optimisers: the loop that makes the
# parameters you registered actually learn.
