# %% [markdown] role="prose" grade_id="title"
# # 16 · Debugging: the clinic
#
# **Time:** about 3 h of work (3,800 words to read, 12 exercises). Run top to bottom, the
# finished notebook takes about 12 s.
#
# Most bugs in a PyTorch program do not stop it. A shape error, a dtype error or a tensor on the
# wrong device raises, and the traceback points at the line. The others run: the loss goes
# down a little, the accuracy looks plausible, and the model is quietly worse than it should
# be, or learns nothing, or reports a number that measures something else. Debugging a training
# script is mostly the craft of turning those quiet bugs into loud ones: checks that fail at
# the line where the assumption breaks, small experiments whose right answer you know in
# advance, and measurements of what the gradients are doing.
#
# **By the end of this notebook you will be able to:**
# - tell which mistakes PyTorch reports and which it lets run, before running them;
# - write shape assertions that fail loudly, name the actual shape, and check that sizes agree
#   across tensors;
# - overfit a single batch to prove a model and its loop can learn at all;
# - measure per-layer gradient norms, and find the operation that produced a NaN gradient
#   with anomaly detection;
# - repair six broken training, evaluation and data scripts, each with several planted bugs
#   of different kinds: shape, dtype, device, gradient, data and evaluation.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours. In sections 1 to 4
# you replace the `raise NotImplementedError(...)` line with your answer. In the clinic
# (section 5) the cell already holds a broken script: repair it where it stands, then delete
# the two stub lines under it. The test cells after each exercise are locked. Some run visible
# checks; others contain *hidden tests* that run when your notebook is graded (or when you run
# `course check` on it): they call your functions on fresh data of their own, so they judge
# what the repaired code does, not how the edit looks. Each exercise has hints you can open
# one at a time: try without them first.

# %% role="locked" grade_id="setup"
import re
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-loud-quiet"
# ## 1 · Loud bugs and quiet bugs
#
# PyTorch checks what it must to compute anything at all: that the inner sizes of a matrix
# product agree, that a layer's weights and its input share a dtype and a device, that a loss
# gets the kind of target it needs. Break one of those rules and you get an exception, with
# the line. What it cannot check is your *intent*. Two tensors of shapes `(N, 1)` and `(N,)`
# are a perfectly legal pair for subtraction: broadcasting turns them into an `(N, N)` matrix
# of every difference, and the mean of that is a number. Probabilities are legal input for
# `cross_entropy`, which expects logits: it applies `log_softmax` to them a second time and
# returns a loss that still decreases, just not towards anything useful.
#
# So the first question when something looks wrong is not "where is the error?" but "would
# this mistake even raise?". Knowing which mistakes are loud tells you which ones you have to
# look for yourself.
#
# ### Exercise 1 · Predict, then verify
#
# **Without running anything**, fill in `error_predictions`: for each line below, `"raises"`
# if PyTorch raises an exception, or `"silent"` if it runs and returns a result (a warning
# does not count as raising). Under `"g_shape"`, give the shape of the result of (g), as a
# tuple.
#
# | key | line |
# |---|---|
# | `"a"` | `nn.Linear(3, 2)(torch.randn(4, 3, dtype=torch.float64))` |
# | `"b"` | `F.mse_loss(torch.randn(4, 1), torch.randn(4))` |
# | `"c"` | `F.cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 2.0, 1.0, 1.0]))` |
# | `"d"` | `F.cross_entropy(torch.randn(4, 3).softmax(dim=1), torch.tensor([0, 2, 1, 1]))` |
# | `"e"` | `torch.randn(4, 3).t().view(12)` |
# | `"f"` | `torch.randn(4, 3) @ torch.randn(4, 3)` |
# | `"g"` | `torch.randn(4, 1) - torch.randn(4)` |
#
# <details><summary>Hint 1</summary>
#
# A layer's weights are `float32` unless you asked otherwise. `cross_entropy` reads a target
# of shape `(N,)` as class indices, and class indices are integers.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Broadcasting lines shapes up from the right and stretches dimensions of size 1. A
# transposed tensor is not contiguous (02).
# </details>

# %% role="answer" grade_id="error-predictions"
error_predictions = {
    "a": None,        # "raises" or "silent"
    "b": None,
    "c": None,
    "d": None,
    "e": None,
    "f": None,
    "g": None,
    "g_shape": None,  # a tuple of ints
}
### BEGIN SOLUTION
error_predictions = {
    "a": "raises",
    "b": "silent",
    "c": "raises",
    "d": "silent",
    "e": "raises",
    "f": "raises",
    "g": "silent",
    "g_shape": (4, 4),
}
### END SOLUTION

# %% role="test" grade_id="test-error-predictions" points=3
# Hidden tests run the seven lines and compare with your predictions.
checks.expect(isinstance(error_predictions, dict)
              and set(error_predictions) == {"a", "b", "c", "d", "e", "f", "g", "g_shape"},
              "`error_predictions` should be a dict with exactly the keys 'a' to 'g' and 'g_shape'.")
