# %% [markdown] role="prose" grade_id="title"
# # 03 · Automatic differentiation
#
# **Time:** about 3 h of work (5,300 words to read, 11 exercises). Run top to bottom, the
# finished notebook takes under a second.
#
# In 01 you watched autograd record a graph while your code ran and walk it once with
# `backward()`. This notebook opens the machine up: which tensors receive gradients, how the
# chain rule runs over the record, why gradients pile up, how to switch recording off and
# back on, what in-place operations do to a recorded graph, how to differentiate outputs
# that are not a single number, how to watch gradients in flight, and how to add operations
# of your own. Everything happens with raw tensors: `nn.Module` and the optimisers of the
# next notebooks are built from exactly these pieces.
#
# **By the end of this notebook you will be able to:**
# - tell leaves from intermediate results, and predict which tensors get a `.grad` and which
#   `grad_fn` a result carries;
# - derive a gradient by hand with the chain rule, and confirm it with `torch.autograd.grad`;
# - let gradients accumulate on purpose, and clear them at the right moment;
# - choose between `no_grad`, `enable_grad`, `inference_mode` and `detach`, and explain why
#   `.data` and `.item()` cut the graph without a word;
# - train a linear regression with nothing but tensors and autograd;
# - read the version counter, and write code whose in-place operations backward can trust;
# - differentiate non-scalar outputs with vector-Jacobian products, and build a Jacobian;
# - attach hooks that report the gradients flowing through a graph;
# - write your own `torch.autograd.Function` and prove its backward with `gradcheck`.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first.

# %% role="locked" grade_id="setup"
import math

import torch

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-leaves"
# ## 1 · Leaves, `requires_grad` and `grad_fn`
#
# Autograd records only where it is asked to. The flag `requires_grad` says "I want gradients
# for this tensor", and it spreads: any operation with at least one input that requires grad
# produces a result that requires grad, with a `grad_fn` pointing at the node for that
# operation. So a graph holds two kinds of tensors:
#
# - **leaves**: tensors that no recorded operation produced. Everything you create yourself
#   (data, targets, parameters) is a leaf, *whether or not it requires grad*; `t.is_leaf`
#   tells you. A leaf has no `grad_fn`.
# - **intermediate results**: the outputs of recorded operations. Each has a `grad_fn`, a node
#   whose class is named after the operation with `Backward0` appended (`MulBackward0`,
#   `ExpBackward0`, `SumBackward0`, ...; a second form of the same operation gets `Backward1`,
#   as `x.sum(dim=0)` gets `SumBackward1`). It belongs to the *last* operation that made the
#   tensor.
#
# `backward()` stores gradients only in leaves that require grad, in their `.grad`.
# Intermediate results pass gradients along and keep none (unless you call `t.retain_grad()`
# before the backward pass): storing every intermediate gradient would double the memory.
#
# **The pitfall.** A tensor is a leaf only if it was *born* requiring grad, with nothing
# recorded afterwards. `torch.randn(3, requires_grad=True) * 0.01` is the output of a recorded
# multiplication: an intermediate whose `.grad` stays `None` forever, while the real leaf, an
# unnamed tensor you cannot reach, quietly collects the gradient. The same happens with
# `.to(device)` or `.double()` when they copy. Scale or move first, then ask for gradients:
# `(torch.randn(3) * 0.01).requires_grad_()`, or `torch.randn(3, device=d, requires_grad=True)`.
#
# ### Exercise 1 · Predict, then verify
#
# Read this code **without running it**, and predict what PyTorch reports. Fill in the
# dictionary `predictions` in the answer cell; the hidden test runs the code and compares.
#
# ```python
# a = torch.tensor([1.0, 2.0], requires_grad=True)
# b = torch.tensor([3.0, 4.0])
# w = torch.tensor([0.5, -1.0], requires_grad=True) * 2
# c = a * b + w
# loss = c.sum()
# loss.backward()
# ```
#
# <details><summary>Hint 1</summary>
#
# A leaf is any tensor that no recorded operation produced. Was `b` produced by one? Was `w`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# `c.grad_fn` belongs to the last operation that produced `c`. For `a.grad`, differentiate
# `sum(a * b + w)` with respect to each entry of `a`. For `w.grad`: only leaves keep one.
# </details>

# %% role="answer" grade_id="leaves"
predictions = {
    "b.is_leaf": None,   # True or False
    "w.is_leaf": None,   # True or False
    "c.grad_fn": None,   # the class name of c.grad_fn, a string such as "MulBackward0"
    "a.grad": None,      # a list of two floats
    "w.grad": None,      # None, or a list of two floats?
}
### BEGIN SOLUTION
predictions = {
    "b.is_leaf": True,
    "w.is_leaf": False,
    "c.grad_fn": "AddBackward0",
    "a.grad": [3.0, 4.0],
    "w.grad": None,
}
### END SOLUTION

# %% role="test" grade_id="test-leaves" points=3
# Hidden tests run the code above and compare it with your predictions.
_keys = {"b.is_leaf", "w.is_leaf", "c.grad_fn", "a.grad", "w.grad"}
checks.expect(isinstance(predictions, dict) and set(predictions) == _keys,
              "Your predictions should be a dict with exactly the keys " + ", ".join(sorted(_keys)) + ".")
### BEGIN HIDDEN TESTS
import warnings as _warnings

_a = torch.tensor([1.0, 2.0], requires_grad=True)
_b = torch.tensor([3.0, 4.0])
_w = torch.tensor([0.5, -1.0], requires_grad=True) * 2
_c = _a * _b + _w
_loss = _c.sum()
_loss.backward()
with _warnings.catch_warnings():
    _warnings.simplefilter("ignore")  # reading .grad of a non-leaf warns
    _w_grad = _w.grad
checks.expect(predictions["b.is_leaf"] is _b.is_leaf,
              "Your prediction for b.is_leaf is not what PyTorch reports. A leaf is any tensor that "
              "no recorded operation produced, whether or not it requires grad.")
checks.expect(predictions["w.is_leaf"] is _w.is_leaf,
              "Your prediction for w.is_leaf is not what PyTorch reports. Look at the whole line that "
              "makes w: requires_grad=True is set on the tensor torch.tensor creates, and then an "
              "operation is recorded on it. A leaf is what no recorded operation produced.")
checks.expect(type(predictions["c.grad_fn"]) is str,
              "Your predictions['c.grad_fn'] should be a string: the class name of the node, like 'MulBackward0'.")
checks.expect(predictions["c.grad_fn"] == type(_c.grad_fn).__name__,
              "Your prediction for c.grad_fn is not the node PyTorch attaches. grad_fn belongs to the "
              "last operation that produced the tensor, and its name is that operation followed by "
              "'Backward0'.")
_ag = predictions["a.grad"]
checks.expect(type(_ag) in (list, tuple) and len(_ag) == 2 and all(type(v) in (int, float) for v in _ag),
              "Your predictions['a.grad'] should be a list of two numbers.")
checks.expect(bool(torch.allclose(torch.tensor([float(v) for v in _ag], dtype=torch.float64), _a.grad.double(),
                                  rtol=0, atol=1e-6)),
              "Your prediction for a.grad is not what PyTorch computes. Differentiate loss = sum(a * b + w) "
              "with respect to a[0] and a[1] separately: b is a constant here.")