### BEGIN HIDDEN TESTS
_lines = {
    "a": (lambda: nn.Linear(3, 2)(torch.randn(4, 3, dtype=torch.float64)),
          "A layer's weights are float32; a float64 input does not match them, and PyTorch does not convert."),
    "b": (lambda: F.mse_loss(torch.randn(4, 1), torch.randn(4)),
          "(4, 1) and (4,) broadcast to (4, 4): mse_loss only warns, and returns the mean of 16 differences."),
    "c": (lambda: F.cross_entropy(torch.randn(4, 3), torch.tensor([0.0, 2.0, 1.0, 1.0])),
          "A target of shape (N,) holds class indices, which must be int64: floats are refused."),
    "d": (lambda: F.cross_entropy(torch.randn(4, 3).softmax(dim=1), torch.tensor([0, 2, 1, 1])),
          "cross_entropy cannot know its input went through softmax already: any float (N, C) input is legal."),
    "e": (lambda: torch.randn(4, 3).t().view(12),
          "A transposed tensor is not contiguous, and view cannot flatten it (reshape would copy)."),
    "f": (lambda: torch.randn(4, 3) @ torch.randn(4, 3),
          "A matrix product needs the inner sizes to agree: (4, 3) @ (4, 3) has 3 against 4."),
    "g": (lambda: torch.randn(4, 1) - torch.randn(4),
          "Broadcasting aligns (4, 1) and (4,) from the right and stretches both size-1 dimensions."),
}
for _key, (_run, _why) in _lines.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _result = _run()
            _truth = "silent"
        except (RuntimeError, ValueError):
            _truth = "raises"
    _said = error_predictions[_key]
    checks.expect(_said in ("raises", "silent"),
                  f"Your prediction for ({_key}) should be 'raises' or 'silent', but it is {checks.describe(_said)}.")
    checks.expect(_said == _truth, f"Your prediction for ({_key}) is not what PyTorch does. {_why}")
    if _key == "g":
        _said = error_predictions["g_shape"]
        if isinstance(_said, list):
            _said = tuple(_said)
        checks.expect(type(_said) is tuple and all(type(_v) is int for _v in _said),
                      f"'g_shape' should be a tuple of ints, but it is {checks.describe(_said)}.")
        checks.expect(_said == tuple(_result.shape),
                      f"Your 'g_shape' is not the shape of (g)'s result. {_why}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-shapes"
# ## 2 · Shape assertions: make the quiet shape bugs loud
#
# The cheapest defence against silent broadcasting is to write down the shape you expect,
# where you expect it, and check it. A good shape check does three things that a bare
# `assert x.shape == (n, 3)` does not:
#
# - it allows **wildcards** for sizes that may be anything (`None`), and **names** for sizes
#   that are unknown but must *agree*: the `N` of the images and the `N` of the labels;
# - it checks the **number of dimensions** first. `zip` stops at the shorter of its inputs,
#   so a loop that compares sizes pairwise passes `(4, 3, 7)` against `(4, 3)` unless you
#   compare the lengths too;
# - it **raises an exception that survives `python -O`**. `assert` statements are removed
#   when Python runs with optimisations on, so checks you rely on should `raise` explicitly.
#   Its message shows the shape it got and the one it wanted, because that is the first
#   thing you will want to know.
#
# ### Exercise 2 · `assert_shape`
#
# Write `assert_shape(tensor, expected, sizes=None)`. `expected` is a tuple with one entry per
# dimension: an `int` (that exact size), `None` (any size) or a `str` (a named size). `sizes`
# is a dict from names to sizes bound by earlier calls (`None`: start a new one). If the shape
# does not match, raise `ValueError` with a message that contains the actual shape written as
# a tuple, e.g. `(4, 3)`. Otherwise return the dict of names bound so far, this call's
# included, so that the next call can check against it:
#
# ```python
# sizes = assert_shape(images, ("N", 1, 8, 8))
# assert_shape(labels, ("N",), sizes)     # raises if the two N differ
# ```
# A name used twice in one `expected` must have the same size both times. Only shapes are
# read, never values: the function must work on tensors of any device, `meta` included.
#
# <details><summary>Hint 1</summary>
#
# Compare `len(tensor.shape)` with `len(expected)` before looking at any size.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For a name: if it is already in `sizes`, its size must be equal; if not, record it.
# `dict.setdefault` does both in one call.
# </details>

# %% role="answer" grade_id="assert-shape"
def assert_shape(tensor, expected, sizes=None):
    """Raise ValueError unless tensor.shape matches expected (ints, None, names); return the bound names."""
    ### BEGIN SOLUTION
    sizes = {} if sizes is None else sizes
    shape = tuple(tensor.shape)
    if len(shape) != len(expected):
        raise ValueError(f"expected {len(expected)} dimensions {expected}, got shape {shape}")
    for dim, (got, want) in enumerate(zip(shape, expected)):
        if want is None:
            continue
        if isinstance(want, str):
            if sizes.setdefault(want, got) != got:
                raise ValueError(f"dimension {dim} is {got} but {want!r} is {sizes[want]}: "
                                 f"got shape {shape}, expected {expected}")
        elif got != want:
            raise ValueError(f"dimension {dim} is {got}, expected {want}: got shape {shape}, expected {expected}")
    return sizes
    ### END SOLUTION


# %% role="test" grade_id="test-assert-shape-sanity" points=1
_sizes = assert_shape(torch.zeros(5, 3), ("N", 3))
checks.expect(isinstance(_sizes, dict) and _sizes.get("N") == 5,
              f"assert_shape(torch.zeros(5, 3), ('N', 3)) should return a dict binding 'N' to 5; it returned "
              f"{checks.describe(_sizes)}.")
try:
    checks.expect_raises(ValueError, assert_shape, torch.zeros(5, 4), ("N", 3),
                         message="assert_shape(torch.zeros(5, 4), ('N', 3)) should raise ValueError: 4 is not 3.")
except checks.CheckFailure:
    raise
except AssertionError:
    checks.expect(False, "assert_shape(torch.zeros(5, 4), ('N', 3)) raised AssertionError; it should raise ValueError "
                         "(assert statements disappear under `python -O`).")
print("assert_shape(torch.zeros(5, 3), ('N', 3)) returned", _sizes)


# %% role="test" grade_id="test-assert-shape" points=3
# Hidden tests check shapes of many ranks on the meta device: exact sizes, wildcards, names that must
# agree within one call and across calls, the number of dimensions, the exception and its message.
### BEGIN HIDDEN TESTS
def _t(*shape):
    return torch.empty(shape, device="meta")


def _must_raise(tensor, expected, sizes, why):
    try:
        assert_shape(tensor, expected, sizes)
    except ValueError as _err:
        checks.expect(str(tuple(tensor.shape)) in str(_err),
                      f"assert_shape raised ValueError for shape {tuple(tensor.shape)} against {expected}, but its "
                      f"message ({str(_err)[:120]!r}) does not show the actual shape as a tuple. The first thing a "
                      "reader of the error needs is the shape that arrived: put tuple(tensor.shape) in the message.")
        return
    except AssertionError:
        checks.expect(False, f"assert_shape raised AssertionError for shape {tuple(tensor.shape)} against {expected}. "
                             "assert statements disappear under `python -O`, so a check you rely on should raise "
                             "ValueError explicitly.")
    checks.expect(False, f"assert_shape accepted shape {tuple(tensor.shape)} against {expected}"
                         f"{'' if not sizes else f' with sizes {sizes}'}. {why}")


with checks.seeded(4):
    _n, _c = int(torch.randint(2, 9, ()).item()), int(torch.randint(10, 20, ()).item())
for _shape, _expected in [((_n, _c), (_n, _c)), ((_n, 1, 8, 8), ("N", 1, None, 8)), ((_c,), (None,)),
                          ((_n, _n, 3), ("T", "T", 3)), ((), ())]:
    try:
        _out = assert_shape(_t(*_shape), _expected)
    except ValueError as _err:
        checks.expect(False, f"assert_shape raised for shape {_shape} against {_expected}, which matches: {_err}. "
                             "None accepts any size, and a name accepts any size the first time it is seen.")
    checks.expect(isinstance(_out, dict), f"assert_shape should return the dict of bound names; it returned "
                                          f"{checks.describe(_out)}.")
_must_raise(_t(_n, _c + 1), (_n, _c), None, "An int in expected is an exact size.")
_must_raise(_t(_n, _c, 7), (_n, _c), None,
            "The tensor has one dimension more than expected. zip() stops at the shorter sequence, so comparing "
            "sizes pair by pair never sees the extra dimension: compare the number of dimensions first.")
_must_raise(_t(_n), (_n, None), None,
            "The tensor has one dimension less than expected: compare the number of dimensions first.")
_must_raise(_t(_n, _n + 1, 3), ("T", "T", 3), None,
            "A name used twice in one expected shape must have the same size both times.")
_sizes = assert_shape(_t(_n, 1, 8, 8), ("N", 1, 8, 8))
checks.expect(isinstance(_sizes, dict) and _sizes.get("N") == _n,
              f"After assert_shape(images of shape {(_n, 1, 8, 8)}, ('N', 1, 8, 8)) the returned dict should bind "
              f"'N' to {_n}; it is {checks.describe(_sizes)}.")
_sizes = assert_shape(_t(_c), ("C",), _sizes)
checks.expect(isinstance(_sizes, dict) and _sizes.get("N") == _n and _sizes.get("C") == _c,
              f"Passing the returned dict on should keep the names bound earlier and add new ones: after binding N "
              f"and then C, the dict is {checks.describe(_sizes)}.")
assert_shape(_t(_n), ("N",), _sizes)
_must_raise(_t(_n + 1), ("N",), dict(_sizes),
            "A name bound by an earlier call (in sizes) must keep its size: the labels' N must equal the images' N.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-overfit"
# ## 3 · Overfit one batch
#
# Before training on a whole dataset for an hour, train on **one small batch** for a minute.
# A model with enough parameters can memorise 16 examples, even with random labels, so the
# loss on that batch should fall to almost zero. If it does not, no amount of data or epochs
# will help: something between the input and the update is broken. The loss stalls at a
# floor (a softmax before `cross_entropy`), stays flat (no gradient reaches the weights),
# or wanders (stale gradients, a learning rate far too large). The experiment takes seconds,
# and its right answer is known in advance, which is what makes it a good test.
#
# ### Exercise 3 · `overfit_one_batch`
#
# Write `overfit_one_batch(model, x, y, steps=50, lr=0.01)`: train `model` in training mode
# with `torch.optim.Adam` (learning rate `lr`) and cross-entropy on the single batch `(x, y)`
# for `steps` updates, and return the loss of every step as a list of Python floats. The
# hidden test hands it a small network and 16 examples with random labels, and expects the
# loss to reach below 0.05.
#
# <details><summary>Hint 1</summary>
#
# The loop of 05, with the same batch every time: zero_grad, forward, loss, backward, step.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Whoever calls you may hand you a model in eval mode: call `model.train()` first.
# `loss.item()` gives the float.
# </details>

# %% role="answer" grade_id="overfit"
def overfit_one_batch(model, x, y, steps=50, lr=0.01):
    """Train model on the one batch (x, y) with Adam and cross-entropy; return every step's loss (floats)."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
    ### END SOLUTION


# %% role="test" grade_id="test-overfit-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).to(checks.DEVICE)
    _x, _y = torch.randn(8, 6, device=checks.DEVICE), torch.randint(0, 3, (8,), device=checks.DEVICE)
    _losses = overfit_one_batch(_model, _x, _y, steps=5)
checks.expect(type(_losses) is list and len(_losses) == 5 and all(type(_v) is float for _v in _losses),
              f"overfit_one_batch(model, x, y, steps=5) should return a list of 5 Python floats; it returned "
              f"{checks.describe(_losses)}. Record loss.item(), a number, not the loss tensor.")
print("five steps:", [round(_v, 3) for _v in _losses])

# %% role="test" grade_id="test-overfit" points=2
# Hidden tests hand overfit_one_batch a network in eval mode and 16 examples with random labels, watch the
# loop, and check that the loss on the batch ends below 0.05.
### BEGIN HIDDEN TESTS
with checks.seeded(11):
    _model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.0), nn.Linear(64, 5)).to(checks.DEVICE)
    _x, _y = torch.randn(16, 20, device=checks.DEVICE), torch.randint(0, 5, (16,), device=checks.DEVICE)
_model.eval()
_x0, _y0 = _x.clone(), _y.clone()
with checks.seeded(11), checks.TrainingSpy(_model) as _spy:
    _losses = overfit_one_batch(_model, _x, _y, steps=50, lr=0.01)
checks.expect(type(_losses) is list and len(_losses) == 50 and all(type(_v) is float for _v in _losses),
              f"overfit_one_batch(..., steps=50) should return a list of 50 floats; it returned "
              f"{checks.describe(_losses)}.")
_spy.check_loop(steps=50, name="`overfit_one_batch`")
checks.expect(torch.equal(_x, _x0) and torch.equal(_y, _y0),
              "overfit_one_batch changed the batch it was given. Train on it; do not modify it.")
with torch.no_grad():
    _final = F.cross_entropy(_model(_x), _y).item()
checks.expect(_final < 0.05,
              f"After overfit_one_batch(steps=50, lr=0.01), the loss on the batch is {_final:.3f}: a network of 64 "
              "hidden units should memorise 16 examples to below 0.05. Use Adam with the given lr, and the same "
              "batch at every step.")
checks.expect(abs(_losses[-1] - _final) < 0.1,
              f"The last loss overfit_one_batch reported ({_losses[-1]:.3f}) is far from the loss of the trained model "
              f"on the batch ({_final:.3f}): report each step's loss on the batch (x, y).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-suspects"
# The next cell builds three small networks, `suspects["a"]`, `suspects["b"]` and
# `suspects["c"]`, and one batch `(x_batch, y_batch)`. Each network would pass a shape check:
# it maps `(16, 20)` to `(16, 5)`. Some of them cannot learn.
#
# ### Exercise 4 · Measure: which suspects can overfit?
#
# Run your `overfit_one_batch` on each suspect (on a fresh copy: `copy.deepcopy(suspect)`, so
# the originals stay as they are), with the default settings, and fill in `can_overfit`:
# for each key, `True` if the last loss is below 0.05, `False` if not. Then read each
# suspect's code and find the reason for every `False`.
#
# <details><summary>Hint 1</summary>
#
# `losses = overfit_one_batch(copy.deepcopy(suspects[key]), x_batch, y_batch)`, then look at
# `losses[-1]`. Write the loop over the three keys.
# </details>
#
# <details><summary>Hint 2</summary>
#
# A loss that stops at a value well above zero and goes no further is a floor: what caps how
# confident the model's output can be? A loss that barely moves means no gradient reaches most
# weights: what is the gradient of a ReLU network whose weights are all zero?
# </details>

# %% role="locked" grade_id="suspects"
import copy


class SoftmaxHead(nn.Module):
    """An MLP that ends with a softmax: its outputs are probabilities, not logits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

    def forward(self, x):
        return self.net(x).softmax(dim=1)


def make_suspects(seed=0):
    torch.manual_seed(seed)
    zeros = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    with torch.no_grad():
        for p in zeros.parameters():
            p.zero_()  # "a clean start"
    return {
        "a": nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5)),
        "b": zeros,
        "c": SoftmaxHead(),
    }


suspects = {k: m.to(checks.DEVICE) for k, m in make_suspects().items()}
with checks.seeded(1):
    x_batch = torch.randn(16, 20, device=checks.DEVICE)
    y_batch = torch.randint(0, 5, (16,), device=checks.DEVICE)

# %% role="answer" grade_id="can-overfit"
can_overfit = {"a": None, "b": None, "c": None}  # True or False each
### BEGIN SOLUTION
for key, suspect in suspects.items():
    can_overfit[key] = overfit_one_batch(copy.deepcopy(suspect), x_batch, y_batch)[-1] < 0.05
print(can_overfit)
### END SOLUTION

# %% role="test" grade_id="test-can-overfit" points=2
# Hidden tests train copies of the three suspects on the batch with a loop of their own and compare.
checks.expect(isinstance(can_overfit, dict) and set(can_overfit) == {"a", "b", "c"},
              "`can_overfit` should be a dict with exactly the keys 'a', 'b' and 'c'.")
### BEGIN HIDDEN TESTS
_reasons = {
    "b": "With every weight zero, each hidden unit outputs 0 and passes no gradient back through the zero weights "
         "above it, so only the last bias can move (and the hidden layer stays dead).",
    "c": "The suspect ends with a softmax, so cross_entropy sees probabilities: its log_softmax of numbers in [0, 1] "
         "cannot make one class much likelier than the others, and the loss stops at a floor.",
    "a": "A plain MLP of 64 hidden units memorises 16 examples easily.",
}
# The suspects and the batch are rebuilt here from their definitions, not read from the notebook.
class _SoftmaxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))

    def forward(self, x):
        return self.net(x).softmax(dim=1)


with checks.seeded(0):
    _zeros = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    with torch.no_grad():
        for _p in _zeros.parameters():
            _p.zero_()
    _fresh = {"a": nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5)), "b": _zeros, "c": _SoftmaxHead()}
with checks.seeded(1):
    _xb = torch.randn(16, 20, device=checks.DEVICE)
    _yb = torch.randint(0, 5, (16,), device=checks.DEVICE)