checks.expect(_w_grad is None and predictions["w.grad"] is None,
              "Your prediction for w.grad is not what PyTorch reports. backward() stores a gradient "
              "only in leaves that require grad; every other tensor passes the gradient on and keeps "
              "None in .grad.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-chain"
# ## 2 · The chain rule, run backwards
#
# A computation is a chain of small steps, and each step knows its own local derivative: the
# node for `exp` knows that the derivative of `exp(u)` is `exp(u)`, the node for a sum knows
# that every input counts once. The chain rule says the derivative of the whole is the
# product of the local derivatives along the chain. Autograd evaluates that product **from
# the output back to the inputs**: it starts with the gradient 1 at the loss, and each node
# turns "the gradient with respect to my output" into "the gradient with respect to each of
# my inputs" and hands it on. Where a tensor feeds several operations, the gradients coming
# back along each use are **added**: that is the chain rule with several paths.
#
# Why backwards? Training has one scalar (the loss) and many inputs (the parameters). Going
# backwards, one pass gives the gradient of that one scalar with respect to *every* input, at
# a cost comparable to the forward pass. Going forwards would take one pass per parameter.
#
# Autograd has two entry points to the same machinery:
# - `loss.backward()` adds the gradients into the `.grad` of every leaf that requires grad;
# - `torch.autograd.grad(loss, [w, b])` returns them as a tuple and touches no `.grad` at all.
#   It is the tool of choice when a gradient is a *value* you want to compute, say inside a
#   helper or a test, without side effects on anyone's tensors.
#
# ### Exercise 2 · By hand, then by autograd
#
# A linear model predicts `p = X @ w + b` for `X` of shape `(N, D)`, `w` of shape `(D,)` and a
# 0-d `b`; its loss is the mean squared error `L = mean((p - y) ** 2)` against `y` of shape
# `(N,)`.
#
# 1. `mse_grads(X, y, w, b)` returns the pair `(dL/dw, dL/db)`, shaped like `w` and `b`,
#    **derived by hand**: tensor formulas only, no autograd. (The hidden test runs it where
#    autograd cannot record anything; section 4 explains how.)
# 2. `autograd_mse_grads(X, y, w, b)` returns the same pair computed by autograd. The caller's
#    tensors must come out exactly as they went in: same values, same `requires_grad`, same
#    `.grad`. The returned tensors must not require grad. And it must work wherever it is
#    called: a caller that has switched recording off (inside `with torch.no_grad():`, as an
#    evaluation loop does) gets the same gradients. Section 4 shows the switch that turns
#    recording back on; come back to this then.
#
# <details><summary>Hint 1</summary>
#
# Name the steps: `p = X @ w + b`, `r = p - y`, `L = mean(r ** 2)`. Find `dL/dr` first (a
# vector of N entries), then ask how `r` changes when `w[j]` changes, and when `b` changes.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `b` appears once in every entry of `r`, so `dL/db` collects all the entries of `dL/dr`.
# `dL/dw[j]` collects `dL/dr[i] * X[i, j]` over the rows `i`: a matrix-vector product with
# the transpose of `X`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# For the autograd version, work on `w.detach().requires_grad_(True)`: a new leaf with the
# same values, so the caller's tensor keeps its flags and its `.grad`. Do the same for `b`.
# Put the whole computation, from the new leaves to `torch.autograd.grad`, inside
# `with torch.enable_grad():` so that a caller's `no_grad` does not stop the recording.
# </details>

# %% role="answer" grade_id="mse-grads"
def mse_grads(X, y, w, b):
    """(dL/dw, dL/db) for L = mean((X @ w + b - y) ** 2), derived by hand (no autograd)."""
    ### BEGIN SOLUTION
    r = X @ w + b - y
    dr = 2 * r / r.shape[0]
    return X.T @ dr, dr.sum()
    ### END SOLUTION


# %% role="answer" grade_id="autograd-grads"
def autograd_mse_grads(X, y, w, b):
    """(dL/dw, dL/db) for the same loss, computed by autograd; the caller's tensors are untouched."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        w = w.detach().requires_grad_(True)
        b = b.detach().requires_grad_(True)
        loss = ((X @ w + b - y) ** 2).mean()
        dw, db = torch.autograd.grad(loss, [w, b])
    return dw, db
    ### END SOLUTION


# %% role="test" grade_id="test-grads-sanity" points=1
with checks.seeded(0):
    _X, _y, _w, _b = torch.randn(8, 3), torch.randn(8), torch.randn(3), torch.tensor(0.5)
_dw, _db = mse_grads(_X, _y, _w, _b)
checks.expect_tensor(_dw, "the dL/dw from mse_grads", shape=(3,), why="A gradient has the shape of what it differentiates.")
checks.expect_tensor(_db, "the dL/db from mse_grads", shape=(), why="b is 0-d, so dL/db is 0-d too (a sum, not a vector).")
_aw, _ab = autograd_mse_grads(_X, _y, _w, _b)
checks.expect_tensor(_aw, "the dL/dw from autograd_mse_grads", shape=(3,), requires_grad=False,
                     why="Return plain values: the gradients themselves need no graph of their own.")
checks.expect_tensor(_ab, "the dL/db from autograd_mse_grads", shape=(), requires_grad=False,
                     why="Return plain values: the gradients themselves need no graph of their own.")
checks.expect_close(_dw, _aw, "your dL/dw by hand, compared with autograd's,", rtol=1e-4, atol=1e-5,
                    why="Your hand derivation and autograd disagree: check each step of the chain rule.")
checks.expect_close(_db, _ab, "your dL/db by hand, compared with autograd's,", rtol=1e-4, atol=1e-5,
                    why="Your hand derivation and autograd disagree: check each step of the chain rule.")
print("by hand and by autograd agree:", [round(v, 4) for v in _dw.tolist()], round(_db.item(), 4))

# %% role="test" grade_id="test-mse-grads" points=3
# Hidden tests compare mse_grads with the exact gradient, and run it where autograd records nothing.
### BEGIN HIDDEN TESTS
with checks.seeded(3):
    _X = torch.randn(37, 5, dtype=torch.float64, device=checks.DEVICE)
    _y = torch.randn(37, dtype=torch.float64, device=checks.DEVICE)
    _w = torch.randn(5, dtype=torch.float64, device=checks.DEVICE)
    _b = torch.tensor(-0.7, dtype=torch.float64, device=checks.DEVICE)
_r = _X @ _w + _b - _y
_want_w, _want_b = 2 * _X.T @ _r / 37, 2 * _r.sum() / 37
_dw, _db = mse_grads(_X, _y, _w, _b)
checks.expect_tensor(_dw, "the dL/dw from mse_grads", shape=(5,), device=checks.DEVICE,
                     why="A gradient has the shape of what it differentiates, and lives on its device.")
checks.expect_tensor(_db, "the dL/db from mse_grads", shape=(), device=checks.DEVICE,
                     why="b is 0-d: dL/db adds up the contribution of every row.")
_why = ("Apply the chain rule one step at a time, from L back to w and b: what is dL/dr for "
        "L = mean(r ** 2), and how does each entry of r depend on w and on b? (see Hints 1 and 2)")
checks.expect_close(_dw, _want_w, "the dL/dw from mse_grads", rtol=1e-6, atol=1e-9, why=_why)
checks.expect_close(_db, _want_b, "the dL/db from mse_grads", rtol=1e-6, atol=1e-9, why=_why)
from unittest import mock as _mock


class _Shortcut(Exception):
    pass


def _shortcut(*args, **kwargs):
    raise _Shortcut()


with torch.inference_mode():
    _Xi, _yi, _wi, _bi = _X.clone(), _y.clone(), _w.clone(), _b.clone()
    try:
        with _mock.patch.object(torch.func, "grad", _shortcut), \
             _mock.patch.object(torch.func, "grad_and_value", _shortcut), \
             _mock.patch.object(torch.func, "vjp", _shortcut), \
             _mock.patch.object(torch.func, "jacrev", _shortcut), \
             _mock.patch.object(torch.func, "jacfwd", _shortcut):
            _dw2, _db2 = mse_grads(_Xi, _yi, _wi, _bi)
    except _Shortcut:
        checks.expect(False, "Your mse_grads asks torch.func for the gradient. It must be derived by hand: "
                             "write the gradient as tensor formulas (see Hints 1 and 2), without any "
                             "automatic differentiation.")
    except RuntimeError as _err:
        checks.expect(isinstance(_err, NotImplementedError),
                      "Your mse_grads failed under torch.inference_mode(), where autograd records nothing "
                      f"({str(_err).splitlines()[0][:120]}). It must be derived by hand: write the "
                      "gradient as tensor formulas instead of calling backward() or torch.autograd.grad.")
        raise
checks.expect_close(_dw2, _want_w, "the dL/dw from mse_grads under inference_mode", rtol=1e-6, atol=1e-9, why=_why)
### END HIDDEN TESTS

# %% role="test" grade_id="test-autograd-grads" points=3
# Hidden tests check the values, and the state of the caller's tensors before and after the call.
### BEGIN HIDDEN TESTS
with checks.seeded(4):
    _X = torch.randn(20, 3, device=checks.DEVICE)
    _y = torch.randn(20, device=checks.DEVICE)
    _w = torch.randn(3, device=checks.DEVICE)
    _b = torch.tensor(0.3, device=checks.DEVICE)
_r = _X @ _w + _b - _y
_want_w, _want_b = 2 * _X.T @ _r / 20, 2 * _r.sum() / 20
_before = [t.clone() for t in (_X, _y, _w, _b)]
_dw, _db = autograd_mse_grads(_X, _y, _w, _b)
checks.expect_tensor(_dw, "the dL/dw from autograd_mse_grads", shape=(3,), requires_grad=False,
                     why="Return plain values: the gradients themselves need no graph of their own.")
checks.expect_tensor(_db, "the dL/db from autograd_mse_grads", shape=(), requires_grad=False,
                     why="b is 0-d, so its gradient is 0-d; return it as a plain value, without a graph.")
checks.expect_close(_dw, _want_w, "the dL/dw from autograd_mse_grads", rtol=1e-4, atol=1e-5,
                    why="Differentiate the mean squared error of X @ w + b against y.")
checks.expect_close(_db, _want_b, "the dL/db from autograd_mse_grads", rtol=1e-4, atol=1e-5)
checks.expect(all(torch.equal(t, s) for t, s in zip((_X, _y, _w, _b), _before)),
              "Your autograd_mse_grads changed the values of its inputs. Compute, do not modify.")
checks.expect(not _w.requires_grad and not _b.requires_grad and _w.grad is None and _b.grad is None,
              "After autograd_mse_grads, the caller's w or b requires grad or holds a .grad: the helper "
              "changed the caller's tensors. Differentiate with respect to a new leaf made from their "
              "values (see Hint 3), and use torch.autograd.grad, which returns gradients instead of "
              "storing them.")
# A caller in the middle of training: w is a parameter with a gradient already in .grad.
_p = _w.clone().requires_grad_(True)
_p.grad = torch.ones_like(_p)
_dw, _db = autograd_mse_grads(_X, _y, _p, _b)
checks.expect(_p.is_leaf and _p.requires_grad and torch.equal(_p.grad, torch.ones_like(_p)),
              "Called on a parameter whose .grad already held a gradient, autograd_mse_grads changed "
              "that .grad (or the parameter itself). backward() adds into the caller's .grad; "
              "torch.autograd.grad on a detached copy leaves it alone.")
checks.expect_close(_dw, _want_w, "the dL/dw for a w that requires grad", rtol=1e-4, atol=1e-5,
                    why="The gradient does not depend on whether the caller's w requires grad.")
# A caller that has switched recording off, as an evaluation loop does.
with torch.no_grad():
    try:
        _dw, _db = autograd_mse_grads(_X, _y, _w, _b)
    except RuntimeError as _err:
        if isinstance(_err, NotImplementedError):
            raise
        checks.expect(False, "Called inside torch.no_grad(), your autograd_mse_grads failed "
                             f"({str(_err).splitlines()[0][:120]}), while the same call with recording on "
                             "worked. Under no_grad nothing is recorded, so there is no graph to "
                             "differentiate: do the computation inside `with torch.enable_grad():` "
                             "(section 4, and Hint 3).")
checks.expect_close(_dw, _want_w, "the dL/dw from autograd_mse_grads called inside torch.no_grad()",
                    rtol=1e-4, atol=1e-5, why="The caller's grad mode must not change the gradient.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-accumulate"
# ## 3 · Gradients add up
#
# `backward()` **adds** into `.grad`; it never overwrites. You met the consequence in 01. Here
# is the reason: it is the same rule as the several-paths case of the chain rule. If a tensor
# is used twice in one computation, the gradients of both uses add up; if it is used in two
# computations with a backward pass each, their gradients add up just the same. And because
# differentiation is linear (the gradient of `L1 + L2` is the gradient of `L1` plus that of
# `L2`), you can split one large computation into pieces, run a backward pass per piece, and
# let `.grad` collect the sum. Each backward frees the graph of its piece, so only one
# piece's intermediate tensors are alive at a time: that is how a batch too large for memory
# gets its exact gradient anyway.
#
# The price of adding is that **clearing is your job**. Forget it and every step uses the
# sum of all the gradients so far: no error, just a model that trains badly. Two ways:
# `t.grad = None` (the next backward writes a fresh tensor; this is what optimisers do by
# default) or `t.grad.zero_()` (keeps the buffer, and needs `.grad` not to be `None`).
#
# For a mean, mind the weights: over N rows split into chunks of sizes `n_k`,
# `mean over all rows = sum over chunks of (n_k / N) * (mean over chunk k)`.
#
# ### Exercise 3 · The exact gradient, one chunk at a time
#
# Write `chunked_grad(loss_fn, w, X, y, chunk_size)`. `loss_fn(w, Xc, yc)` returns the mean
# loss over the rows it is given; `w` is a leaf that requires grad. Leave in `w.grad` the
# gradient of `loss_fn(w, X, y)` (the mean over **all** rows), computed with one forward and
# one backward pass per chunk of at most `chunk_size` consecutive rows. Whatever `w.grad` held
# before the call must not count. Return nothing, and do not change `w`'s values.
#
# <details><summary>Hint 1</summary>
#
# `X.split(chunk_size)` yields consecutive chunks of at most `chunk_size` rows (the last may
# be smaller); `zip` it with `y.split(chunk_size)`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Clear once, before the first chunk. Clearing inside the loop throws away the chunks already
# done.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Multiply each chunk's mean loss by its share of the rows, `len(chunk) / N`, before calling
# `backward()` on it.
# </details>

# %% role="answer" grade_id="chunked-grad"
def chunked_grad(loss_fn, w, X, y, chunk_size):
    """Leave in w.grad the gradient of loss_fn(w, X, y), one backward pass per chunk of rows."""
    ### BEGIN SOLUTION
    w.grad = None
    n = X.shape[0]
    for Xc, yc in zip(X.split(chunk_size), y.split(chunk_size)):
        loss = loss_fn(w, Xc, yc) * (Xc.shape[0] / n)
        loss.backward()
    ### END SOLUTION


# %% role="test" grade_id="test-chunked-sanity" points=1
def _mse(w, X, y):
    return ((X @ w - y) ** 2).mean()

with checks.seeded(0):
    _X, _y = torch.randn(6, 2), torch.randn(6)
_w = torch.tensor([0.5, -0.5], requires_grad=True)
try:
    chunked_grad(_mse, _w, _X, _y, 3)
except AttributeError as _err:
    checks.expect("NoneType" not in str(_err),
                  "Your chunked_grad called a method on w.grad while it was None: before its first backward "
                  "pass a leaf has no gradient tensor at all, so w.grad.zero_() fails. Setting w.grad = None "
                  "clears it whatever it held.")
    raise
checks.expect_tensor(_w.grad, "the w.grad left by chunked_grad", shape=(2,),
                     why="chunked_grad should leave the gradient in w.grad by calling backward().")
checks.expect_close(_w.grad, torch.autograd.grad(_mse(_w, _X, _y), _w)[0], "the w.grad left by chunked_grad (6 rows, chunks of 3)",
                    rtol=1e-4, atol=1e-5, why="It should equal the gradient of the mean loss over all rows.")
print("chunked_grad works on two equal chunks")


# %% role="test" grade_id="test-chunked" points=3
# Hidden tests: stale gradients, uneven chunks, and a hook that counts the backward passes.
### BEGIN HIDDEN TESTS
def _logcosh(w, X, y):
    return torch.log(torch.cosh(X @ w - y)).mean()

with checks.seeded(5):
    _X = torch.randn(10, 3, device=checks.DEVICE)
    _y = torch.randn(10, device=checks.DEVICE)
    _start = torch.randn(3, device=checks.DEVICE)
_w = _start.clone().requires_grad_(True)
_full = torch.autograd.grad(_logcosh(_w, _X, _y), _w)[0]
_parts = [torch.autograd.grad(_logcosh(_w, _Xc, _yc), _w)[0] for _Xc, _yc in zip(_X.split(4), _y.split(4))]
_stale = torch.full((3,), 100.0, device=checks.DEVICE)
_w.grad = _stale.clone()
def _chunked(*args):
    try:
        chunked_grad(*args)
    except AttributeError as _err:
        checks.expect("NoneType" not in str(_err),
                      "Your chunked_grad called a method on w.grad while it was None: before its first "
                      "backward pass a leaf has no gradient tensor at all, so w.grad.zero_() fails. "
                      "Setting w.grad = None clears it whatever it held.")
        raise


_passes = []
_handle = _w.register_hook(lambda g: _passes.append(1))
try:
    _chunked(_logcosh, _w, _X, _y, 4)
finally:
    _handle.remove()
checks.expect(torch.equal(_w.detach(), _start) and _w.is_leaf,
              "Your chunked_grad changed w. It should only compute a gradient; updating w is someone else's job.")
checks.expect_tensor(_w.grad, "the w.grad left by chunked_grad", shape=(3,),
                     why="chunked_grad leaves the gradient in w.grad: backward() on each chunk's weighted "
                         "loss adds into it.")
_got = _w.grad
checks.expect(not torch.equal(_got, _stale),
              "After the call, w.grad is exactly what it was before: chunked_grad must leave the gradient "
              "in w.grad. backward() adds into .grad; torch.autograd.grad returns gradients and leaves "
              ".grad alone.")
_close = lambda a, b: bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))
if _close(_got, _full + _stale):
    checks.expect(False, "After the call, w.grad still contains what it held before: backward() adds into "
                         ".grad, it never overwrites. Clear .grad once, before the first chunk.")
if _close(_got, _parts[-1] * 2 / 10) or _close(_got, _parts[-1]):
    checks.expect(False, "After the call, w.grad holds only the last chunk's gradient: clearing .grad inside the loop "
                         "throws away the chunks before it. Clear once, before the loop, and let the "
                         "chunks accumulate.")
checks.expect(len(_passes) == 3,
              f"Your chunked_grad made {len(_passes)} backward pass(es) through w for 10 rows in chunks of 4. "
              "Make one forward and one backward pass per chunk of at most chunk_size rows (3 here), so "
              "that each chunk's graph is freed before the next is built, and let .grad add them up. "
              "(X.split(chunk_size) yields chunks of chunk_size rows; torch.chunk(X, k) yields k chunks.)")
if _close(_got, sum(_parts)) or _close(_got, sum(_parts) / 3):
    checks.expect(False, "The w.grad you leave is the sum (or the plain average) of the chunks' mean-loss gradients. "
                         "With chunks of different sizes, the mean over all rows weights each chunk's "
                         "mean by its share of the rows (see Hint 3).")
if _close(_got, sum(_parts) * 4 / 10):
    checks.expect(False, "You weighted every chunk by chunk_size / N, but the last chunk holds fewer rows "
                         "(10 rows in chunks of 4 end with a chunk of 2). Weight each chunk's mean by the "
                         "number of rows it really holds, divided by N.")
checks.expect_close(_got, _full, "the w.grad left by chunked_grad (10 rows, chunks of 4)", rtol=1e-4, atol=1e-5,
                    why="It should be the gradient of the mean loss over all rows.")
# One chunk that holds everything, and a w.grad that starts as None.
_w2 = _start.clone().requires_grad_(True)
_chunked(_logcosh, _w2, _X, _y, 50)
checks.expect_close(_w2.grad, _full, "the w.grad left by chunked_grad with one chunk larger than the data", rtol=1e-4, atol=1e-5,
                    why="A chunk_size larger than the data makes one chunk that holds every row, whose "
                        "share of the rows is 1; and a w.grad that starts as None needs no clearing.")
# w and the data on the meta device (shapes, no data): the gradient must stay where w lives.
_wm = torch.zeros(3, device="meta", requires_grad=True)
_wm.grad = torch.zeros(3, device="meta")
try:
    chunked_grad(_logcosh, _wm, torch.zeros(10, 3, device="meta"), torch.zeros(10, device="meta"), 4)
except Exception as _err:
    checks.expect(False, "Given w and the data on another device (the test uses the meta device), your "
                         f"chunked_grad failed ({type(_err).__name__}: {str(_err).splitlines()[0].split('. ')[0][:160]}). "
                         "A tensor made without a device (torch.zeros(w.shape), say) lands on the CPU, and "
                         "w.grad must live where w lives. Clear with w.grad = None, or make the zeros with "
                         "torch.zeros_like(w).")
checks.expect_tensor(_wm.grad, "the w.grad left by chunked_grad for a w on the meta device", device="meta")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-modes"
# ## 4 · Switching the recorder off, and on again
#
# Recording costs memory (the tensors nodes save) and time, and much of the work around a
# model needs no gradient: updating parameters, evaluating, computing metrics. **Grad mode**
# is a switch on the *code region*, not on tensors:
#
# - `with torch.no_grad():` nothing inside is recorded. Results do not require grad, even when
#   their inputs do. The inputs' own `requires_grad` flags do not change: a parameter still
#   wants gradients; this one computation is simply not part of any graph.
# - `with torch.enable_grad():` turns recording back on inside a `no_grad` region. A helper
#   that must compute a gradient uses it, so that it still works when its caller (say an
#   evaluation loop) has switched recording off.
# - `with torch.inference_mode():` a stricter `no_grad` that also skips autograd's
#   bookkeeping (version counters, view tracking), so it is faster. The price: tensors
#   created inside are *inference tensors*, without that bookkeeping, so autograd refuses to
#   save them for a backward pass. A later recorded operation that needs one of them to
#   compute a gradient (a multiplication by a tensor that requires grad, say) raises an
#   error, even though the inference tensor itself is only a constant there. Use it for
#   results that never meet autograd, such as predictions you serve.
#
# All three also work as decorators (`@torch.no_grad()`). A result computed under `no_grad` is
# an ordinary constant afterwards: combine it with a tensor that requires grad and recording
# resumes, with that constant inside the new graph.
#
# ### Exercise 4 · Predict, then verify
#
# Predict what each name holds at the end of this code, and whether its last line runs or
# raises. The hidden test runs it.
#
# ```python
# x = torch.ones(3, requires_grad=True)
# with torch.no_grad():
#     a = x * 2
#     inside = x.requires_grad
#     with torch.enable_grad():
#         b = x * 2
# f = a * x
# with torch.inference_mode():
#     e = x * 2
# (e * x).sum().backward()      # runs, or raises?
# ```
#
# <details><summary>Hint 1</summary>
#
# Grad mode belongs to the region of code, not to the tensors. Which region was active when
# each of `a`, `b` and `e` was computed? And does a region change a tensor's own flag?
# </details>
#
# <details><summary>Hint 2</summary>
#
# `f` is computed after the `no_grad` block, from `a` and `x`. What does each of them
# contribute? For the last line, reread what the section says about inference tensors.
# </details>

# %% role="answer" grade_id="modes"
modes = {
    "a.requires_grad": None,     # True or False
    "inside": None,              # True or False: x.requires_grad inside the no_grad block
    "b.requires_grad": None,     # True or False
    "f.requires_grad": None,     # True or False
    "e.requires_grad": None,     # True or False
    "last line raises": None,    # True if (e * x).sum().backward() raises an error, else False
}
### BEGIN SOLUTION
modes = {
    "a.requires_grad": False,
    "inside": True,
    "b.requires_grad": True,
    "f.requires_grad": True,
    "e.requires_grad": False,
    "last line raises": True,
}
### END SOLUTION

# %% role="test" grade_id="test-modes" points=3
# Hidden tests run the code above and compare it with your predictions.
_keys = {"a.requires_grad", "inside", "b.requires_grad", "f.requires_grad", "e.requires_grad", "last line raises"}
checks.expect(isinstance(modes, dict) and set(modes) == _keys,
              "Your modes should be a dict with exactly the keys " + ", ".join(sorted(_keys)) + ".")
checks.expect(all(type(v) is bool for v in modes.values()), "Every entry of your modes should be True or False.")
### BEGIN HIDDEN TESTS
_x = torch.ones(3, requires_grad=True)
with torch.no_grad():
    _a = _x * 2
    _inside = _x.requires_grad
    with torch.enable_grad():
        _bb = _x * 2
_f = _a * _x
with torch.inference_mode():
    _e = _x * 2
try:
    (_e * _x).sum().backward()
    _raises = False
except RuntimeError:
    _raises = True
checks.expect(modes["a.requires_grad"] is _a.requires_grad,
              "Your prediction for a.requires_grad is wrong. Inside torch.no_grad() nothing is "
              "recorded, so results have no history, whatever their inputs.")
checks.expect(modes["inside"] is _inside,
              "Your prediction for x.requires_grad inside the no_grad block is wrong. Grad mode is a "
              "switch on the region of code: it stops recording, it does not rewrite the tensors' "
              "own flags.")
checks.expect(modes["b.requires_grad"] is _bb.requires_grad,
              "Your prediction for b.requires_grad is wrong. torch.enable_grad() switches recording "
              "back on inside a no_grad region, for the code it wraps.")
checks.expect(modes["f.requires_grad"] is _f.requires_grad,
              "Your prediction for f.requires_grad is wrong. After the block, a is an ordinary "
              "constant; what matters is whether any input of the multiplication requires grad.")
checks.expect(modes["e.requires_grad"] is _e.requires_grad,
              "Your prediction for e.requires_grad is wrong. torch.inference_mode() records nothing, "
              "like no_grad.")
checks.expect(modes["last line raises"] is _raises,
              "Your prediction for the last line is wrong. Tensors made under torch.inference_mode() "
              "are inference tensors: autograd skipped their bookkeeping, so it refuses to save them "
              "for a backward pass, and a recorded multiplication by x needs to save its other input.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-descent"
# ## 5 · Gradient descent with raw tensors
#
# You now have every piece of training: parameters are leaves that require grad; a forward
# pass records the loss; `backward()` fills `.grad`; each parameter takes a small step against
# its gradient; the gradients are cleared; repeat. The one delicate line is the update, which
# must be both **invisible to autograd** and **in place**:
#
# - *Invisible*, because the update is not part of the model. Recorded, it would chain every
#   step's graph to the previous one, and PyTorch refuses outright to change a leaf that
#   requires grad in place while recording ("a leaf Variable that requires grad is being used
#   in an in-place operation").
# - *In place*, because `w = w - lr * w.grad` builds a **new** tensor and rebinds the name.
#   Recorded, the new `w` is an intermediate result: it never receives a `.grad`, and the next
#   step finds `None`. Under `no_grad`, the new `w` does not require grad at all, and the next
#   loss has nothing to differentiate.
#
# So the update reads `with torch.no_grad(): w -= lr * w.grad`. That is all `optimizer.step()`
# does for plain SGD (you will use optimisers in 05). For logging, `loss.item()` is exactly
# right: you want a number, not a tensor that keeps the whole graph of the step alive.
#
# ### Exercise 5 · Fit a line
#
# Write `fit_linear(X, y, lr, steps)` for `X` of shape `(N, D)` and `y` of shape `(N,)`:
# - start from `w = 0` (shape `(D,)`) and `b = 0` (0-d), with `X`'s dtype and device, both
#   leaves that require grad;
# - for each of `steps` steps: compute `loss = mean((X @ w + b - y) ** 2)`, append
#   `loss.item()` to a list, run the backward pass, update `w` and `b` by plain gradient
#   descent with learning rate `lr`, and clear their gradients;
# - return `(w, b, losses)`, where `losses` holds the `steps` losses before each update.
#
# <details><summary>Hint 1</summary>
#
# `torch.zeros(D, dtype=X.dtype, device=X.device, requires_grad=True)` makes a leaf directly.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Order within a step: forward, record, backward, update, clear. The update and the clearing
# both happen where recording is off.
# </details>
#
# <details><summary>Hint 3</summary>
#
# An error mentioning "a leaf Variable", or `NoneType`, or "does not require grad" on the
# second step: reread the two bullet points above.
# </details>

# %% role="answer" grade_id="fit-linear"
def fit_linear(X, y, lr, steps):
    """Gradient descent on the mean squared error of X @ w + b; returns (w, b, losses)."""
    ### BEGIN SOLUTION
    w = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, device=X.device, requires_grad=True)
    losses = []
    for _ in range(steps):
        loss = ((X @ w + b - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
            w.grad = None
            b.grad = None
    return w, b, losses
    ### END SOLUTION


# %% role="test" grade_id="test-fit-sanity" points=1
def _diagnose_none(X, y, lr, steps):
    """fit_linear met a .grad that was None: find out why, from what it does with 0 and 1 steps."""
    try:
        w0, b0, _ = fit_linear(X, y, lr, 0)
        born = not (w0.is_leaf and b0.is_leaf)
    except Exception:
        born = False
    checks.expect(not born,
                  "Your fit_linear found w.grad (or b.grad) to be None: the w and b it starts from are not "
                  "leaves, so backward() never stores a gradient in them. A tensor made with "
                  "requires_grad=True and then converted (.to(...), .double(), * 0.01) is the output of a "
                  "recorded operation. Create the parameters directly with X's dtype and device and "
                  "requires_grad=True (see Hint 1).")
    try:
        fit_linear(X, y, lr, 1)
        first = False
    except Exception as again:
        first = "NoneType" in str(again)
    checks.expect(not first,
                  "Your fit_linear found w.grad (or b.grad) to be None at the update of the very first step: "
                  "the gradient was cleared between backward() and the update (or backward() never ran). "
                  "Within a step the order is forward, record, backward, update, clear.")
    checks.expect(False, "Your fit_linear found w.grad (or b.grad) to be None in a later step. An "
                         "update like w = w - lr * w.grad outside torch.no_grad() makes a new, "
                         "recorded tensor that is no longer a leaf, so it never receives a .grad. "
                         "Update the same leaf in place, inside torch.no_grad().")


def _fit(*args):
    """Call fit_linear, turning the errors of a misplaced update into explanations."""
    try:
        return fit_linear(*args)
    except NotImplementedError:
        raise
    except (RuntimeError, TypeError, AttributeError) as err:
        text = str(err)
        if "leaf Variable" in text:
            checks.expect(False, "Your fit_linear changed w or b in place while autograd was recording, "
                                 "which PyTorch refuses for a leaf that requires grad. Updating weights "
                                 "is not part of the model: do it inside torch.no_grad().")
        if "NoneType" in text:
            _diagnose_none(*args)
        if "does not require grad" in text:
            checks.expect(False, "In a later step the loss no longer depended on anything that requires "
                                 "grad: w = w - lr * w.grad inside torch.no_grad() makes a new tensor that "
                                 "does not require grad. Update the leaf in place (w -= ...).")
        raise


with checks.seeded(0):
    _X = torch.randn(32, 2)
    _y = _X @ torch.tensor([2.0, -1.0]) + 0.5
_w, _b, _losses = _fit(_X, _y, 0.1, 50)
checks.expect_tensor(_w, "the returned w", shape=(2,), dtype=torch.float32, requires_grad=True,
                     why="w is a parameter: a leaf of shape (D,) that requires grad.")
checks.expect_tensor(_b, "the returned b", shape=(), requires_grad=True, why="b is a 0-d parameter that requires grad.")
checks.expect(type(_losses) is list and len(_losses) == 50,
              "The losses you return should be a list with one entry per step (50 here).")
checks.expect(all(type(v) is float for v in _losses),
              "The losses should be Python floats (loss.item()), not tensors: a stored loss tensor keeps "
              "its whole graph alive.")
checks.expect(_losses[-1] < _losses[0],
              "The loss did not go down in 50 steps. Each step moves w and b against the gradient of this "
              "step (w -= lr * w.grad), and the gradients are cleared after the update, not between "
              "backward() and the update.")
print(f"loss went from {_losses[0]:.3f} to {_losses[-1]:.4f}; w = {[round(v, 3) for v in _w.tolist()]}, "
      f"b = {_b.item():.3f}")


# %% role="test" grade_id="test-fit-linear" points=4
# Hidden tests compare a run with an exact reference, and inspect the parameters you return.
### BEGIN HIDDEN TESTS
def _reference(X, y, lr, steps, zero=True):
    w = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device, requires_grad=True)
    b = torch.zeros((), dtype=X.dtype, device=X.device, requires_grad=True)
    losses = []
    for _ in range(steps):
        loss = ((X @ w + b - y) ** 2).mean()
        losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
            if zero:
                w.grad = None
                b.grad = None
    return w.detach(), b.detach(), losses


def _diagnose_none(X, y, lr, steps):
    """fit_linear met a .grad that was None: find out why, from what it does with 0 and 1 steps."""
    try:
        w0, b0, _ = fit_linear(X, y, lr, 0)
        born = not (w0.is_leaf and b0.is_leaf)
    except Exception:
        born = False
    checks.expect(not born,
                  "Your fit_linear found w.grad (or b.grad) to be None: the w and b it starts from are not "
                  "leaves, so backward() never stores a gradient in them. A tensor made with "
                  "requires_grad=True and then converted (.to(...), .double(), * 0.01) is the output of a "
                  "recorded operation. Create the parameters directly with X's dtype and device and "
                  "requires_grad=True (see Hint 1).")
    try:
        fit_linear(X, y, lr, 1)
        first = False
    except Exception as again:
        first = "NoneType" in str(again)
    checks.expect(not first,
                  "Your fit_linear found w.grad (or b.grad) to be None at the update of the very first step: "
                  "the gradient was cleared between backward() and the update (or backward() never ran). "
                  "Within a step the order is forward, record, backward, update, clear.")
    checks.expect(False, "Your fit_linear found w.grad (or b.grad) to be None in a later step. An "
                         "update like w = w - lr * w.grad outside torch.no_grad() makes a new, "
                         "recorded tensor that is no longer a leaf, so it never receives a .grad. "
                         "Update the same leaf in place, inside torch.no_grad().")


def _fit(*args):
    """Call fit_linear, turning the errors of a misplaced update into explanations."""
    try:
        return fit_linear(*args)
    except NotImplementedError:
        raise
    except (RuntimeError, TypeError, AttributeError) as err:
        text = str(err)
        if "leaf Variable" in text:
            checks.expect(False, "Your fit_linear changed w or b in place while autograd was recording, "
                                 "which PyTorch refuses for a leaf that requires grad. Updating weights "
                                 "is not part of the model: do it inside torch.no_grad().")
        if "NoneType" in text:
            _diagnose_none(*args)
        if "does not require grad" in text:
            checks.expect(False, "In a later step the loss no longer depended on anything that requires "
                                 "grad: w = w - lr * w.grad inside torch.no_grad() makes a new tensor that "
                                 "does not require grad. Update the leaf in place (w -= ...).")
        raise


with checks.seeded(6):
    _X = torch.randn(40, 3, device=checks.DEVICE)
    _y = _X @ torch.tensor([1.5, -2.0, 0.5], device=checks.DEVICE) - 1.0 + 0.1 * torch.randn(40, device=checks.DEVICE)
_w, _b, _losses = _fit(_X, _y, 0.05, 60)
checks.expect_tensor(_w, "the returned w", shape=(3,), dtype=_X.dtype, device=_X.device, requires_grad=True,
                     why="w is a parameter: a leaf of shape (D,) with X's dtype and device, that requires grad.")
checks.expect_tensor(_b, "the returned b", shape=(), dtype=_X.dtype, device=_X.device, requires_grad=True,
                     why="Create the parameters with X's dtype and on X's device.")
checks.expect(_w.is_leaf and _b.is_leaf,
              "The w and b you return are not leaves: an update was recorded by autograd. Update the "
              "parameters in place inside torch.no_grad(), so they stay the leaves the next forward "
              "pass uses.")
checks.expect(type(_losses) is list and len(_losses) == 60 and all(type(v) is float for v in _losses),
              "The losses you return should be a list of 60 Python floats (loss.item()), one per step.")
_rw, _rb, _rl = _reference(_X, _y, 0.05, 60)
_nw, _nb, _nl = _reference(_X, _y, 0.05, 60, zero=False)
_wd = _w.detach()
if torch.allclose(_wd, _nw, rtol=1e-4, atol=1e-5) and not torch.allclose(_wd, _rw, rtol=1e-4, atol=1e-5):
    checks.expect(False, "Your run matches gradient descent whose gradients are never cleared: "
                         "backward() adds into .grad, so each step used the sum of all earlier "
                         "gradients. Clear .grad after every update (w.grad = None, or w.grad.zero_()).")
for _p, _pname in ((_wd, "w"), (_b.detach(), "b")):
    checks.expect(not torch.equal(_p, torch.zeros_like(_p)),
                  f"Your {_pname} never moved from zero. Every parameter takes a step against its own "
                  "gradient; check that the update uses the gradient of this step, and that gradients "
                  "are cleared after the update, not between backward() and the update.")
checks.expect_close(_losses[0], _rl[0], "the first recorded loss",
                    why="The loss of a step is the mean (not the sum) of the squared errors, "
                        "mean((X @ w + b - y) ** 2); record it with loss.item() before that step's update.")
checks.expect_close(_wd, _rw, "the w after 60 steps", rtol=1e-4, atol=1e-5,
                    why="Each step: forward, loss, backward, w -= lr * w.grad (and the same for b) "
                        "under torch.no_grad(), then clear the gradients.")
checks.expect_close(_b.detach(), _rb, "the b after 60 steps", rtol=1e-4, atol=1e-5,
                    why="b is updated by the same rule as w.")
checks.expect_close(torch.tensor(_losses), torch.tensor(_rl), "the list of losses", rtol=1e-4, atol=1e-6,
                    why="losses[i] is loss.item() for step i, recorded before that step's update.")
# The same fit on float64 data: the parameters must follow X's dtype.
_X64, _y64 = _X.double(), _y.double()
try:
    _w64, _b64, _ = _fit(_X64, _y64, 0.05, 3)
except RuntimeError as _err:
    if isinstance(_err, NotImplementedError) or "dtype" not in str(_err).lower() and "scalar type" not in str(_err).lower():
        raise
    checks.expect(False, f"Your fit_linear failed on float64 data ({str(_err).splitlines()[0][:100]}): the "
                         "parameters were created with the default dtype instead of X's. Create w and b with "
                         "dtype=X.dtype and device=X.device.")
checks.expect_tensor(_w64, "the returned w, for float64 data,", dtype=torch.float64, device=_X.device,
                     why="Create the parameters with X's dtype and on X's device (dtype=X.dtype, "
                         "device=X.device), not with the defaults.")
checks.expect_tensor(_b64, "the returned b, for float64 data,", dtype=torch.float64, device=_X.device,
                     why="Create the parameters with X's dtype and on X's device.")
# X on the meta device (shapes, no data): w and b must be made where X lives, not on the CPU.
_Xm, _ym = torch.zeros(8, 3, device="meta"), torch.zeros(8, device="meta")


def _fit_on_meta():
    try:
        fit_linear(_Xm, _ym, 0.05, 2)
    except Exception:
        pass  # loss.item() cannot run on the meta device; what matters is where w and b were made


_, _touched = checks.devices_touched(_fit_on_meta)
checks.expect("cpu" not in _touched,
              "Given X on another device (the test uses the meta device), your fit_linear created tensors on "
              "the CPU: on a GPU, X @ w would then mix devices and fail. Create w and b on X's device, with "
              "dtype=X.dtype and device=X.device (see Hint 1).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-cut"
# ## 6 · Cutting the graph, on purpose and by accident
#
# Sometimes you need a tensor's values without its history: to log them, to use them as a
# fixed target, or to block the gradient along one path. Three ways, which are not the same:
#
# - `t.detach()` returns a new tensor over **the same memory**, with no history and
#   `requires_grad=False`. Whatever you compute from it treats its values as constants. It
#   shares the version counter too (section 7), so autograd still notices if the memory is
#   changed in place. This is the tool.
# - `t.item()` (and `float(t)`, `t.tolist()`) leaves torch altogether. A Python number carries
#   no history: right for logging, wrong inside anything you differentiate. (`t.numpy()` is
#   stricter: it refuses a tensor that requires grad until you `detach()` it.)
# - `t.data` is a legacy attribute: same memory, no history, and **hidden from the version
#   counter**. An in-place change made through `.data` is invisible to autograd, so a gradient
#   computed from stale saved values comes out silently wrong. Use `detach()` to read values,
#   and `no_grad()` to write them.
#
# **By accident**, a cut makes no noise: the loss is still a number, and `backward()` simply
# ignores the part that was cut off. Only if *everything* was cut does it complain that the
# loss "does not require grad". **On purpose**, a cut lets you choose the path a gradient
# takes. The *straight-through estimator* is the classic: rounding has derivative zero almost
# everywhere, so nothing upstream of a `round` can learn. The trick keeps the rounded value
# in the forward pass but lets the gradient pass through as if rounding were the identity.
# It rests on one observation: `detach()` changes what autograd sees, never the value. So
# you can write a result as a sum whose value is what you want, while the only part autograd
# can follow back to `x` is a path whose derivative is the one you want.
#
# ### Exercise 6 · Fix a broken snippet
#
# `ridge_loss_broken(w, X, y, lam)` below should return the mean squared error of `X @ w`
# against `y` plus the penalty `lam * sum(w ** 2)`. Its author wanted "just the values" in two
# places. Run its cell and read what happens. Then write `ridge_loss(w, X, y, lam)` in the
# answer cell: the same value, with a gradient that reaches `w` through both terms.
#
# <details><summary>Hint 1</summary>
#
# Backward fails when *nothing* in the loss depends on `w` through the graph. Fixing the first
# cut makes it run, but is the gradient complete? Compare it with your own derivative of the
# penalty, `2 * lam * w`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Every term that should send a gradient to `w` must be computed from `w` itself with tensor
# operations, all the way to the returned loss.
# </details>

# %% role="locked" grade_id="ridge-broken"
def ridge_loss_broken(w, X, y, lam):
    """The broken version: it asks for values in two places where the gradient must flow."""
    pred = X @ w.data                          # "only the values of w are needed here"
    mse = ((pred - y) ** 2).mean()
    penalty = lam * (w ** 2).sum().item()      # "a penalty is just a number"
    return mse + penalty


demo_w = torch.tensor([1.0, -2.0], requires_grad=True)
demo_X = torch.tensor([[1.0, 0.5], [0.0, 1.0], [2.0, -1.0]])
demo_y = torch.tensor([1.0, 0.0, 2.0])
demo_loss = ridge_loss_broken(demo_w, demo_X, demo_y, lam=0.1)
print("loss:", round(demo_loss.item(), 4), "| requires grad:", demo_loss.requires_grad)
try:
    demo_loss.backward()
except RuntimeError as err:
    print("backward failed:", str(err).splitlines()[0])


# %% role="answer" grade_id="ridge"
def ridge_loss(w, X, y, lam):
    """mean((X @ w - y) ** 2) + lam * sum(w ** 2), with gradients reaching w through both terms."""
    ### BEGIN SOLUTION
    mse = ((X @ w - y) ** 2).mean()
    penalty = lam * (w ** 2).sum()
    return mse + penalty
    ### END SOLUTION


# %% role="test" grade_id="test-ridge-sanity" points=1
_w = torch.tensor([1.0, -2.0], requires_grad=True)
_X = torch.tensor([[1.0, 0.5], [0.0, 1.0], [2.0, -1.0]])
_y = torch.tensor([1.0, 0.0, 2.0])
_loss = ridge_loss(_w, _X, _y, 0.1)
checks.expect_tensor(_loss, "the loss from ridge_loss", shape=(), requires_grad=True,
                     why="The loss must stay connected to w's graph: .data and .item() hand out values "
                         "without history, and nothing computed from them can carry a gradient to w.")
checks.expect_close(_loss, ((_X @ _w.detach() - _y) ** 2).mean() + 0.1 * (_w.detach() ** 2).sum(), "the loss from ridge_loss", rtol=1e-5,
                    why="The fix changes the gradient, not the value.")
_loss.backward()
checks.expect(_w.grad is not None, "backward() through ridge_loss left no gradient in w.grad.")
print("ridge_loss is connected to w; dL/dw =", [round(v, 4) for v in _w.grad.tolist()])

# %% role="test" grade_id="test-ridge" points=3
# Hidden tests compare the gradient of ridge_loss with the exact one, term by term.
### BEGIN HIDDEN TESTS
with checks.seeded(7):
    _X = torch.randn(25, 4, dtype=torch.float64, device=checks.DEVICE)
    _y = torch.randn(25, dtype=torch.float64, device=checks.DEVICE)
    _w = torch.randn(4, dtype=torch.float64, device=checks.DEVICE, requires_grad=True)
_lam = 0.3
_loss = ridge_loss(_w, _X, _y, _lam)
checks.expect_tensor(_loss, "the loss from ridge_loss", shape=(), requires_grad=True,
                     why="Something cut the graph between w and the loss: .data and .item() give values "
                         "without history. Compute every term from w itself.")
_wd = _w.detach()
_g_mse = 2 * _X.T @ (_X @ _wd - _y) / 25
_g_pen = 2 * _lam * _wd
checks.expect_close(_loss, ((_X @ _wd - _y) ** 2).mean() + _lam * (_wd ** 2).sum(), "the loss from ridge_loss", rtol=1e-9,
                    why="The value is the mean squared error plus lam times the sum of squares of w.")
_g = torch.autograd.grad(_loss, _w)[0]
_close = lambda a, b: bool(torch.allclose(a, b, rtol=1e-6, atol=1e-9))
if _close(_g, _g_mse):
    checks.expect(False, "The gradient of ridge_loss has no contribution from the penalty: the penalty "
                         "reached the loss as a constant. .item() turns a tensor into a Python number "
                         "with no history, which cuts the graph; keep the penalty a tensor computed "
                         "from w.")
if _close(_g, _g_pen):
    checks.expect(False, "The gradient of ridge_loss has no contribution from the squared error: the "
                         "prediction was computed from values without history (.data or .detach() cut "
                         "the graph). Compute X @ w from w itself.")
checks.expect_close(_g, _g_mse + _g_pen, "the gradient of ridge_loss", rtol=1e-6, atol=1e-9,
                    why="Both terms must send their gradient to w through the graph.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-ste"
# ### Exercise 7 · A straight-through rounding
#
# Write `round_ste(x)`: return a tensor whose **value** is `torch.round(x)` and whose
# gradient with respect to `x` is the incoming gradient unchanged, as if the operation were
# the identity. Use `detach()`, not a custom Function (that is section 10), and do not change
# `x`.
#
# <details><summary>Hint 1</summary>
#
# Write the result as `x` plus a correction that turns `x` into `torch.round(x)`. Which part
# should autograd see, and which part should it treat as a constant?
# </details>

# %% role="answer" grade_id="round-ste"
def round_ste(x):
    """torch.round(x) in the forward pass; the gradient passes straight through (derivative 1)."""
    ### BEGIN SOLUTION
    return x + (torch.round(x) - x).detach()
    ### END SOLUTION


# %% role="test" grade_id="test-ste-sanity" points=1
_x = torch.tensor([0.2, 1.7, -2.6], requires_grad=True)
_r = round_ste(_x)
checks.expect_tensor(_r, "the result of round_ste(x)", shape=(3,), requires_grad=True,
                     why="The result must stay connected to x, or no gradient can pass through it.")
checks.expect_close(_r, torch.round(_x.detach()), "the result of round_ste(x)", why="The value is torch.round(x).")
print("round_ste(x) =", _r.tolist())

# %% role="test" grade_id="test-ste" points=2
# Hidden tests send a gradient through round_ste and check what reaches x.
### BEGIN HIDDEN TESTS
with checks.seeded(8):
    _x = (torch.randn(6, device=checks.DEVICE) * 3).requires_grad_(True)
    _v = torch.randn(6, device=checks.DEVICE)
_x0 = _x.detach().clone()
_r = round_ste(_x)
checks.expect_tensor(_r, "the result of round_ste(x)", shape=(6,), requires_grad=True,
                     why="Detaching the whole result cuts x off; detach only the correction.")
checks.expect_close(_r, torch.round(_x0), "the result of round_ste(x)", why="The value is torch.round(x).")
_g = torch.autograd.grad(_r, _x, grad_outputs=_v)[0]
checks.expect(not torch.equal(_g, torch.zeros_like(_g)),
              "No gradient passed through round_ste: the derivative of torch.round is zero almost "
              "everywhere. A straight-through estimator keeps the rounded value but lets autograd see "
              "only an identity path from x (detach the part that rounds).")
checks.expect_close(_g, _v, "the gradient that reaches x through round_ste", rtol=1e-6,
                    why="Straight through means the incoming gradient arrives at x unchanged (derivative 1).")
checks.expect(torch.equal(_x.detach(), _x0), "Your round_ste changed x in place. Build a new tensor instead.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-version"
# ## 7 · In-place operations and the version counter
#
# To compute gradients later, many nodes **save** tensors during the forward pass: `exp`
# saves its output (the derivative of `exp` is `exp` itself), multiplication saves its inputs,
# `sigmoid` its output; addition saves nothing. If a saved tensor were modified in place
# between the forward and the backward pass, the gradient would silently use the wrong
# numbers. Autograd guards against this with a **version counter**: every tensor has one
# (`t._version`, shared by views of the same memory), and every in-place operation (`+=`,
# `add_`, `t[i] = ...`, `out=`) increments it. A node notes the version of each tensor it
# saves, and the backward pass compares: a mismatch raises "one of the variables needed for
# gradient computation has been modified by an inplace operation ... is at version 1;
# expected version 0". The error is the good outcome; `.data` is the way to bypass it.
#
# Rules of thumb:
# - an in-place change to a tensor no node saved is harmless (and saves memory);
# - an in-place change to a saved tensor breaks the backward pass;
# - an in-place change to a leaf that requires grad is refused while recording;
# - and whatever autograd says, a function that modifies **its caller's** tensor has a side
#   effect the caller did not ask for. Inside functions, prefer out-of-place operations.
#
# ### Exercise 8 · Fix a broken snippet
#
# `softmax_broken(z)` below computes a softmax over the last dimension, shifting by the row
# maximum first so that `exp` cannot overflow. It uses two in-place operations. Run its cell:
# it fails on a leaf, changes its caller's tensor (watch the version), and breaks backward.
# Write `softmax(z)` in the answer cell: the same results, no in-place operation, the caller's
# tensor untouched (values and version), a working backward pass, and still stable for large
# logits.
#
# <details><summary>Hint 1</summary>
#
# The run shows two problems: which tensor's version moved, and which saved tensor the
# error message names ("output 0 of Exp").
# </details>
#
# <details><summary>Hint 2</summary>
#
# Replace each in-place operation by its out-of-place form, which makes a new tensor. Keep
# the shift: without it, `exp(1000.0)` overflows to `inf`.
# </details>

# %% role="locked" grade_id="softmax-broken"
def softmax_broken(z):
    """The broken version: a stable softmax over the last dimension, with two in-place operations."""
    z -= z.max(dim=-1, keepdim=True).values    # shift each row so its maximum is 0
    e = z.exp()
    e /= e.sum(dim=-1, keepdim=True)           # normalise each row to sum to 1
    return e


demo_leaf = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
try:
    softmax_broken(demo_leaf)
except RuntimeError as err:
    print("on a leaf:", str(err).splitlines()[0])
demo_logits = demo_leaf * 1.0
print("the caller's logits, version", demo_logits._version, ":", demo_logits.tolist())
demo_p = softmax_broken(demo_logits)
print("after the call, version", demo_logits._version, ":", demo_logits.tolist())
try:
    demo_p[0, 0].backward()
except RuntimeError as err:
    print("backward failed:", str(err).split(". Hint")[0])


# %% role="answer" grade_id="softmax"
def softmax(z):
    """A numerically stable softmax over the last dimension, without in-place operations."""
    ### BEGIN SOLUTION
    shifted = z - z.max(dim=-1, keepdim=True).values
    e = shifted.exp()
    return e / e.sum(dim=-1, keepdim=True)
    ### END SOLUTION


# %% role="test" grade_id="test-softmax-sanity" points=1
def _softmax_call(z):
    try:
        return softmax(z)
    except RuntimeError as err:
        if isinstance(err, NotImplementedError) or "leaf Variable" not in str(err):
            raise
        checks.expect(False, "Your softmax modified its input in place, which PyTorch refuses for a leaf "
                             "that requires grad. Compute a shifted copy (out of place) instead.")


_z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
_p = _softmax_call(_z)
checks.expect_tensor(_p, "the result of softmax(z)", shape=(2, 3), requires_grad=True)
checks.expect_close(_p.sum(dim=-1), torch.ones(2), "the row sums of softmax(z)", why="Each row of a softmax sums to 1.")
print("softmax(z) =", [[round(v, 4) for v in row] for row in _p.tolist()])


# %% role="test" grade_id="test-softmax" points=3
# Hidden tests: the caller's tensor and its version counter, the backward pass, and huge logits.
### BEGIN HIDDEN TESTS
def _softmax_call(z):
    try:
        return softmax(z)
    except RuntimeError as err:
        if isinstance(err, NotImplementedError) or "leaf Variable" not in str(err):
            raise
        checks.expect(False, "Your softmax modified its input in place, which PyTorch refuses for a leaf "
                             "that requires grad. Compute a shifted copy (out of place) instead.")


with checks.seeded(9):
    _leaf = torch.randn(4, 5, device=checks.DEVICE, requires_grad=True)
_z = _leaf * 2.0
_z0, _v0 = _z.detach().clone(), _z._version
_p = _softmax_call(_z)
checks.expect(_z._version == _v0 and torch.equal(_z.detach(), _z0),
              f"Your softmax changed its caller's tensor: its version counter went from {_v0} to "
              f"{_z._version}, which means an in-place operation wrote into it. A function should not "
              "modify what it was given; make the shifted logits a new tensor.")
checks.expect_close(_p, torch.softmax(_z0, dim=-1), "the result of softmax(z)", rtol=1e-5, atol=1e-6,
                    why="Softmax runs over the last dimension: exp of each entry divided by its row's sum.")
try:
    _p[:, 0].sum().backward()
except RuntimeError as _err:
    if "inplace" not in str(_err):
        raise
    checks.expect("Exp" not in str(_err),
                  "The backward pass through softmax failed: exp() saved its output for the "
                  "backward pass (its derivative is itself), then an in-place division changed "
                  "that output and moved its version counter. Divide out of place so the saved "
                  "tensor stays as it was.")
    checks.expect(False, "The backward pass through softmax failed: an in-place operation changed a tensor "
                         "that an earlier operation had saved for its backward pass, and the version counter "
                         f"gave it away ({str(_err).split(', is at version')[0][:200]}). Use out-of-place operations "
                         "throughout (z - m, not z -= m), so every saved tensor stays as it was.")
checks.expect(_leaf.grad is not None, "No gradient reached the input through softmax: compute it from z with tensor operations, "
                                    "so that autograd records every step (no .item(), .data or detach()).")
_big = torch.tensor([[1000.0, 0.0, -1000.0], [500.0, 500.0, 499.0]], device=checks.DEVICE)
_pb = _softmax_call(_big)
checks.expect(bool(torch.isfinite(_pb).all()),
              "Your softmax returned inf or NaN for large logits: exp overflows beyond about 88 in float32. "
              "Shift each row by its maximum before exp (softmax does not change when every entry of "
              "a row moves by the same amount).")
checks.expect_close(_pb, torch.softmax(_big, dim=-1), "the softmax of large logits", rtol=1e-5, atol=1e-6,
                    why="The shift by each row's maximum changes nothing mathematically: exp of each entry "
                        "divided by its row's sum.")
_z3 = torch.randn(2, 3, 4, dtype=torch.float64, device=checks.DEVICE, requires_grad=True)
checks.expect_gradcheck(softmax, [_z3], "softmax",
                        why="Use only out-of-place tensor operations, so autograd can differentiate it.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-nonscalar"
# ## 8 · Outputs that are not a single number
#
# `y.backward()` with no argument works only when `y` is a scalar. Here is why. For a `y`
# with `m` entries and an `x` with `n`, the full derivative is an `m × n` matrix, the
# **Jacobian** `J`. Autograd never builds it. Each backward pass computes one
# **vector-Jacobian product** `vᵀJ`: given a weight `v[i]` for each output ("how much the
# final objective cares about `y[i]`"), it returns how much the objective cares about each
# `x[j]`. For a scalar loss, `v` is simply 1; that is the gradient 1 you saw start the chain
# in section 2. For anything larger you must supply `v`, shaped like `y`:
# `y.backward(gradient=v)`, or `torch.autograd.grad(y, x, grad_outputs=v)`. It is the same as
# differentiating the scalar `(y * v).sum()`.
#
# Two uses:
# - `v` all ones gives the sum of the rows of `J`. For an element-wise function (`J` is
#   diagonal) that is exactly the derivative at every point at once, which is why
#   `f(x).sum().backward()` is a common idiom.
# - A one-hot `v` (a 1 at position `i`) picks out row `i` of `J`. The full Jacobian takes one
#   pass per output, all through the same graph, so it must stay alive between passes:
#   `retain_graph=True` (or record the graph again).
#
# ### Exercise 9 · A Jacobian, row by row
#
# Write `jacobian(f, x)` for a function `f` that maps a 1-D tensor of `n` entries to a 1-D
# tensor of `m` entries: return the `m × n` tensor `J[i, j] = d f(x)[i] / d x[j]`, with `x`'s
# dtype and device, not requiring grad. Do not change `x` (nor its flags or `.grad`). Build it
# from vector-Jacobian products, not with `torch.autograd.functional`. Like every helper that
# differentiates, it must also work when called inside `torch.no_grad()`.
#
# <details><summary>Hint 1</summary>
#
# Row `i` of `J` is `eᵢᵀJ`, where `eᵢ` is the one-hot vector with a 1 at position `i`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.autograd.grad` takes the vector as `grad_outputs=` and can keep the graph with
# `retain_graph=`. It returns a tuple and touches no `.grad`, so rows cannot pile up.
# Differentiate with respect to a leaf made from `x`'s values, not `x` itself, and record
# inside `with torch.enable_grad():`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Collect the rows in a list and `torch.stack` them: `m` rows of `n` entries.
# </details>

# %% role="answer" grade_id="jacobian"
def jacobian(f, x):
    """The (m, n) Jacobian of f at the 1-D tensor x (n entries), f(x) having m entries."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        y = f(xx)
        rows = []
        for i in range(y.shape[0]):
            v = torch.zeros_like(y)
            v[i] = 1
            (row,) = torch.autograd.grad(y, xx, grad_outputs=v, retain_graph=True)
            rows.append(row)
    return torch.stack(rows)
    ### END SOLUTION


# %% role="test" grade_id="test-jacobian-sanity" points=1
def _jac(f, x):
    """Call jacobian, turning the usual errors of non-scalar backward passes into explanations."""
    try:
        return jacobian(f, x)
    except RuntimeError as err:
        text = str(err)
        if isinstance(err, NotImplementedError):
            raise
        if "only for scalar outputs" in text:
            checks.expect(False, "Your jacobian called backward() on a non-scalar output without saying how "
                                 "to weight its entries. backward() computes a vector-Jacobian product: "
                                 "pass a gradient v shaped like the output (grad_outputs=, or gradient=), "
                                 "a one-hot v for each row.")
        if "second time" in text or "already been freed" in text:
            checks.expect(False, "Your jacobian went backward through the same graph twice after it had been "
                                 "freed. Each row is one pass through the same graph: keep it alive with "
                                 "retain_graph=True (or record it again for every row).")
        raise


_A = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
_J = _jac(lambda x: _A @ x, torch.tensor([0.5, -1.0, 2.0]))
checks.expect_tensor(_J, "the result of jacobian(lambda x: A @ x, x)", shape=(2, 3), requires_grad=False,
                     why="For f from 3 entries to 2, J has one row per output and one column per input.")
checks.expect_close(_J, _A, "the result of jacobian(lambda x: A @ x, x)", why="The Jacobian of a linear map x -> A @ x is A.")
print("the Jacobian of x -> A @ x is A")

# %% role="test" grade_id="test-jacobian" points=3
# Hidden tests compare with a reference on nonlinear functions, and check x before and after.
### BEGIN HIDDEN TESTS
from unittest import mock as _mock

def _jac(f, x):
    """Call jacobian, turning the usual errors of non-scalar backward passes into explanations."""
    try:
        return jacobian(f, x)
    except RuntimeError as err:
        text = str(err)
        if isinstance(err, NotImplementedError):
            raise
        if "only for scalar outputs" in text:
            checks.expect(False, "Your jacobian called backward() on a non-scalar output without saying how "
                                 "to weight its entries. backward() computes a vector-Jacobian product: "
                                 "pass a gradient v shaped like the output (grad_outputs=, or gradient=), "
                                 "a one-hot v for each row.")
        if "second time" in text or "already been freed" in text:
            checks.expect(False, "Your jacobian went backward through the same graph twice after it had been "
                                 "freed. Each row is one pass through the same graph: keep it alive with "
                                 "retain_graph=True (or record it again for every row).")
        raise


def _f1(x):
    return torch.stack([x.prod(), x.sin().sum(), (x[0] * x[1]).exp(), x.pow(2).sum().sqrt()])


def _f2(x):
    return torch.tanh(x) * x


class _Shortcut(Exception):
    pass


def _shortcut(*args, **kwargs):
    raise _Shortcut()


with checks.seeded(10):
    _x = torch.randn(3, dtype=torch.float64, device=checks.DEVICE)
_x0 = _x.clone()
for _name, _f, _xin in [("a map from 3 to 4 entries", _f1, _x), ("an element-wise function", _f2, _x)]:
    _want = torch.autograd.functional.jacobian(_f, _xin)
    try:
        with _mock.patch.object(torch.autograd.functional, "jacobian", _shortcut), \
             _mock.patch.object(torch.func, "jacrev", _shortcut), \
             _mock.patch.object(torch.func, "jacfwd", _shortcut):
            _J = _jac(_f, _xin)
    except _Shortcut:
        checks.expect(False, "Your jacobian called a ready-made Jacobian (torch.autograd.functional.jacobian "
                             "or torch.func). The exercise is to build it yourself, one vector-Jacobian "
                             "product per row (see Hint 1).")
    checks.expect_tensor(_J, f"the jacobian of {_name}", dtype=torch.float64, device=_xin.device, requires_grad=False,
                         why="Keep x's dtype and device: make the leaf from x's values without converting "
                             "them, and return plain values that do not require grad.")
    if tuple(_J.shape) == tuple(_want.shape[::-1]) and _want.shape[0] != _want.shape[1]:
        checks.expect(False, f"The jacobian of {_name} has shape {tuple(_J.shape)}: rows and columns are "
                             "swapped. Row i holds the derivatives of output i with respect to every input.")
    if tuple(_J.shape) == (_want.shape[1],) and torch.allclose(_J, _want.sum(0)):
        checks.expect(False, f"The jacobian of {_name} is one vector, the sum of the rows of J: that is "
                             "the vector-Jacobian product with v = ones. Each row needs its own one-hot v.")
    checks.expect_tensor(_J, f"the jacobian of {_name}", shape=tuple(_want.shape),
                         why="J has one row per entry of f(x) and one column per entry of x: one "
                             "vector-Jacobian product per output entry.")
    if torch.allclose(_J, _want.cumsum(0), rtol=1e-6, atol=1e-9) and not torch.allclose(_J, _want, rtol=1e-6, atol=1e-9):
        checks.expect(False, f"The rows of the jacobian of {_name} are running totals: gradients "
                             "accumulate into .grad across backward passes. Use torch.autograd.grad, or "
                             "clear .grad before each row.")
    checks.expect_close(_J, _want, f"the jacobian of {_name}", rtol=1e-6, atol=1e-9,
                        why="Row i is the vector-Jacobian product with the one-hot vector e_i.")
checks.expect(torch.equal(_x, _x0) and not _x.requires_grad and _x.grad is None,
              "Your jacobian changed x (its values, requires_grad or .grad). Differentiate with respect to a "
              "new leaf made from x's values.")
# A caller that has switched recording off, as an evaluation loop does.
with torch.no_grad():
    try:
        _J = jacobian(_f2, _x)
    except RuntimeError as _err:
        if isinstance(_err, NotImplementedError):
            raise
        checks.expect(False, "Called inside torch.no_grad(), your jacobian failed "
                             f"({str(_err).splitlines()[0][:120]}), while the same call with recording on "
                             "worked. Under no_grad nothing is recorded, so there is no graph to "
                             "differentiate: record inside `with torch.enable_grad():` (section 4).")
checks.expect_close(_J, torch.autograd.functional.jacobian(_f2, _x), "the jacobian called inside torch.no_grad()",
                    rtol=1e-6, atol=1e-9, why="The caller's grad mode must not change the Jacobian.")
# x on the meta device (shapes, no data): J and the one-hot vectors must live where x lives.
_xm = torch.zeros(3, dtype=torch.float64, device="meta")
try:
    _Jm = jacobian(_f2, _xm)
except Exception as _err:
    checks.expect(False, "Given an x on another device (the test uses the meta device), your jacobian failed "
                         f"({type(_err).__name__}: {str(_err).splitlines()[0].split('. ')[0][:160]}). Make J and every one-hot "
                         "vector on x's device and with its dtype (torch.zeros_like(y), or device=x.device): "
                         "a tensor made without a device lands on the CPU, and a GPU refuses to mix the two.")
checks.expect_tensor(_Jm, "the jacobian of an x on the meta device", shape=(3, 3), dtype=torch.float64,
                     device="meta", why="Build J on x's device, with x's dtype.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-hooks"
# ## 9 · Hooks: watching gradients in flight
#
# When training misbehaves, the interesting gradients are often in the middle of the graph,
# where `.grad` is not kept. A **tensor hook** lets you see them: `t.register_hook(fn)` asks
# autograd to call `fn(grad)` each time the gradient with respect to `t` has been computed
# during a backward pass, for leaves and intermediate results alike. The hook returns `None`
# to only look, or a tensor to *replace* the gradient (that is how gradient masking works; a
# debugging hook must never do it by accident).
#
# `register_hook` returns a **handle**; `handle.remove()` takes the hook off again. A hook on
# an intermediate result disappears with its graph, but a hook on a leaf (a parameter) fires in
# every future backward pass until it is removed: a forgotten debugging hook keeps recording
# and slows every step. The typical use: record the norm of the gradient at each layer to
# spot gradients that vanish or explode, or to find where the first NaN appears.
#
# ### Exercise 10 · A gradient recorder
#
# Write `watch(tensors)`. `tensors` is a dict from names to tensors that require grad (leaves
# or intermediate results). Register one hook per tensor that appends the norm (the 2-norm, as
# `grad.norm()` computes it) of each gradient arriving at that tensor, as a Python float, to
# `records[name]`. Return `(records, stop)`:
# `records` is a dict with the same names, each starting as an empty list, and calling
# `stop()` removes every hook. The hooks must not change any gradient.
#
# <details><summary>Hint 1</summary>
#
# Each hook needs to know which list to append to. A function defined in a loop looks up the
# loop variable when it is *called*, by which time the loop has finished: bind the name when
# the function is defined (`def hook(grad, name=name):`).
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep every handle in a list; `stop` is a small function that calls `.remove()` on each.
# `grad.norm().item()` is a float; return nothing from the hook.
# </details>

# %% role="answer" grade_id="watch"
def watch(tensors):
    """Record the norm of every gradient reaching each named tensor; returns (records, stop)."""
    ### BEGIN SOLUTION
    records = {name: [] for name in tensors}
    handles = []
    for name, t in tensors.items():
        def hook(grad, name=name):
            records[name].append(grad.norm().item())
        handles.append(t.register_hook(hook))

    def stop():
        for handle in handles:
            handle.remove()

    return records, stop
    ### END SOLUTION


# %% role="test" grade_id="test-watch-sanity" points=1
_w = torch.tensor([1.0, -1.0, 0.5], requires_grad=True)
_h = torch.tanh(_w * 2)
_records, _stop = watch({"w": _w, "h": _h})
checks.expect(isinstance(_records, dict) and set(_records) == {"w", "h"} and callable(_stop),
              "The call watch(...) should return (records, stop): a dict with one list per name, and a function.")
checks.expect(all(type(v) is list and len(v) == 0 for v in _records.values()),
              "Before any backward pass, every list in records should be empty.")
checks.expect(_records["w"] is not _records["h"],
              "In your records, every name holds the same list object (dict.fromkeys(names, []) does this: "
              "it puts one list under every key). Give each name a list of its own.")
_h.sum().backward()
_stop()
checks.expect(all(len(v) == 1 for v in _records.values()),
              "After one backward pass, each watched tensor should have one entry in records (if one list got them all, see Hint 1).")
checks.expect(all(type(x) is float for v in _records.values() for x in v),
              "The records should hold Python floats (grad.norm().item()), not tensors.")
print("recorded gradient norms:", {k: [round(x, 4) for x in v] for k, v in _records.items()})

# %% role="test" grade_id="test-watch" points=3
# Hidden tests compare the records with the true gradient norms, check that gradients are unchanged, and call stop().
### BEGIN HIDDEN TESTS
with checks.seeded(11):
    _x = torch.randn(8, 4, device=checks.DEVICE)
    _w1 = torch.randn(4, 6, device=checks.DEVICE, requires_grad=True)
    _w2 = torch.randn(6, 1, device=checks.DEVICE, requires_grad=True)


def _forward():
    h = torch.tanh(_x @ _w1)
    return h, (h @ _w2).pow(2).mean()


# the reference: gradients without any hook
_h, _loss = _forward()
_h.retain_grad()
_loss.backward()
_ref = {"w1": _w1.grad.clone(), "w2": _w2.grad.clone(), "h": _h.grad.clone()}
_w1.grad = None
_w2.grad = None

_h, _loss = _forward()
_records, _stop = watch({"w1": _w1, "w2": _w2, "h": _h})
_loss.backward()
checks.expect(isinstance(_records, dict) and set(_records) == {"w1", "w2", "h"},
              "The records should be a dict with the same names as the tensors you watch.")
checks.expect(all(type(v) is list for v in _records.values()), "Each entry of records should be a list.")
checks.expect(len({id(v) for v in _records.values()}) == 3,
              "In your records, several names hold the same list object (dict.fromkeys(names, []) does this: "
              "it puts one list under every key), so every hook appends to one list. Give each name a list "
              "of its own.")
_lens = {k: len(v) for k, v in _records.items()}
checks.expect(_lens == {"w1": 1, "w2": 1, "h": 1},
              f"After one backward pass, the number of entries per name is {_lens}; each should be 1. "
              "If one list got every entry, all the hooks looked up the loop variable when they ran, "
              "after the loop had finished: bind each hook's name when it is defined (see Hint 1).")
checks.expect(all(type(x) is float for v in _records.values() for x in v),
              "The records should hold Python floats (grad.norm().item()), not tensors.")
for _k, _p in (("w1", _w1), ("w2", _w2)):
    checks.expect_close(_p.grad, _ref[_k], f"the {_k}.grad computed with your hooks attached", rtol=1e-5, atol=1e-6,
                        why="A hook that returns a tensor replaces the gradient. A hook that only "
                            "records must return None.")
for _k in ("w1", "w2", "h"):
    checks.expect_close(_records[_k][0], _ref[_k].norm().item(), f"the recorded norm for {_k}", rtol=1e-4,
                        why="Record the norm of the gradient the hook receives.")
# A second forward and backward: the hooks on the leaves fire again; h belonged to the first graph.
_w1.grad = None
_w2.grad = None
_h2, _loss2 = _forward()
_loss2.backward()
_lens = {k: len(v) for k, v in _records.items()}
checks.expect(_lens == {"w1": 2, "w2": 2, "h": 1},
              f"After a second forward and backward pass, the entries per name are {_lens}; expected 2 for "
              "the leaves w1 and w2 (their hooks stay until removed) and 1 for h (it belonged to the first graph).")
_stop()
_w1.grad = None
_w2.grad = None
_h3, _loss3 = _forward()
_loss3.backward()
_lens = {k: len(v) for k, v in _records.items()}
checks.expect(_lens == {"w1": 2, "w2": 2, "h": 1},
              "After stop(), a backward pass still added entries: the hooks were not removed. Keep the "
              "handle that register_hook returns, and call .remove() on every one in stop().")
_w1.grad = None
_w2.grad = None
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-function"
# ## 10 · Your own `autograd.Function`
#
# Almost always, you never write a backward pass: you compose operations autograd knows. Three
# reasons to write one anyway: the composed formula is **numerically unstable** and a direct
# derivative is not; you want a gradient that is **not the true derivative** (a
# straight-through estimator, gradient reversal); or you can save **less memory** than the
# composed version would.
#
# A subclass of `torch.autograd.Function` has three static methods:
# - `forward(*inputs)` computes the output. It runs with recording off, so autograd does not
#   see inside it: it treats the whole function as one node.
# - `setup_context(ctx, inputs, output)` keeps on `ctx` what backward will need, given the
#   inputs of forward (as a tuple) and its output: tensors with `ctx.save_for_backward(...)`
#   (they get the version check of section 7, and are freed after backward), other values as
#   attributes (`ctx.beta = beta`).
# - `backward(ctx, grad_output)` receives the gradient with respect to the output and returns
#   **one value per input of forward, in order**: the gradient with respect to that input,
#   shaped like it, or `None` for an input that is not a tensor (or needs no gradient). Your
#   node is one link of the chain: multiply the incoming gradient by your local derivative.
#   Read the saved tensors back with `ctx.saved_tensors`.
#
# You will also meet an older style, `forward(ctx, *inputs)`, which computes and fills `ctx` in
# one method. It still works with `backward()`, but `torch.func`'s transforms (`grad`, `vmap`,
# `jacrev`: PyTorch's functional, JAX-like API) can only use a Function whose `forward` is
# free of `ctx`, so current code keeps the two jobs apart.
#
# You call it as `MyFunction.apply(...)`, never `forward` directly. Autograd trusts your
# backward blindly, so prove it: `torch.autograd.gradcheck(fn, inputs)` compares it with
# finite differences. Use float64 inputs: float32 rounding is too coarse for finite
# differences to be meaningful.
#
# **Softplus** is a smooth ReLU: `softplus(x) = log(1 + exp(β·x)) / β`. Written naively it
# overflows: `exp(β·x)` is `inf` in float32 once `β·x` passes about 88, and so is the result.
# With `z = β·x`, the identity `log(1 + eᶻ) = max(z, 0) + log(1 + e^(-|z|))` never
# exponentiates a positive number, and `torch.log1p(u)` computes `log(1 + u)` accurately for
# tiny `u`. Its derivative is `sigmoid(β·x)`, which `torch.sigmoid` computes stably.
#
# ### Exercise 11 · A stable softplus
#
# Complete `Softplus`: `forward(x, beta)` returns the stable softplus of the tensor `x` for a
# positive Python float `beta`; `setup_context(ctx, inputs, output)` keeps what backward needs;
# `backward(ctx, grad_output)` returns the gradients for `x` and for `beta` (which is not a
# tensor). It must work under `torch.func.grad` too. `softplus(x, beta=1.0)` applies it. Before you
# run the tests, prove your backward yourself in a scratch cell:
# `torch.autograd.gradcheck(lambda t: softplus(t, 2.0), [torch.randn(6, dtype=torch.float64, requires_grad=True)])`
# returns `True`, or raises with the numeric and analytical Jacobians side by side.
#
# <details><summary>Hint 1</summary>
#
# Check the identity for `z > 0` and `z < 0` separately. `torch.clamp(z, min=0)`,
# `torch.log1p`, `z.abs()` and `torch.exp` are all you need; divide by `beta` at the end.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Which values does backward need to compute the derivative? In `setup_context`, unpack
# `x, beta = inputs`; tensors travel through `ctx.save_for_backward(...)` and come back as the
# tuple `ctx.saved_tensors`; plain numbers go onto `ctx` as attributes.
# </details>
#
# <details><summary>Hint 3</summary>
#
# forward had two inputs, so backward returns two values, in the same order. Your node is
# one link of the chain: what does it multiply the incoming gradient by? And what can an
# input that is a float receive?
# </details>

# %% role="answer" grade_id="softplus"
class Softplus(torch.autograd.Function):
    @staticmethod
    def forward(x, beta):
        """log(1 + exp(beta * x)) / beta, computed without overflow."""
        ### BEGIN SOLUTION
        z = beta * x
        return (torch.clamp(z, min=0) + torch.log1p(torch.exp(-z.abs()))) / beta
        ### END SOLUTION

    @staticmethod
    def setup_context(ctx, inputs, output):
        """Keep on ctx what backward needs."""
        ### BEGIN SOLUTION
        x, beta = inputs
        ctx.save_for_backward(x)
        ctx.beta = beta
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad_output):
        """One gradient per input of forward: for x, and for beta."""
        ### BEGIN SOLUTION
        (x,) = ctx.saved_tensors
        return grad_output * torch.sigmoid(ctx.beta * x), None
        ### END SOLUTION


def softplus(x, beta=1.0):
    return Softplus.apply(x, beta)


# %% role="test" grade_id="test-softplus-sanity" points=1
_x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
try:
    _y = softplus(_x)
except TypeError as _err:
    checks.expect("save_for_backward" not in str(_err),
                  "Softplus.forward passed something that is not a tensor to ctx.save_for_backward (beta is a "
                  "Python float). save_for_backward keeps tensors only; plain numbers go onto ctx as "
                  "attributes (see Hint 2).")
    raise
checks.expect_tensor(_y, "the result of softplus(x)", shape=(5,), requires_grad=True)
checks.expect(type(_y.grad_fn) is Softplus._backward_cls,
              "The result of softplus(x) was not produced by your Softplus function: its grad_fn is not Softplus's "
              "node. softplus should return Softplus.apply(x, beta).")
checks.expect_close(_y, torch.log(1 + torch.exp(_x.detach())), "the result of softplus(x) with beta=1", rtol=1e-5,
                    why="For moderate x, the stable formula gives the same values as log(1 + exp(x)).")
checks.expect_close(softplus(_x.detach(), 2.0), torch.log(1 + torch.exp(2.0 * _x.detach())) / 2.0,
                    "the result of softplus(x, beta=2)", rtol=1e-5, why="Divide by beta at the end.")
print("softplus(x) =", [round(v, 4) for v in _y.tolist()])


# %% role="test" grade_id="test-softplus" points=4
# Hidden tests: gradcheck in float64, several betas, and inputs large enough to overflow a naive formula.
### BEGIN HIDDEN TESTS
def _backward_through(y, *inputs, grad=None):
    """Run one backward pass, turning the errors of a broken custom backward into explanations."""
    try:
        return torch.autograd.grad(y, inputs, grad_outputs=grad)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        text = str(err)
        if isinstance(err, NotImplementedError):
            raise
        if "different than None" in text:
            checks.expect(False, "Softplus.backward returned a gradient for beta, which is a Python float, "
                                 "not a tensor: autograd cannot send a gradient to it. The slot of an input "
                                 "that is not a tensor must be None.")
        if "incorrect number of gradients" in text:
            checks.expect(False, f"Softplus.backward returned the wrong number of values ({text}). backward "
                                 "returns one value per input of forward, in order: the gradient for x, "
                                 "then None for beta, which is not a tensor.")
        if "invalid gradient" in text:
            checks.expect(False, f"Softplus.backward returned a gradient of the wrong shape ({text}). The "
                                 "gradient for x must have x's shape: grad_output times the local "
                                 "derivative, element by element, with no reduction.")
        if "unpack" in text or "index out of range" in text or "saved_tensors" in text:
            checks.expect(False, f"Softplus.backward could not read the tensors it needs ({text}). Every "
                                 "tensor backward uses must be saved in forward with "
                                 "ctx.save_for_backward(...), and read back from ctx.saved_tensors.")
        raise


with checks.seeded(12):
    _x = torch.randn(7, dtype=torch.float64, device=checks.DEVICE) * 3
for _beta in (1.0, 2.5, 0.5):
    _xin = _x.clone().requires_grad_(True)
    try:
        _y = softplus(_xin, _beta)
    except TypeError as _err:
        checks.expect("save_for_backward" not in str(_err),
                      "Softplus.forward passed something that is not a tensor to ctx.save_for_backward (beta "
                      "is a Python float). save_for_backward keeps tensors only; plain numbers go onto ctx "
                      "as attributes (see Hint 2).")
        raise
    checks.expect_tensor(_y, f"the result of softplus(x, beta={_beta})", shape=(7,), dtype=torch.float64,
                         device=_x.device, requires_grad=True)
    checks.expect_close(_y, torch.nn.functional.softplus(_x, beta=_beta, threshold=1000.0),
                        f"the result of softplus(x, beta={_beta})", rtol=1e-9, atol=1e-12,
                        why="softplus(x) = log(1 + exp(beta * x)) / beta.")
    _v = torch.linspace(-1.0, 2.0, 7, dtype=torch.float64, device=checks.DEVICE)
    (_g,) = _backward_through(_y, _xin, grad=_v)
    checks.expect_tensor(_g, "the gradient for x", shape=(7,))
    checks.expect_gradcheck(lambda t, beta=_beta: softplus(t, beta), [_xin], f"softplus (beta={_beta})",
                            why="backward returns grad_output times the derivative of softplus at x "
                                "(with beta inside it), and None for beta.")
# inputs that overflow a naive formula in float32
_big = torch.tensor([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], device=checks.DEVICE, requires_grad=True)
_yb = softplus(_big, 1.0)
checks.expect(bool(torch.isfinite(_yb).all()),
              "Your softplus returned inf or NaN for large inputs in float32: exp(beta * x) overflows once "
              "beta * x passes about 88. Rewrite log(1 + exp(z)) so that exp only ever sees -|z|.")
checks.expect_close(_yb, torch.nn.functional.softplus(_big.detach()), "the softplus of large inputs", rtol=1e-5, atol=1e-6,
                    why="The stable identity max(z, 0) + log1p(exp(-|z|)) is exact, for large |z| too.")
(_gb,) = _backward_through(_yb.sum(), _big)
checks.expect(bool(torch.isfinite(_gb).all()),
              "The gradient of softplus is inf or NaN for large inputs. Compute the derivative with "
              "torch.sigmoid, which is stable.")
checks.expect_close(_gb, torch.sigmoid(_big.detach()), "the gradient of softplus at large inputs", rtol=1e-5, atol=1e-6,
                    why="The derivative of softplus is sigmoid(beta * x), near 1 for large x and near 0 "
                        "for very negative x.")
# torch.func.grad: the functional transforms need forward and setup_context apart.
try:
    _gf = torch.func.grad(lambda t: softplus(t, 2.0).sum())(_x)
except RuntimeError as _err:
    if isinstance(_err, NotImplementedError):
        raise
    checks.expect("setup_context" not in str(_err),
                  "torch.func.grad could not differentiate through Softplus: its forward takes ctx, the "
                  "older combined style. Write forward(x, beta) without ctx, and fill ctx in "
                  "setup_context(ctx, inputs, output) (section 10).")
    raise
checks.expect_close(_gf, torch.sigmoid(2.0 * _x), "the gradient of softplus(x, 2.0).sum() from torch.func.grad",
                    rtol=1e-9, atol=1e-12, why="torch.func.grad runs the same backward as autograd does.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-softplus-saved" points=2
# Hidden tests change the input in place after the forward pass: saved tensors must notice.
### BEGIN HIDDEN TESTS
with checks.seeded(13):
    _leaf = torch.randn(5, dtype=torch.float64, device=checks.DEVICE, requires_grad=True)
_a = _leaf * 1.0
_y = softplus(_a, 1.0)
_at_forward = torch.sigmoid(_a.detach().clone())
with torch.no_grad():
    _a.add_(3.0)  # moves _a's version counter
try:
    (_g,) = torch.autograd.grad(_y.sum(), _leaf)
    _refused = False
except (ValueError, IndexError) as _err:
    checks.expect(False, f"Softplus.backward could not read the tensors it needs ({_err}). Every tensor "
                         "backward uses must be saved in forward with ctx.save_for_backward(...), and "
                         "read back from ctx.saved_tensors.")
except RuntimeError as _err:
    if isinstance(_err, NotImplementedError):
        raise
    _refused = "inplace" in str(_err)
    if not _refused:
        raise
if not _refused:
    # Saving the output instead of x is a valid design: then the gradient is still the one at forward time.
    checks.expect_close(_g, _at_forward, "the gradient after x was changed in place", rtol=1e-9, atol=1e-12,
                        why="x was modified in place between forward and backward, and your backward used "
                            "the new values without noticing. Tensors kept as ctx attributes (ctx.x = x) "
                            "escape the version check; save them with ctx.save_for_backward(x), and "
                            "autograd refuses a backward pass that would use modified values.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - Leaves are the tensors no recorded operation produced; only those that require grad
#   receive `.grad`. Intermediate results carry a `grad_fn` and pass gradients on.
# - `backward()` runs the chain rule from the output back, adding along every path and into
#   every `.grad`: clearing is your job, and accumulation is a tool when you mean it.
#   `torch.autograd.grad` returns gradients without side effects.
# - Grad mode belongs to code regions: `no_grad` for updates and evaluation, `enable_grad` to
#   switch it back on, `inference_mode` for results that never meet autograd. `detach()` cuts
#   one tensor out; `.item()` and `.data` cut it too, silently.
# - The version counter protects saved tensors from in-place changes.
# - A non-scalar output needs a vector to weight it: every backward is a vector-Jacobian
#   product.
# - Hooks let you watch (and, carefully, change) gradients in flight; remove them when done.
# - A custom `autograd.Function` is one node whose backward you own; `gradcheck` in float64
#   proves it.
#
# Next, in **04 · Models**, `nn.Module` packages parameters (leaves that require grad) and the
# forward computation, so that none of this bookkeeping has to be written by hand.