for _key in ("a", "b", "c"):
    _m = _fresh[_key].to(checks.DEVICE)
    _opt = torch.optim.Adam(_m.parameters(), lr=0.01)
    for _ in range(50):
        _opt.zero_grad()
        _loss = F.cross_entropy(_m(_xb), _yb)
        _loss.backward()
        _opt.step()
    _said = can_overfit[_key]
    checks.expect(type(_said) is bool or isinstance(_said, np.bool_),
                  f"can_overfit[{_key!r}] should be True or False, but it is {checks.describe(_said)}.")
    checks.expect(bool(_said) == (_loss.item() < 0.05),
                  f"Your answer for suspect ({_key}) is not what training it on the batch shows. Run "
                  "overfit_one_batch on a copy of it and look at the last loss.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-grad-norms"
# ## 4 · Looking at the gradients
#
# When a model does not learn, look at what `backward()` produced before changing anything
# else. One number per parameter tensor is enough to start: the **L2 norm of its gradient**,
# `p.grad.norm()`. Read layer by layer, these norms show:
#
# - a parameter whose gradient is `None` after backward: it is not part of the graph that led
#   to the loss (a `detach()`, an `.item()` or a layer the forward never uses);
# - norms that shrink layer after layer towards the input (**vanishing** gradients: deep
#   stacks of sigmoids, bad initialisation) or grow (**exploding**);
# - a sudden `nan` or `inf`: the next section finds where it came from.
#
# Measuring must not change what it measures: read `p.grad`, do not clip or zero it.
#
# ### Exercise 5 · `grad_norms`
#
# Write `grad_norms(model)`: a dict from each parameter's name (as `named_parameters()` gives
# it) to the L2 norm of its gradient as a Python float, for the parameters whose `.grad` is
# not `None`. Parameters without a gradient are left out.
#
# <details><summary>Hint 1</summary>
#
# `for name, p in model.named_parameters():` and `p.grad.norm().item()`.
# </details>

# %% role="answer" grade_id="grad-norms"
def grad_norms(model):
    """{name: L2 norm of the parameter's gradient (a float)} for the parameters that have a gradient."""
    ### BEGIN SOLUTION
    return {name: p.grad.detach().norm().item() for name, p in model.named_parameters() if p.grad is not None}
    ### END SOLUTION


# %% role="test" grade_id="test-grad-norms-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(checks.DEVICE)
    _model(torch.randn(5, 4, device=checks.DEVICE)).sum().backward()
_norms = grad_norms(_model)
checks.expect(isinstance(_norms, dict) and set(_norms) == {"0.weight", "0.bias", "2.weight", "2.bias"},
              f"grad_norms of a two-layer Sequential should have the keys '0.weight', '0.bias', '2.weight' and "
              f"'2.bias' (the names named_parameters() gives); it returned {checks.describe(_norms)}.")
checks.expect(all(type(_v) is float for _v in _norms.values()),
              "grad_norms should map each name to a Python float (use .item()).")
print({_k: round(_v, 4) for _k, _v in _norms.items()})


# %% role="test" grade_id="test-grad-norms" points=2
# Hidden tests set known gradients on a model with frozen and unused parameters, then compare the norms,
# and check that the gradients are left as they were.
### BEGIN HIDDEN TESTS
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(7, 5)
        self.frozen = nn.Linear(5, 5)
        self.unused = nn.Linear(5, 2)
        self.head = nn.Linear(5, 3)


with checks.seeded(8):
    _net = _Net().to(checks.DEVICE)
    _net.frozen.requires_grad_(False)
    _expected = {}
    for _name in ("body.weight", "body.bias", "head.weight", "head.bias"):
        _p = _net.get_parameter(_name)
        _p.grad = torch.randn_like(_p) * float(torch.rand(()) * 10)
        _expected[_name] = _p.grad.double().pow(2).sum().sqrt().item()
_before = {_k: _net.get_parameter(_k).grad.clone() for _k in _expected}
_norms = grad_norms(_net)
checks.expect(isinstance(_norms, dict), f"grad_norms should return a dict; it returned {checks.describe(_norms)}.")
checks.expect(set(_norms) == set(_expected),
              f"grad_norms returned the keys {sorted(map(str, _norms))}, expected {sorted(_expected)}: one entry per "
              "parameter that has a gradient, named as named_parameters() names it; parameters whose .grad is None "
              "(frozen or unused) are left out, not reported as 0.")
for _k, _g in _before.items():
    _now = _net.get_parameter(_k).grad
    checks.expect(_now is not None and torch.equal(_now, _g),
                  f"grad_norms changed {_k}.grad. Measuring must not change what it measures: read the gradients, "
                  "do not clip, scale or zero them.")
for _k, _v in _expected.items():
    checks.expect(type(_norms[_k]) is float, f"grad_norms[{_k!r}] should be a Python float; it is "
                                            f"{checks.describe(_norms[_k])}.")
    checks.expect_close(_norms[_k], _v, f"grad_norms[{_k!r}]", rtol=1e-4,
                        why="The L2 norm of the gradient is the square root of the sum of its squared entries: "
                            "p.grad.norm(), not the norm of the weights and not the squared norm.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-nan"
# ## 5 · Where did the NaN come from?
#
# A NaN anywhere in a gradient spreads: the optimiser writes it into the weights, the next
# forward pass turns every output into NaN, and by the time the loss prints `nan` the op that
# made the first one is long gone. Common culprits are exact: `0 / 0`, `sqrt` at 0 (an
# infinite slope, which a zero upstream gradient turns into `0 · ∞ = nan`), `log` at 0, and
# `torch.where` that *selects* a safe value in the forward pass while the unsafe branch still
# gets a gradient in the backward pass.
#
# **Anomaly detection** finds it. Inside `with torch.autograd.detect_anomaly():` autograd
# records where each operation was created during the forward pass and checks the output of
# every backward function; the first one that returns NaN stops the backward pass with
# a `RuntimeError` such as
#
# ```
# Function 'SqrtBackward0' returned nan values in its 0th output.
# ```
#
# and a warning shows the forward line that created it. It is slow, so switch it on to hunt a
# NaN and off afterwards, never for a whole training run. It checks the *backward* pass: a NaN
# made in the forward pass (a `log` of a negative number) is found with `torch.isnan` checks
# on the activations instead.
#
# ### Exercise 6 · `nan_source`
#
# Write `nan_source(compute_loss)`: `compute_loss` is a function of no arguments that returns
# a scalar loss. Call it and backpropagate from its result with anomaly detection on, and
# return the name of the backward function that produced NaN (such as `"SqrtBackward0"`), or
# `None` if the backward pass finishes cleanly. Other errors must not be hidden: re-raise
# them. Anomaly detection must be off again when the function returns, whichever way it ends.
#
# <details><summary>Hint 1</summary>
#
# Catch the `RuntimeError` around `backward()` and read the name out of its message with
# `re.search(r"Function '(\w+)' returned nan", str(err))`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The context manager `torch.autograd.detect_anomaly()` switches the mode back off on the way
# out, returns and exceptions included; `torch.autograd.set_detect_anomaly(True)` does not.
# Wrap it in `warnings.catch_warnings()` with `warnings.simplefilter("ignore")` if the
# warnings clutter your output.
# </details>

# %% role="answer" grade_id="nan-source"
def nan_source(compute_loss):
    """Name of the backward function that first returned NaN (e.g. "SqrtBackward0"), or None."""
    ### BEGIN SOLUTION
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anomaly mode warns, with the forward traceback, on stderr
        with torch.autograd.detect_anomaly():
            loss = compute_loss()
            try:
                loss.backward()
            except RuntimeError as err:
                found = re.search(r"Function '(\w+)' returned nan", str(err))
                if found is None:
                    raise
                return found.group(1)
    return None
    ### END SOLUTION


# %% role="test" grade_id="test-nan-source-sanity" points=1
_w = torch.tensor([0.0, 2.0], device=checks.DEVICE, requires_grad=True)
_name = nan_source(lambda: (_w / _w).sum())
checks.expect(type(_name) is str,
              f"nan_source(lambda: (w / w).sum()) with a 0 in w should return a str, the name of a backward "
              f"function; it returned {checks.describe(_name)}.")
print("w / w with w = [0, 2]: the NaN comes from", _name)
torch.autograd.set_detect_anomaly(False)


# %% role="test" grade_id="test-nan-source" points=3
# Hidden tests hand nan_source losses with a NaN made by different ops, clean losses, and a loss whose
# backward fails for another reason; after each, anomaly detection must be off.
### BEGIN HIDDEN TESTS
def _leaf(*values):
    return torch.tensor(values, device=checks.DEVICE, requires_grad=True)


with checks.seeded(5):
    _noise = torch.rand(3, device=checks.DEVICE) + 0.5
_cases = [
    ("DivBackward0", lambda: ((_a := _leaf(0.0, *_noise.tolist())) / _a).sum(), "0 / 0"),
    ("SqrtBackward0", lambda: (torch.sqrt(_leaf(*_noise.tolist(), 0.0)) * 0.0).sum(), "sqrt at 0, times 0"),
    ("LogBackward0", lambda: torch.where((_b := _leaf(0.0, *_noise.tolist())) > 0, torch.log(_b), 0.0).sum(),
     "log at 0 behind torch.where"),
    (None, lambda: (torch.sqrt(_leaf(*_noise.tolist())) * 3.0).sum(), "a clean sqrt"),
    (None, lambda: (_leaf(*_noise.tolist()) ** 2).mean(), "a clean square"),
]
for _expected, _fn, _what in _cases:
    try:
        _got = nan_source(_fn)
    finally:
        _left_on = torch.is_anomaly_enabled()
        torch.autograd.set_detect_anomaly(False)
    checks.expect(not _left_on,
                  f"Anomaly detection was still on after nan_source returned (for {_what}). It slows every later "
                  "backward pass: use the context manager `with torch.autograd.detect_anomaly():`, which switches it "
                  "off on the way out, or switch it off in a `finally` block.")
    if _expected is None:
        checks.expect(_got is None, f"nan_source returned {checks.describe(_got)} for {_what}, whose gradients have "
                                    "no NaN: return None when the backward pass finishes cleanly.")
    else:
        checks.expect(_got is not None,
                      f"nan_source returned None for a loss whose gradient has a NaN ({_what}). Without anomaly "
                      "detection the NaN lands silently in .grad; run the backward pass inside "
                      "torch.autograd.detect_anomaly(), which raises at the first backward function returning NaN.")
        checks.expect(_got == _expected,
                      f"nan_source returned {checks.describe(_got)} for {_what}; the backward function that returned "
                      "NaN has another name. Return just the name in quotes in the error's message, e.g. "
                      "'SqrtBackward0', not the whole message (see Hint 1).")
_frozen = torch.ones(3, device=checks.DEVICE)  # requires no grad: backward raises a RuntimeError of its own
try:
    _got = nan_source(lambda: (_frozen * 2).sum())
    _raised = False
except RuntimeError:
    _raised = True
finally:
    _left_on = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(False)
checks.expect(not _left_on, "Anomaly detection was still on after nan_source ended with an error: switch it off "
                            "whichever way the function ends (the context manager does).")
checks.expect(_raised, f"nan_source returned {checks.describe(_got)} for a loss that does not require grad, whose "
                       "backward raises a RuntimeError that is not about NaN. Re-raise errors you do not handle: "
                       "hiding them hides the real bug.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-clinic"
# ## 6 · The clinic: six broken scripts
#
# Each of the next six cells holds a script as someone wrote it: it reads well, most of it is
# right, and it has **several bugs** of different kinds. Some raise; most do not. For each:
#
# 1. read the description of what the script should do, and the script;
# 2. run it, and the visible test under it, and read what happens;
# 3. find the bugs, using what you have: shape assertions, the shape of every intermediate,
#    a batch you can overfit, the gradients, and a small input whose right answer you know;
# 4. repair the script **in place**, keeping its name and arguments, then delete the two stub
#    lines under it (`# YOUR CODE HERE` and the `raise`).
#
# The hidden tests call the repaired function on fresh data, sizes and devices of their own
# choosing, so it must do the right thing in general, not only on the examples here. Each
# script says how many bugs it has. A bug is one wrong idea, which may take more than one
# line to fix. Device bugs do not show on a computer without a GPU: the tests use the
# `meta` device (02's tensors without data) to find them, and so can you.

# %% [markdown] role="prose" grade_id="md-regressor"
# ### Exercise 7 · Script A: a regression loop (3 bugs)
#
# `train_regressor(model, loader, epochs=20, lr=0.05)` trains `model`, which maps a batch of
# features `(N, D)` to one prediction per example, `(N, 1)`, on batches `(x, y)` of features
# and targets `y` of shape `(N,)`, with mean squared error and plain SGD. It returns the mean
# training loss of each epoch, as a list of Python floats.
#
# Symptoms: the loss goes down a little and stays high; the list it returns prints strangely;
# the program's memory grows with every batch.
#
# <details><summary>Hint 1</summary>
#
# Print the shapes of `model(x)` and `y`, and read the warning `mse_loss` gives. What shape is
# `model(x) - y`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# What does `.grad` hold at the second step? What does `total` hold after the first batch, and
# what does it keep alive?
# </details>

# %% role="answer" grade_id="script-regressor"
def train_regressor(model, loader, epochs=20, lr=0.05):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        total = 0.0
        for x, y in loader:
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss
        history.append(total / len(loader))
    return history


### BEGIN SOLUTION
def train_regressor(model, loader, epochs=20, lr=0.05):
    """The repaired script: each repair is marked `fix`."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        total = 0.0
        for x, y in loader:
            optimizer.zero_grad()  # fix (gradient): .grad accumulates across backward passes
            pred = model(x).squeeze(1)  # fix (shape): (N, 1) - (N,) broadcasts to (N, N)
            loss = F.mse_loss(pred, y)
            loss.backward()
            optimizer.step()
            total += loss.item()  # fix (graph): a float; the tensor kept every batch's graph alive
        history.append(total / len(loader))
    return history
### END SOLUTION


# %% role="test" grade_id="test-regressor-sanity" points=1
with checks.seeded(0):
    _x = torch.randn(64, 3, device=checks.DEVICE)
    _y = _x @ torch.tensor([1.0, -2.0, 0.5], device=checks.DEVICE) + 0.3
    _model = nn.Linear(3, 1).to(checks.DEVICE)
    _history = train_regressor(_model, DataLoader(TensorDataset(_x, _y), batch_size=16), epochs=2)
checks.expect(type(_history) is list and len(_history) == 2 and all(type(_v) is float for _v in _history),
              f"train_regressor(..., epochs=2) should return a list of 2 Python floats; it returned "
              f"{checks.describe(_history)}" + (", holding tensors" if type(_history) is list and any(
                  isinstance(_v, torch.Tensor) for _v in _history) else "") + ". Add up loss.item(), a number "
              "that does not hold on to the graph, not the loss tensor.")
print("epoch losses:", [round(_v, 3) for _v in _history])

# %% role="test" grade_id="test-regressor" points=3
# Hidden tests fit fresh linear data of another size, watch the loop, and compare the fitted model's
# predictions with the targets.
### BEGIN HIDDEN TESTS
with checks.seeded(21):
    _d = int(torch.randint(4, 8, ()).item())
    _x = torch.randn(240, _d, device=checks.DEVICE)
    _w = torch.randn(_d, device=checks.DEVICE)
    _y = _x @ _w + 1.5 + 0.01 * torch.randn(240, device=checks.DEVICE)
    _model = nn.Linear(_d, 1).to(checks.DEVICE)
    _loader = DataLoader(TensorDataset(_x, _y), batch_size=48, shuffle=True, generator=torch.Generator().manual_seed(2))
with warnings.catch_warnings(record=True) as _caught, checks.seeded(21), checks.TrainingSpy(_model) as _spy:
    warnings.simplefilter("always")
    _history = train_regressor(_model, _loader, epochs=15, lr=0.05)
checks.expect(type(_history) is list and len(_history) == 15 and all(type(_v) is float for _v in _history),
              f"train_regressor(..., epochs=15) should return a list of 15 Python floats; it returned "
              f"{checks.describe(_history)}. Add up loss.item(), not the loss tensor: a tensor sum keeps the graph "
              "of every batch alive.")
_spy.check_loop(steps=15 * len(_loader), name="`train_regressor`")
_broadcast = any("target size" in str(_c.message) for _c in _caught)
with torch.no_grad():
    _pred = _model(_x).reshape(-1)
_mse, _var = ((_pred - _y) ** 2).mean().item(), _y.var().item()
checks.expect(not _broadcast and _mse < 0.02 * _var,
              f"After 15 epochs the model's mean squared error is {_mse:.3f}, against a target variance of "
              f"{_var:.3f}: it has not fitted data that a linear model fits exactly."
              + (" During training mse_loss warned that the target size differs from the input size: predictions "
                 "of shape (N, 1) against targets of shape (N,) broadcast to (N, N), so the loss compares every "
                 "prediction with every target and its minimum is near the targets' mean. Make the two shapes "
                 "equal (squeeze the prediction's last dimension)." if _broadcast else
                 " Check the shapes that go into the loss and the update."))
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-classifier"
# ### Exercise 8 · Script B: a classifier with validation (3 bugs)
#
# `train_classifier(model, train_loader, val_loader, epochs=5, lr=0.01)` trains a classifier
# that maps features to class logits, on batches `(x, y)` with `int64` class indices `y`,
# with cross-entropy and Adam. After every epoch it measures the accuracy on the validation
# batches. It returns two lists with one float per epoch: the mean training loss over the
# epoch's batches, and the validation accuracy.
#
# Symptoms: it crashes at the first batch. Once that is fixed, the loss falls for a while and
# then refuses to go below a value well above zero, and a model with dropout trains
# differently from the second epoch on.
#
# <details><summary>Hint 1</summary>
#
# What does `cross_entropy` expect as its input, and as its target (05)? What does it do to
# its input first?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Which mode is the model in at the start of the second epoch?
# </details>

# %% role="answer" grade_id="script-classifier"
def train_classifier(model, train_loader, val_loader, epochs=5, lr=0.01):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, accuracies = [], []
    for epoch in range(epochs):
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            probs = F.softmax(model(x), dim=1)
            loss = F.cross_entropy(probs, y.float())
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(train_loader))
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x).argmax(dim=1) == y).sum().item()
        accuracies.append(correct / len(val_loader.dataset))
    return losses, accuracies


### BEGIN SOLUTION
def train_classifier(model, train_loader, val_loader, epochs=5, lr=0.01):
    """The repaired script: each repair is marked `fix`."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, accuracies = [], []
    for epoch in range(epochs):
        model.train()  # fix (evaluation): the validation below leaves the model in eval mode
        total = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            logits = model(x)  # fix (loss): cross_entropy applies log_softmax itself: give it logits
            loss = F.cross_entropy(logits, y)  # fix (dtype): class indices stay int64
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(train_loader))
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x).argmax(dim=1) == y).sum().item()
        accuracies.append(correct / len(val_loader.dataset))
    return losses, accuracies
### END SOLUTION


# %% role="test" grade_id="test-classifier-sanity" points=1
with checks.seeded(0):
    _x = torch.randn(64, 2, device=checks.DEVICE)
    _y = (_x[:, 0] > 0).long()
    _model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)).to(checks.DEVICE)
    _loader = DataLoader(TensorDataset(_x, _y), batch_size=16)
    try:
        _out = train_classifier(_model, _loader, _loader, epochs=1)
    except RuntimeError as _err:
        checks.expect(False, f"train_classifier raised RuntimeError: {_err}. Read the message: which argument of "
                             "which function has the wrong dtype, and what dtype do class indices have (05)?")
checks.expect(type(_out) is tuple and len(_out) == 2 and all(type(_l) is list and len(_l) == 1 for _l in _out),
              f"train_classifier(..., epochs=1) should return (losses, accuracies), two lists of one float each; it "
              f"returned {checks.describe(_out)}.")
print("losses:", _out[0], "accuracies:", _out[1])

# %% role="test" grade_id="test-classifier" points=3
# Hidden tests train a network with dropout on fresh, well-separated classes, watch the mode and the loop,
# and check the loss and the validation accuracy.
### BEGIN HIDDEN TESTS
with checks.seeded(31):
    _classes = 4
    _centres = torch.tensor([[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]], device=checks.DEVICE)
    _yt = torch.randint(0, _classes, (320,), device=checks.DEVICE)
    _xt = _centres[_yt] + 0.6 * torch.randn(320, 2, device=checks.DEVICE)
    _yv = torch.randint(0, _classes, (80,), device=checks.DEVICE)
    _xv = _centres[_yv] + 0.6 * torch.randn(80, 2, device=checks.DEVICE)
    _model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, _classes)).to(checks.DEVICE)
    _train = DataLoader(TensorDataset(_xt, _yt), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
    _val = DataLoader(TensorDataset(_xv, _yv), batch_size=32)
_modes = []
_hook = _model[2].register_forward_pre_hook(lambda _m, _inp: _modes.append((_m.training, torch.is_grad_enabled())))
try:
    with checks.seeded(31), checks.TrainingSpy(_model) as _spy:
        _losses, _accs = train_classifier(_model, _train, _val, epochs=5, lr=0.01)
finally:
    _hook.remove()
checks.expect(type(_losses) is list and type(_accs) is list and len(_losses) == len(_accs) == 5
              and all(type(_v) is float for _v in _losses + _accs),
              f"train_classifier(..., epochs=5) should return two lists of 5 floats; it returned "
              f"{checks.describe(_losses)} and {checks.describe(_accs)}.")
checks.expect(all(_train_mode for _train_mode, _grad in _modes if _grad),
              "Some training forward passes ran with the model in eval mode (dropout off): the validation at the "
              "end of each epoch switches the model to eval mode, and nothing switches it back. Call model.train() "
              "at the start of every epoch.")
_spy.check_loop(steps=5 * len(_train), name="`train_classifier`")
_floor = float(np.log(1 + (_classes - 1) / np.e))
checks.expect(_losses[-1] < 0.3,
              f"The mean training loss of the last epoch is {_losses[-1]:.3f}; on classes this well separated it "
              "should fall below 0.3."
              + (f" It never went below {_floor:.3f}, the lowest value cross_entropy can reach on {_classes} classes "
                 "when its input is probabilities in [0, 1] instead of logits: softmax before cross_entropy squashes "
                 "the scores, and cross_entropy applies log_softmax itself. Give it the logits."
                 if min(_losses) >= _floor - 1e-3 else " Check the loss and the loop."))
checks.expect(_accs[-1] >= 0.9,
              f"The validation accuracy after 5 epochs is {_accs[-1]:.1%}; on these classes it should be at least 90%.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-evaluate"
# ### Exercise 9 · Script C: an evaluation function (5 bugs)
#
# `evaluate(model, loader)` measures a classifier on every batch `(x, y)` of `loader`: it
# returns two Python floats, the mean cross-entropy **per example** and the accuracy (the
# fraction of examples whose highest logit is the right class). Evaluation is a measurement:
# it runs the model as it will be used (dropout off, batch-norm statistics frozen), builds no
# graph, changes nothing in the model, and leaves it in the mode it found it in (07).
#
# Symptoms: it crashes at the first batch. Once that is fixed, two runs on the same data
# disagree, the loss changes with the batch size, and the accuracy prints as a tensor.
#
# <details><summary>Hint 1</summary>
#
# `logits` is `(batch, classes)`: along which dimension lie the scores of one example?
# </details>
#
# <details><summary>Hint 2</summary>
#
# When the last batch is smaller than the others, is the mean of the batches' mean losses
# the mean over the examples? `F.cross_entropy(..., reduction="sum")` adds instead of
# averaging.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Remember `model.training` before switching to `eval()`, and give it back with
# `model.train(was_training)` at the end.
# </details>

# %% role="answer" grade_id="script-evaluate"
def evaluate(model, loader):
    total_loss, correct = 0.0, 0
    for x, y in loader:
        logits = model(x)
        total_loss += F.cross_entropy(logits, y).item()
        correct += (logits.argmax(dim=0) == y).sum()
    return total_loss / len(loader), correct / len(loader.dataset)


### BEGIN SOLUTION
def evaluate(model, loader):
    """The repaired script: each repair is marked `fix`."""
    was_training = model.training
    model.eval()  # fix (evaluation): dropout off, batch-norm statistics used, not updated
    total_loss, correct = 0.0, 0
    with torch.no_grad():  # fix (gradient): a measurement builds no graph
        for x, y in loader:
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()  # fix (data): sum per example
            correct += (logits.argmax(dim=1) == y).sum().item()  # fix (shape, type): classes on dim 1; a number
    model.train(was_training)  # fix (evaluation): give back the mode the model came in
    return total_loss / len(loader.dataset), correct / len(loader.dataset)
### END SOLUTION


# %% role="test" grade_id="test-evaluate-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 3)).to(checks.DEVICE)
    _x, _y = torch.randn(20, 4, device=checks.DEVICE), torch.randint(0, 3, (20,), device=checks.DEVICE)
    try:
        _out = evaluate(_model, DataLoader(TensorDataset(_x, _y), batch_size=8))
    except RuntimeError as _err:
        checks.expect(False, f"evaluate raised RuntimeError: {_err}. The predictions compared with y need one entry "
                             "per example: logits are (batch, classes), so each example's class is the argmax over "
                             "the classes' dimension.")
checks.expect(type(_out) is tuple and len(_out) == 2 and all(type(_v) is float for _v in _out),
              f"evaluate should return (mean loss, accuracy), two Python floats; it returned {checks.describe(_out)}."
              " A sum of comparisons is a tensor: .item() turns it into a number.")
print(f"loss {_out[0]:.3f}, accuracy {_out[1]:.1%}")

# %% role="test" grade_id="test-evaluate" points=4
# Hidden tests evaluate a network with batch norm and dropout, left in training mode and then in eval mode,
# on data whose last batch is short: mode and gradients during the forward passes, the model's state
# afterwards, and the two numbers against a reference.
### BEGIN HIDDEN TESTS
with checks.seeded(41):
    _model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                           nn.Linear(16, 3)).to(checks.DEVICE)
    _model.train()
    for _ in range(3):  # give batch norm running statistics of its own
        _model(torch.randn(32, 6, device=checks.DEVICE) * 2 + 1)
    _x, _y = torch.randn(50, 6, device=checks.DEVICE) * 2 + 1, torch.randint(0, 3, (50,), device=checks.DEVICE)
    _loader = DataLoader(TensorDataset(_x, _y), batch_size=16)
    _model.eval()
    with torch.no_grad():
        _logits = _model(_x)
    _ref_loss = F.cross_entropy(_logits, _y).item()
    _ref_acc = (_logits.argmax(dim=1) == _y).double().mean().item()
for _start_training in (True, False):
    _model.train(_start_training)
    _seen = []
    _hook = _model.register_forward_pre_hook(lambda _m, _inp: _seen.append((_m[3].training, torch.is_grad_enabled())))
    _before = checks.module_state(_model)
    try:
        with checks.seeded(42):
            _out = evaluate(_model, _loader)
    except RuntimeError as _err:
        checks.expect(False, f"evaluate raised RuntimeError: {_err}. The predictions compared with y need one entry "
                             "per example: logits are (batch, classes), so take the argmax over dim 1.")
    finally:
        _hook.remove()
    _mode = "training" if _start_training else "eval"
    checks.expect(type(_out) is tuple and len(_out) == 2 and all(type(_v) is float for _v in _out),
                  f"evaluate should return two Python floats; it returned {checks.describe(_out)}. A sum of "
                  "comparisons is a tensor: .item() turns it into a number.")
    checks.expect(len(_seen) > 0 and not any(_t for _t, _g in _seen),
                  f"evaluate ran the model in training mode (handed a model in {_mode} mode): dropout was active and "
                  "batch norm used the batch's statistics and updated its running ones. Call model.eval() first.")
    checks.expect(not any(_g for _t, _g in _seen),
                  "evaluate ran the model with gradient tracking on, building a graph that nothing uses. Wrap the "
                  "loop in torch.no_grad() (or torch.inference_mode()).")
    _changed = checks.changed_state(_before, checks.module_state(_model))
    checks.expect(not _changed,
                  f"evaluate changed the model it measured (handed a model in {_mode} mode): {', '.join(_changed[:4])}. "
                  "Evaluation must leave the model as it found it: remember model.training and restore it with "
                  "model.train(was_training) at the end.")
    checks.expect_close(_out[1], _ref_acc, "The accuracy evaluate returned", atol=1e-6,
                        why="the accuracy is the number of right predictions over the number of examples, "
                            "len(loader.dataset), with the model in eval mode.")
    checks.expect_close(_out[0], _ref_loss, "The mean loss evaluate returned", rtol=1e-4, atol=1e-5,
                        why="the loader's last batch holds 2 examples, the others 16. The mean of the batches' "
                            "mean losses gives those 2 examples as much weight as 16 others: add up the loss per "
                            "example (reduction='sum') and divide by the number of examples.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-pool"
# ### Exercise 10 · Script D: a model for padded sequences (3 bugs)
#
# `MeanPoolClassifier(vocab_size, dim, n_classes)` classifies sequences of token ids. A batch
# of sequences of different lengths arrives padded (06, 10): `tokens` is `(N, T)` `int64`,
# where row `i` holds a real sequence of `lengths[i]` tokens followed by padding (any ids),
# and `lengths` is `(N,)` `int64` on the same device. `forward(tokens, lengths)` embeds the
# tokens, averages the embeddings of **the real tokens only**, and returns class logits
# `(N, n_classes)`. The padding must make no difference: the same sequence padded to any
# length gives the same logits.
#
# Symptoms: it raises for most batch sizes, and works when the batch size happens to equal
# the padded length. On a GPU it raises whatever the sizes.
#
# <details><summary>Hint 1</summary>
#
# Work out the shape of `torch.arange(T)[None, :] < lengths` by the broadcasting rules. Which shape
# should the mask have?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Run the model on the meta device: `model.to("meta")`, and `tokens` and `lengths` on `meta`
# too. Where is a tensor created without saying where?
# </details>
#
# <details><summary>Hint 3</summary>
#
# A mean over the real tokens divides by the number of real tokens.
# </details>

# %% role="answer" grade_id="script-pool"
class MeanPoolClassifier(nn.Module):
    def __init__(self, vocab_size, dim, n_classes):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, tokens, lengths):
        emb = self.embed(tokens)
        mask = torch.arange(tokens.shape[1])[None, :] < lengths
        summed = (emb * mask.unsqueeze(2)).sum(dim=1)
        return self.head(summed / tokens.shape[1])


### BEGIN SOLUTION
class MeanPoolClassifier(nn.Module):
    """The repaired script: each repair is marked `fix`."""

    def __init__(self, vocab_size, dim, n_classes):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, tokens, lengths):
        emb = self.embed(tokens)
        positions = torch.arange(tokens.shape[1], device=tokens.device)  # fix (device): made where tokens are
        mask = positions[None, :] < lengths[:, None]  # fix (shape): (1, T) against (N, 1) gives (N, T)
        summed = (emb * mask.unsqueeze(2)).sum(dim=1)
        return self.head(summed / lengths[:, None])  # fix (data): the mean over the real tokens, not over T
### END SOLUTION


# %% role="test" grade_id="test-pool-sanity" points=1
with checks.seeded(0):
    _model = MeanPoolClassifier(20, 8, 3).to(checks.DEVICE)
    _tokens = torch.randint(0, 20, (5, 7), device=checks.DEVICE)
    _lengths = torch.tensor([7, 3, 5, 1, 2], device=checks.DEVICE)
    try:
        _out = _model(_tokens, _lengths)
    except RuntimeError as _err:
        checks.expect(False, f"MeanPoolClassifier raised RuntimeError on 5 sequences padded to 7 tokens: {_err}. "
                             "Work out the shape of each intermediate: the mask should be (N, T).")
checks.expect_tensor(_out, "The logits for 5 sequences padded to 7 tokens", shape=(5, 3), dtype=torch.float32)
print("logits:", tuple(_out.shape))

# %% role="test" grade_id="test-pool" points=3
# Hidden tests compare the logits with a reference for several batch sizes and padded lengths (batch size
# equal to the length included), add extra padding, and run the model on the meta device.
### BEGIN HIDDEN TESTS
with checks.seeded(51):
    _model = MeanPoolClassifier(30, 6, 4).to(checks.DEVICE)
for _n, _len in [(6, 9), (5, 5), (1, 4)]:
    with checks.seeded(_n):
        _tokens = torch.randint(0, 30, (_n, _len), device=checks.DEVICE)
        _lengths = torch.randint(1, _len + 1, (_n,), device=checks.DEVICE)
        _lengths[0] = _len
    try:
        _out = _model(_tokens, _lengths)
    except RuntimeError as _err:
        checks.expect(False, f"MeanPoolClassifier raised RuntimeError on {_n} sequences padded to {_len} tokens: "
                             f"{_err}. The mask must be (N, T): compare positions of shape (1, T) with lengths of "
                             "shape (N, 1), which broadcast to (N, T).")
    with torch.no_grad():
        _ref = torch.stack([_model.embed(_tokens[_i, :_lengths[_i]]).mean(dim=0) for _i in range(_n)])
        _ref = _model.head(_ref)
    checks.expect_tensor(_out, f"The logits for {_n} sequences padded to {_len} tokens", shape=(_n, 4))
    checks.expect_close(_out, _ref, f"The logits for {_n} sequences padded to {_len} tokens", rtol=1e-4, atol=1e-5,
                        why="each sequence's embeddings are averaged over its own real tokens: the mask keeps "
                            "positions below lengths[i] in row i, and the sum is divided by lengths[i], not by the "
                            "padded length T." + (" With the batch size equal to T, (1, T) < (N,) "
                                                  "broadcasts without error, to the wrong mask." if _n == _len else ""))
    _padded = torch.cat([_tokens, torch.randint(0, 30, (_n, 3), device=checks.DEVICE)], dim=1)
    checks.expect_close(_model(_padded, _lengths), _out, "The logits after 3 more padding tokens", rtol=1e-4,
                        atol=1e-5, why="padding is not data: the same sequences padded further must give the same "
                                       "logits. Average over the real tokens only.")
_meta = MeanPoolClassifier(30, 6, 4).to("meta")
try:
    _out = _meta(torch.zeros(3, 5, dtype=torch.int64, device="meta"),
                 torch.zeros(3, dtype=torch.int64, device="meta"))
except (RuntimeError, NotImplementedError) as _err:
    checks.expect(False, f"MeanPoolClassifier fails when the model and its inputs are on the meta device: {_err}. "
                         "Every tensor forward creates must be made on the inputs' device (device=tokens.device): "
                         "torch.arange(T) alone is made on the CPU, and on a GPU the comparison with lengths fails.")
checks.expect(_out.device.type == "meta" and tuple(_out.shape) == (3, 4),
              "MeanPoolClassifier's output on the meta device is not a (3, 4) meta tensor: forward should follow the "
              "device of its inputs.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-fit"
# ### Exercise 11 · Script E: training on a device, with clipping (3 bugs)
#
# `fit(model, loader, device, epochs=3, lr=0.1, max_norm=1.0)` trains a classifier on
# `device` (a string or a `torch.device`), whatever device the model and the batches arrive
# on: it moves the model there, and every batch `(x, y)` as it comes (the loader's tensors
# are on the CPU). It uses cross-entropy, SGD with momentum, and gradient clipping: the
# gradients each update applies have a total L2 norm of at most `max_norm`. It returns the
# model.
#
# Symptoms: on this computer's CPU it runs. On a GPU it raises at the first batch; and on any
# device, the clipping never limits an update.
#
# <details><summary>Hint 1</summary>
#
# Call it with `device="meta"` and a model and loader on the CPU, and read the errors.
# Everything an operation combines must be on one device: the parameters, the inputs and the
# targets.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `clip_grad_norm_` rescales the gradients that are in `.grad` when it runs. Which gradients
# are there at that moment?
# </details>

# %% role="answer" grade_id="script-fit"
def fit(model, loader, device, epochs=3, lr=0.1, max_norm=1.0):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            x = x.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            loss.backward()
            optimizer.step()
    return model


### BEGIN SOLUTION
def fit(model, loader, device, epochs=3, lr=0.1, max_norm=1.0):
    """The repaired script: each repair is marked `fix`."""
    model.to(device)  # fix (device): the parameters go where the batches go
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)  # fix (device): the targets too
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)  # fix (gradient): clip after backward
            optimizer.step()
    return model
### END SOLUTION


# %% role="test" grade_id="test-fit-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    _loader = DataLoader(TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,))), batch_size=8)
try:
    _out = fit(_model, _loader, "meta", epochs=1)
except (RuntimeError, NotImplementedError) as _err:
    checks.expect(False, f"fit(model, loader, device='meta') raised: {_err}. On a GPU this is the error you would "
                         "get: the model, the inputs and the targets must all be moved to `device`.")
checks.expect(all(_p.device.type == "meta" for _p in _model.parameters()),
              "After fit(model, loader, device='meta') the model's parameters are not on the meta device: move the "
              "model to `device` (model.to(device)).")
print("fit ran on the meta device")

# %% role="test" grade_id="test-fit" points=3
# Hidden tests run fit on the meta device from a CPU model and loader, then on the grader's device with a
# small max_norm: the loop, and the norm of the gradients at every optimizer.step().
### BEGIN HIDDEN TESTS
with checks.seeded(61):
    _model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 4))
    _loader = DataLoader(TensorDataset(torch.randn(40, 5), torch.randint(0, 4, (40,))), batch_size=10)
try:
    _out = fit(_model, _loader, torch.device("meta"), epochs=1)
except (RuntimeError, NotImplementedError) as _err:
    checks.expect(False, f"fit(model, loader, device=torch.device('meta')), with the model and the batches on the "
                         f"CPU, raised: {_err}. fit must move the model, and each batch's inputs and targets, to "
                         "`device`; on a GPU grader this is the error you would get.")
checks.expect(all(_p.device.type == "meta" for _p in _model.parameters()),
              "After fit(..., device='meta') the model's parameters are not on the meta device: model.to(device).")
with checks.seeded(62):
    _model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 4))
    _xs = torch.randn(60, 5) * 3
    _loader = DataLoader(TensorDataset(_xs, (_xs[:, 0] > 0).long() + (_xs[:, 1] > 0).long()), batch_size=12)
_norms = []


def _record_norm(_opt, _args, _kwargs):
    _grads = [_p.grad for _g in _opt.param_groups for _p in _g["params"] if _p.grad is not None]
    _norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(_g) for _g in _grads])).item()
                  if _grads else 0.0)


from torch.optim.optimizer import register_optimizer_step_pre_hook as _register_step_pre_hook

_handle = _register_step_pre_hook(_record_norm)
try:
    with checks.seeded(63), checks.TrainingSpy(_model) as _spy:
        _out = fit(_model, _loader, checks.DEVICE, epochs=2, lr=0.05, max_norm=0.05)
finally:
    _handle.remove()
_spy.check_loop(steps=2 * len(_loader), name="`fit`")
checks.expect(all(_p.device.type == torch.device(checks.DEVICE).type for _p in _model.parameters()),
              "After fit the model's parameters are not on the device fit was given.")
checks.expect(len(_norms) == 2 * len(_loader) and max(_norms) <= 0.05 * 1.001 + 1e-6,
              f"At some optimizer.step() the gradients had a total norm of {max(_norms, default=0):.3f}, above "
              "max_norm = 0.05: the clipping did not limit the update. clip_grad_norm_ rescales the gradients that "
              "are in .grad when it runs, so it belongs after loss.backward() and before optimizer.step().")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-loaders"
# ### Exercise 12 · Script F: from NumPy arrays to loaders (4 bugs)
#
# `make_loaders(features, labels, batch_size=32, val_fraction=0.2, seed=0)` turns NumPy arrays,
# `features` `(N, D)` and integer class `labels` `(N,)` (as scikit-learn gives them), into a
# training and a validation `DataLoader` of `(float32 features, int64 labels)` batches. It
# shuffles the examples once with `seed`, puts the first `int(N * val_fraction)` of the
# shuffled examples in the validation set and the rest in the training set, so that every
# example is in exactly one of them. Training batches come in a new random order every epoch;
# validation batches in the same order every time (06).
#
# Symptoms: the loss refuses the labels. Once that is fixed, a model trained on these loaders
# learns nothing that holds on the validation set, and every epoch sees the same batches.
#
# <details><summary>Hint 1</summary>
#
# After the shuffle, is `y[i]` still the label of `x[i]`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Count the examples in the two sets and add them up. Then compare two passes over each
# loader.
# </details>

# %% role="answer" grade_id="script-loaders"
def make_loaders(features, labels, batch_size=32, val_fraction=0.2, seed=0):
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(labels).float()
    generator = torch.Generator().manual_seed(seed)
    x = x[torch.randperm(len(x), generator=generator)]
    y = y[torch.randperm(len(y), generator=generator)]
    n_val = int(len(x) * val_fraction)
    train_set = TensorDataset(x[n_val:], y[n_val:])
    val_set = TensorDataset(x[:n_val + 1], y[:n_val + 1])
    train_loader = DataLoader(train_set, batch_size=batch_size)
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=True)
    return train_loader, val_loader


### BEGIN SOLUTION
def make_loaders(features, labels, batch_size=32, val_fraction=0.2, seed=0):
    """The repaired script: each repair is marked `fix`."""
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(labels).long()  # fix (dtype): class indices are int64
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)  # fix (data): one order for features and labels
    x, y = x[order], y[order]
    n_val = int(len(x) * val_fraction)
    train_set = TensorDataset(x[n_val:], y[n_val:])
    val_set = TensorDataset(x[:n_val], y[:n_val])  # fix (data): no example in both sets
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,  # fix (data): shuffle training
                              generator=torch.Generator().manual_seed(seed))
    val_loader = DataLoader(val_set, batch_size=batch_size)  # fix (data): validation in a fixed order
    return train_loader, val_loader
### END SOLUTION


# %% role="test" grade_id="test-loaders-sanity" points=1
_rng = np.random.default_rng(0)
_train_loader, _val_loader = make_loaders(_rng.normal(size=(50, 3)), _rng.integers(0, 4, size=50), batch_size=8)
_xb, _yb = next(iter(_train_loader))
checks.expect_tensor(_xb, "A training batch's features", shape=(8, 3), dtype=torch.float32)
checks.expect_tensor(_yb, "A training batch's labels", shape=(8,), dtype=torch.int64,
                     why="cross_entropy takes class indices as int64; float labels are refused.")
print("a training batch:", tuple(_xb.shape), _xb.dtype, "features and", tuple(_yb.shape), _yb.dtype, "labels")

# %% role="test" grade_id="test-loaders" points=3
# Hidden tests build loaders from arrays whose first feature names each example: every (features, label)
# pair must survive, the split must cover each example exactly once, and the orders must be right.
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(71)
_n, _frac = 103, 0.25
_features = np.concatenate([np.arange(_n, dtype=np.float64)[:, None], _rng.normal(size=(_n, 3))], axis=1)
_labels = (np.arange(_n) * 7) % 5
_train_loader, _val_loader = make_loaders(_features, _labels, batch_size=16, val_fraction=_frac, seed=3)


def _pass(_loader):
    _xs, _ys = zip(*[(_xb, _yb) for _xb, _yb in _loader])
    return torch.cat(_xs), torch.cat(_ys)


_xt, _yt = _pass(_train_loader)
_xv, _yv = _pass(_val_loader)
checks.expect(_yt.dtype == torch.int64 and _yv.dtype == torch.int64,
              f"The loaders' labels are {_yt.dtype}: class indices for cross_entropy must be int64 (.long()).")
for _what, _xs, _ys in (("training", _xt, _yt), ("validation", _xv, _yv)):
    _ids = _xs[:, 0].round().long()
    checks.expect(torch.equal(_xs.double(), torch.from_numpy(_features)[_ids].float().double()),
                  f"Some {_what} feature rows are not rows of the input array.")
    checks.expect(torch.equal(_ys.cpu(), torch.from_numpy(_labels)[_ids.cpu()].long()),
                  f"In the {_what} loader, examples come with labels that are not theirs: the features and the "
                  "labels were shuffled with two different permutations. Draw one order and index both with it.")
_train_ids, _val_ids = set(_xt[:, 0].round().long().tolist()), set(_xv[:, 0].round().long().tolist())
checks.expect(not (_train_ids & _val_ids),
              f"{len(_train_ids & _val_ids)} example(s) are in both the training and the validation set: the "
              "validation score then rewards memorising. The two slices of the shuffled data must not overlap.")
checks.expect(len(_xv) == int(_n * _frac) and len(_val_ids) == len(_xv),
              f"The validation loader holds {len(_xv)} examples for N = {_n} and val_fraction = {_frac}; it should "
              f"hold int(N * val_fraction) = {int(_n * _frac)}, each once.")
checks.expect(_val_ids != set(range(int(_n * _frac))),
              "The validation set holds the first examples of the arrays, in their stored order: the data was not "
              "shuffled before the split. Data sets are often sorted (by class, by date), and then the two sets come "
              "from different parts of it: draw a random order with the seeded generator first.")
_again = {int(_v) for _v in _pass(make_loaders(_features, _labels, batch_size=16, val_fraction=_frac, seed=3)[1])[0][:, 0].round().tolist()}
_other = {int(_v) for _v in _pass(make_loaders(_features, _labels, batch_size=16, val_fraction=_frac, seed=4)[1])[0][:, 0].round().tolist()}
checks.expect(_again == _val_ids and _other != _val_ids,
              "The split does not follow `seed`: the same seed must give the same validation set, and another seed "
              "another one. Draw the order with a generator seeded with `seed`.")
checks.expect(_train_ids | _val_ids == set(range(_n)) and len(_xt) == _n - int(_n * _frac),
              "The training and validation sets together should hold every example exactly once.")
_xv2, _ = _pass(_val_loader)
checks.expect(torch.equal(_xv, _xv2),
              "Two passes over the validation loader give different orders: do not shuffle validation data, so that "
              "the measurement is repeatable.")
_xt2, _ = _pass(_train_loader)
checks.expect(not torch.equal(_xt, _xt2),
              "Two passes over the training loader give the same order: shuffle the training data (shuffle=True), "
              "so that every epoch sees its batches in a new order.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - Many mistakes run: broadcasting `(N, 1)` against `(N,)`, probabilities into
#   `cross_entropy`, a model left in eval mode. Know which ones raise, and look for the others.
# - Shape assertions that check the number of dimensions, bind names across tensors, and
#   `raise` (not `assert`) with the actual shape in the message.
# - Overfitting one batch proves that a model and its loop can learn; a loss that stalls at a
#   floor or never moves points at the model, not the data.
# - Per-layer gradient norms, read without changing them; anomaly detection names the backward
#   function that made the first NaN.
# - In the clinic: zero the gradients, match shapes before the loss, record floats, give
#   `cross_entropy` logits and `int64` targets, put the model back in training mode after a
#   validation, evaluate in eval mode under `no_grad` and weight by examples, create tensors
#   on the device of the inputs, move the model *and* every tensor of the batch, clip after
#   backward, shuffle features and labels together, keep the splits apart, shuffle training
#   data only.
#
# That is the end of the course's clinic. The habits travel: when the next model misbehaves,
# make the quiet bug loud first.
