# %% [markdown] role="prose" grade_id="title"
# # 02 · Tensors, operations and the memory model
#
# **Time:** about 3 h 30 min of work (5,600 words to read, 14 exercises). Run top to bottom, the
# finished notebook takes under a second.
#
# Every input a model reads, every weight it learns and every gradient it computes is a
# tensor. Most PyTorch bugs are not mathematical but structural: a shape that broadcast where
# it should have failed, a dtype a loss refuses, a "copy" that was secretly a window onto
# somebody else's data. This notebook builds the mental model that prevents them: **a tensor
# is a flat block of memory plus a short description of how to read it.**
#
# **By the end of this notebook you will be able to:**
# - create tensors from Python lists, NumPy arrays and other tensors, and predict their shape,
#   dtype and device;
# - choose dtypes on purpose: float32 for what a model computes with, int64 for class labels;
# - predict the shape broadcasting produces, and recognise the (N,) against (N, 1) trap;
# - tell element-wise products from matrix products, and apply a whole batch of matrices in
#   one call;
# - reduce along a dimension without losing it (`keepdim`), and choose between in-place and
#   out-of-place operations;
# - explain storage, strides, offsets and contiguity, and why `view` sometimes refuses where
#   `reshape` copies;
# - prove whether a tensor is a view or a copy by comparing storage pointers;
# - replace Python loops over tensor entries with broadcasting.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Print shapes freely in cells of your own:
# looking at `.shape`, `.dtype` and `.stride()` is how professionals debug tensor code.

# %% role="locked" grade_id="setup"
import numpy as np
import torch

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__)

# %% [markdown] role="prose" grade_id="md-creation"
# ## 1 · A tensor is memory plus a description
#
# A tensor has two parts. The **storage** is a flat, one-dimensional run of numbers, all of
# one type, in the memory of one device. The **metadata** says how to read that run as an
# array: the `shape` (how many entries along each dimension), the `dtype` (what kind of
# number each entry is), the `device` (whose memory holds it), and two more fields we open up
# in section 6. Many operations only write new metadata over the same storage; others make
# new storage. Knowing which is which is most of this notebook.
#
# **Where tensors come from.**
# - *Python data.* `torch.tensor([[1, 2], [3, 4]])` reads a nested list: the nesting gives the
#   shape, the values give the dtype, and the numbers are **copied** into new storage. Python
#   integers become `int64`; a single float among them makes the whole tensor `float32`, the
#   default floating type.
# - *NumPy.* `torch.from_numpy(arr)` copies nothing: the tensor is a second window onto the
#   array's memory, so a write through either one shows up in the other. It also keeps the
#   array's dtype, and NumPy's default float is `float64`: twice the memory of `float32`, and
#   not what layers expect. `torch.as_tensor(arr)` shares memory too whenever no conversion is
#   needed; `torch.tensor(arr)` always copies.
# - *Other tensors.* `torch.zeros_like(t)`, `torch.ones_like(t)` and `torch.empty_like(t)`
#   take shape, dtype and device from `t`. `t.clone()` copies the data. Conversions such as
#   `t.to(torch.float32)`, `t.float()` or `t.to(device)` make a new tensor only when something
#   changes: if `t` is already float32 on that device, you get `t` itself back.
#
# **dtypes with a job.** Features, weights and model outputs are `float32`. Class labels are
# `int64` (also called `torch.long`): a classification loss uses each label as an *index*
# into the model's scores, and it refuses floats. Masks are `bool`.
#
# ### Exercise 1 · Predict, then verify
#
# Read this code **without running it** and predict what PyTorch does. Fill in the
# dictionary `creation_predictions` in the answer cell: dtypes as `torch.` names (like
# `torch.float16`), values as floats, the shape as a tuple of ints. A hidden test runs the
# code and compares.
#
# ```python
# a = torch.tensor([1, 2, 3])
# b = torch.tensor([1, 2, 3.5])
# arr = np.array([0.5, 1.5, 2.5])
# c = torch.from_numpy(arr)
# d = torch.tensor(arr)
# arr[0] = 100.0              # c and d were made before this line
# e = torch.zeros_like(a)
# f = torch.tensor([[1.0], [2.0], [3.0]])
# ```
#
# <details><summary>Hint 1</summary>
#
# `torch.tensor` looks at the Python values to choose a dtype. Which kind of number is `1`,
# and which is `3.5`? PyTorch has one default integer type and one default floating type.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For `c` and `d`, ask two questions: does the constructor copy the numbers or share the
# array's memory, and does it keep NumPy's dtype? Then replay `arr[0] = 100.0`.
# </details>

# %% role="answer" grade_id="creation-predictions"
creation_predictions = {
    "a.dtype": None,   # a torch dtype, e.g. torch.float16
    "b.dtype": None,   # a torch dtype
    "c.dtype": None,   # a torch dtype
    "c[0]": None,      # a float: the value of c[0] at the end
    "d[0]": None,      # a float: the value of d[0] at the end
    "e.dtype": None,   # a torch dtype
    "f.shape": None,   # a tuple of ints (or a torch.Size)
}
### BEGIN SOLUTION
creation_predictions = {
    "a.dtype": torch.int64,
    "b.dtype": torch.float32,
    "c.dtype": torch.float64,
    "c[0]": 100.0,
    "d[0]": 0.5,
    "e.dtype": torch.int64,
    "f.shape": (3, 1),
}
### END SOLUTION

# %% role="test" grade_id="test-creation-predictions" points=3
_p = creation_predictions
checks.expect(type(_p) is dict and set(_p) == {"a.dtype", "b.dtype", "c.dtype", "c[0]", "d[0]", "e.dtype", "f.shape"},
              "The answer should define creation_predictions as a dict with exactly the keys of the template.")
for _key in ("a.dtype", "b.dtype", "c.dtype", "e.dtype"):
    checks.expect(type(_p[_key]) is torch.dtype,
                  f"In creation_predictions, {_key!r} should be a torch dtype such as torch.float16, not a string or None.")
for _key in ("c[0]", "d[0]"):
    checks.expect(type(_p[_key]) in (int, float), f"In creation_predictions, {_key!r} should be a number.")
checks.expect((type(_p["f.shape"]) is tuple or type(_p["f.shape"]) is torch.Size)
              and all(type(n) is int for n in _p["f.shape"]),
              "In creation_predictions, 'f.shape' should be a tuple of ints (or a torch.Size).")
# Hidden tests run the code and compare each prediction with what PyTorch does.
### BEGIN HIDDEN TESTS
_a = torch.tensor([1, 2, 3])
_b = torch.tensor([1, 2, 3.5])
_arr = np.array([0.5, 1.5, 2.5])
_c = torch.from_numpy(_arr)
_d = torch.tensor(_arr)
_arr[0] = 100.0
_e = torch.zeros_like(_a)
_f = torch.tensor([[1.0], [2.0], [3.0]])
_why = {
    "a.dtype": "torch.tensor chooses the dtype from the Python values: what kind of numbers are 1, 2 and 3, "
               "and which integer type does PyTorch use by default (see Hint 1)?",
    "b.dtype": "One float among integers makes the whole tensor floating point, in PyTorch's default "
               "floating type (see Hint 1).",
    "c.dtype": "torch.from_numpy keeps the array's dtype exactly as it is; which float type does NumPy "
               "use by default (see Hint 2)?",
    "c[0]": "Ask whether torch.from_numpy copies the numbers or shares the array's memory, then replay "
            "arr[0] = 100.0 (see Hint 2).",
    "d[0]": "Ask whether torch.tensor copies the numbers or shares the array's memory, then replay "
            "arr[0] = 100.0 (see Hint 2).",
    "e.dtype": "The *_like constructors take shape, dtype and device from the tensor they are given.",
    "f.shape": "The nesting of the lists gives the shape: count the items of the outer list, then the "
               "items of each inner list.",
}
for _key, _actual in [("a.dtype", _a.dtype), ("b.dtype", _b.dtype), ("c.dtype", _c.dtype),
                      ("e.dtype", _e.dtype), ("f.shape", tuple(_f.shape))]:
    checks.expect_equal(_p[_key], _actual, f"Your prediction for {_key}", why=_why[_key], show=False)
for _key, _actual in [("c[0]", _c[0].item()), ("d[0]", _d[0].item())]:
    checks.expect(abs(_p[_key] - _actual) < 1e-6, f"Your prediction for {_key} is not what PyTorch gives. {_why[_key]}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-to-tensors"
# ### Exercise 2 · Bring data into PyTorch
#
# Data reach a model from outside PyTorch: an array NumPy read from a file, a list built in
# Python, a tensor handed over by other code. Write `to_tensors(features, labels, device)`:
#
# - `features` is a 2-D NumPy array, nested list or tensor of numbers. Return it as `X`: a
#   **float32** tensor on `device`.
# - `labels` is a 1-D NumPy array, list or tensor of whole-number class ids, sometimes stored
#   as floats (`2.0`). Return it as `y`: an **int64** tensor on `device`.
# - `X` and `y` must **own their memory**: if the caller later changes the array or tensor
#   it passed in, `X` and `y` must not change (and the other way round).
# - Create them on `device`, whatever it is: the tests also use the `meta` device (tensors
#   with a shape and a dtype but no data).
# - A tensor you are handed may already live on a GPU (or on `meta`): convert it with tensor
#   operations, without a detour through NumPy, Python lists or the CPU.
#
# <details><summary>Hint 1</summary>
#
# `torch.as_tensor(data, dtype=..., device=...)` accepts lists, NumPy arrays and tensors
# alike, and converts as it goes. Read section 1 again for what it does when no conversion
# is needed.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `.clone()` gives a tensor storage of its own. Copying twice is harmless here; sharing the
# caller's memory by accident is not.
# </details>

# %% role="answer" grade_id="to-tensors"
def to_tensors(features, labels, device):
    """(X, y): features as a float32 tensor and labels as an int64 tensor, both on device,
    both owning their memory."""
    ### BEGIN SOLUTION
    X = torch.as_tensor(features, dtype=torch.float32, device=device).clone()
    y = torch.as_tensor(labels, dtype=torch.int64, device=device).clone()
    return X, y
    ### END SOLUTION


# %% role="test" grade_id="test-to-tensors-sanity" points=1
_X, _y = to_tensors(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), [0, 2, 1], checks.DEVICE)
checks.expect_tensor(_X, "The features X (the first thing to_tensors returns)", shape=(3, 2),
                     why="to_tensors returns (X, y) in that order, and X keeps the shape of the features.")
checks.expect_tensor(_X, "The features X", dtype=torch.float32, device=checks.DEVICE,
                     why="Features become a float32 tensor on the device you are given.")
checks.expect_tensor(_y, "The labels y", shape=(3,), dtype=torch.int64, device=checks.DEVICE,
                     why="Class labels become an int64 tensor on the device you are given.")
print("to_tensors returns", checks.describe(_X), "and", checks.describe(_y))

# %% role="test" grade_id="test-to-tensors" points=3
# Hidden tests: lists, float64 and float32 arrays, tensors, float-stored labels, the meta device (for the
# result and for tensors handed in), memory ownership.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
_f64 = np.arange(12, dtype=np.float64).reshape(4, 3) / 4
_lab = np.array([0.0, 2.0, 1.0, 2.0])
_X, _y = to_tensors(_f64, _lab, _dev)
checks.expect_tensor(_X, "The features X (the first thing to_tensors returns)", shape=(4, 3),
                     why="to_tensors returns (X, y) in that order, and X keeps the shape of the features.")
checks.expect_tensor(_X, "The features X, from a float64 NumPy array,", dtype=torch.float32, device=_dev,
                     why="NumPy's default float is float64, and torch.from_numpy or torch.as_tensor keep it unless "
                         "you ask for float32. Models compute in float32: convert the features explicitly.")
checks.expect_close(_X.cpu(), torch.from_numpy(_f64).float(), "The features X, from a float64 NumPy array,",
                    why="X should hold the same numbers as the features, only converted to float32.")
checks.expect_tensor(_y, "The labels y, from labels stored as floats (0.0, 2.0, ...),", shape=(4,), dtype=torch.int64, device=_dev,
                     why="Class labels are int64 class indices (torch.long), even when a file stored them as "
                         "floats: a classification loss uses each label to index the model's scores and refuses "
                         "float labels. Ask for dtype=torch.int64.")
checks.expect_equal(_y.cpu().tolist(), [0, 2, 1, 2], "The labels y, from labels stored as floats,",
                    why="Each label keeps its value; only the dtype changes.")

_X, _y = to_tensors([[1, 2], [3, 4]], [1.0, 0.0], _dev)
checks.expect_tensor(_X, "The features X, from a nested list of ints,", shape=(2, 2), dtype=torch.float32, device=_dev,
                     why="Features are float32 whatever the input holds: a list of Python ints would otherwise "
                         "become int64.")
checks.expect_tensor(_y, "The labels y, from a list of floats,", shape=(2,), dtype=torch.int64, device=_dev,
                     why="Class labels are int64 class indices, whatever type the list holds.")

_f32 = np.ones((3, 2), dtype=np.float32)
_l64 = np.array([1, 0, 1], dtype=np.int64)
_X, _y = to_tensors(_f32, _l64, _dev)
_f32[0, 0] = -7.0
_l64[0] = 5
checks.expect(_X[0, 0].item() == 1.0,
              "After to_tensors returned, changing the caller's float32 NumPy array changed X: X shares memory "
              "with it. torch.from_numpy and torch.as_tensor reuse an array's memory whenever its dtype already "
              "fits, so a later write on either side shows up on the other. Give X storage of its own (a copy).")
checks.expect(_y[0].item() == 1,
              "After to_tensors returned, changing the caller's int64 NumPy labels changed y: y shares memory "
              "with them (an int64 array needs no conversion, so nothing was copied). Give y storage of its own.")

with checks.seeded(0):
    _t = torch.rand(3, 2, device=_dev)
_tl = torch.tensor([2, 0, 1], device=_dev)
_X, _y = to_tensors(_t, _tl, _dev)
checks.expect(not checks.same_storage(_X, _t) and not checks.same_storage(_y, _tl),
              "For a float32 tensor (or int64 labels) already on the device, to_tensors handed back the "
              "caller's own memory. .to(), .float() and torch.as_tensor return the very same tensor when "
              "nothing needs converting, so the result must be copied (.clone()) to be your own.")
checks.expect_close(_X, _t, "The features X, from a float32 tensor,", why="X should hold the same numbers as the features.")

_X, _y = to_tensors(_f64, _lab, torch.device("meta"))
checks.expect_tensor(_X, "The features X, for device=meta,", shape=(4, 3), dtype=torch.float32, device="meta",
                     why="Create X on the device you are given (device=...), not on a default one.")
checks.expect_tensor(_y, "The labels y, for device=meta,", shape=(4,), dtype=torch.int64, device="meta",
                     why="Create y on the device you are given (device=...), not on a default one.")

_meta = torch.device("meta")   # tensors handed over on a device other than the CPU: no detour allowed
try:
    _X, _y = to_tensors(torch.empty(4, 3, dtype=torch.float64, device=_meta),
                        torch.empty(4, dtype=torch.float64, device=_meta), _meta)
except (RuntimeError, NotImplementedError, TypeError) as _err:
    checks.expect("meta" not in str(_err),
                  "to_tensors failed for features and labels that are tensors on the meta device (shapes, no "
                  "values): it converts tensors through NumPy, Python lists or the CPU. A tensor on a GPU cannot "
                  "become a NumPy array without a copy to the CPU and back. Convert tensors with tensor "
                  "operations: torch.as_tensor accepts tensors as well as arrays and lists (see Hint 1).")
    raise
checks.expect_tensor(_X, "The features X, from a float64 tensor on the meta device,", shape=(4, 3), dtype=torch.float32,
                     device="meta", why="A tensor stays on its device and becomes float32.")
checks.expect_tensor(_y, "The labels y, from a float64 tensor on the meta device,", shape=(4,), dtype=torch.int64,
                     device="meta", why="Labels stay on their device and become int64 class indices.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-broadcasting"
# ## 2 · Broadcasting: shapes that stretch
#
# Element-wise operations (`+`, `-`, `*`, `/`, comparisons, `torch.maximum`, ...) pair up
# entries at the same position. When the two shapes differ, PyTorch tries to **broadcast**
# them: it lines the shapes up **from the right**, treats a missing dimension on the left as
# size 1, and then in every position needs the two sizes to be equal, or one of them to be 1.
# A size-1 dimension is stretched to the other size, without copying anything (the stretched
# tensor steps over the same value again and again). In every position the result has the
# size that is not 1 (or 1, when both are).
#
# ```text
#      (4, 3)          (2, 1, 5)           (3,)
#    +    (3,)       *    (4, 1)         - (3, 1)
#    = (4, 3)        = (2, 4, 5)         = (3, 3)     <- read this one twice
# ```
#
# The first is what broadcasting is for: one bias vector added to every row. The third is its
# most famous trap. A `(3,)` tensor lines up as a row `(1, 3)`, a `(3, 1)` tensor is a column,
# and together they make a 3 × 3 grid of *every* pair. If you meant "entry i with entry i",
# you silently computed N² differences instead of N, and a later `.mean()` hides the evidence
# in a single, plausible number. A shape error stops you; broadcasting turns some shape
# errors into wrong answers. Make your intent visible instead: `x[:, None]` (or
# `x.unsqueeze(1)`) adds a size-1 dimension exactly where you want one, and `x.reshape(-1)`
# flattens.
#
# ### Exercise 3 · The rule, by hand
#
# Write `broadcast_shape(s1, s2)`: given two shapes as tuples of ints, return the shape of
# the broadcast result as a tuple of ints, or raise `ValueError` when the two cannot be
# broadcast. Use plain Python, not `torch.broadcast_shapes` or NumPy's twin: the point is to
# own the rule. (You can compare your answers with `torch.broadcast_shapes` in a cell of your
# own.)
#
# <details><summary>Hint 1</summary>
#
# Walk the positions from the right: position `i` (counting 1, 2, ... from the end) holds
# `s[-i]` if the shape is long enough, and counts as size 1 otherwise.
# </details>
#
# <details><summary>Hint 2</summary>
#
# In each position: equal sizes give that size; if one size is 1, the result is the other
# size; anything else is an error. Collect the sizes, then reverse them.
# </details>

# %% role="answer" grade_id="broadcast-shape"
def broadcast_shape(s1, s2):
    """The shape that broadcasting s1 against s2 gives, as a tuple; ValueError if impossible."""
    ### BEGIN SOLUTION
    result = []
    for i in range(1, max(len(s1), len(s2)) + 1):
        a = s1[-i] if i <= len(s1) else 1
        b = s2[-i] if i <= len(s2) else 1
        if a != b and a != 1 and b != 1:
            raise ValueError(f"sizes {a} and {b} cannot be broadcast together")
        result.append(b if a == 1 else a)
    return tuple(reversed(result))
    ### END SOLUTION


# %% role="test" grade_id="test-broadcast-sanity" points=1
for _s1, _s2 in [((4, 3), (3,)), ((2, 1, 5), (4, 1))]:
    try:
        broadcast_shape(_s1, _s2)
    except ValueError:
        checks.expect(False, f"Your broadcast_shape({_s1}, {_s2}) raised ValueError, but these shapes can be "
                             "broadcast: line them up from the right; a missing dimension counts as size 1, and a size of 1 "
                             "stretches to match the other size.")
checks.expect_equal(broadcast_shape((4, 3), (3,)), (4, 3), "Your broadcast_shape((4, 3), (3,))",
                    why="A (3,) vector added to a (4, 3) matrix is added to every row. Return a tuple of ints.")
checks.expect_equal(broadcast_shape((2, 1, 5), (4, 1)), (2, 4, 5), "Your broadcast_shape((2, 1, 5), (4, 1))")
try:
    checks.expect_raises(ValueError, broadcast_shape, (2, 3), (3, 2),
                         message="Your broadcast_shape((2, 3), (3, 2)) should raise ValueError: 3 meets 2 in the last "
                                 "position, and neither is 1.")
except checks.CheckFailure:
    raise
except Exception as _err:
    checks.expect(False, f"Your broadcast_shape((2, 3), (3, 2)) raised {type(_err).__name__}; the exercise asks for "
                         "ValueError (raise ValueError(...)), the exception Python uses for a value it cannot work with.")
print("broadcast_shape passes the visible examples")

# %% role="test" grade_id="test-broadcast" points=2
# Hidden tests compare broadcast_shape with PyTorch's own rule on many pairs of shapes, and check that it
# works the rule out in plain Python (without asking PyTorch or NumPy).
### BEGIN HIDDEN TESTS
import random as _random
from unittest import mock as _mock

_rng = _random.Random(0)
_pairs = [((), (2, 3)), ((5, 1, 4), (3, 1)), ((1,), (7,)), ((2, 1), (8, 4, 3)),
          ((3,), (3, 1)), ((6, 1, 2), (1, 5, 1)), ((4,), (5,)), ((1, 1), ())]
for _ in range(60):
    _pairs.append(tuple(tuple(_rng.choice((1, 1, 2, 3)) for _ in range(_rng.randint(0, 4))) for _ in range(2)))
_rule = ("Line the shapes up from the right (the last dimensions meet); a missing dimension counts "
         "as size 1; in each position the sizes must be equal or one of them 1, and the result takes "
         "the size that is not 1.")
for _s1, _s2 in _pairs:
    try:
        _want = tuple(torch.broadcast_shapes(_s1, _s2))
    except RuntimeError:
        _want = None
    try:
        _got = broadcast_shape(_s1, _s2)
    except ValueError:
        _got = ValueError
    except Exception as _err:
        if _want is not None:
            raise
        checks.expect(False, f"Your broadcast_shape({_s1}, {_s2}) raised {type(_err).__name__}; shapes that cannot "
                             "be broadcast should raise ValueError (raise ValueError(...)).")
    if _want is None:
        checks.expect(_got is ValueError,
                      f"Your broadcast_shape({_s1}, {_s2}) should raise ValueError: in some position the two "
                      "sizes differ and neither is 1, so neither can be stretched onto the other. " + _rule)
    else:
        checks.expect(_got is not ValueError,
                      f"Your broadcast_shape({_s1}, {_s2}) raised ValueError, but these shapes can be broadcast. "
                      + _rule)
        checks.expect_equal(_got, _want, f"Your broadcast_shape({_s1}, {_s2})", why=_rule, show=False)

_asked = []
def _spy(owner, name):
    _real = getattr(owner, name)
    def _spy_fn(*args, **kwargs):
        _asked.append(name)
        return _real(*args, **kwargs)
    return _mock.patch.object(owner, name, _spy_fn)

# The library functions that would answer for you: torch's (any torch call is counted) and NumPy's.
with _spy(torch, "broadcast_shapes"), _spy(np, "broadcast_shapes"), _spy(np, "broadcast"), \
     _spy(np, "broadcast_to"), _spy(np, "broadcast_arrays"), _spy(np, "empty"), _spy(np, "zeros"), \
     _spy(np, "ones"), checks.TorchCallCounter() as _counter:
    for _s1, _s2 in _pairs[:8]:
        try:
            broadcast_shape(_s1, _s2)
        except ValueError:
            pass
checks.expect(not _asked and _counter.total == 0,
              "Your broadcast_shape asks a library for the answer (torch.broadcast_shapes, np.broadcast_shapes, "
              "or arrays made to be broadcast). The exercise asks you to apply the rule yourself, in plain "
              "Python, on the tuples: " + _rule[0].lower() + _rule[1:])
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-mse"
# ### Exercise 4 · Fix a broken snippet: the bug that does not crash
#
# A model with one output returns predictions of shape `(N, 1)`; the targets usually come as
# `(N,)`. The function `mse_broken` below runs, returns a single number, and is wrong. Run its
# cell and compare it with the value computed by hand.
#
# Then write the fixed `mse(pred, target)`: the mean over the N examples of
# `(prediction - target)²`, each prediction paired with **its own** target. Each of `pred` and
# `target` may have shape `(N,)` or `(N, 1)`, in any combination. Return a 0-d tensor, built
# with tensor operations so that it stays connected to the graph (a loss must be able to
# call `backward()`).
#
# <details><summary>Hint 1</summary>
#
# In a cell of your own, print `(pred_example - target_example).shape`. How many
# differences did you expect?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Give both tensors the same one-dimensional shape before subtracting. The end of section 2
# names an operation that flattens a tensor whatever its shape.
# </details>

# %% role="locked" grade_id="mse-broken"
def mse_broken(pred, target):
    """Mean squared error between predictions and targets (broken)."""
    return ((pred - target) ** 2).mean()


pred_example = torch.tensor([[2.0], [0.0], [1.0]])   # a model's output: shape (3, 1)
target_example = torch.tensor([1.0, 0.0, 3.0])       # one target per example: shape (3,)
print("mse_broken gives:", round(mse_broken(pred_example, target_example).item(), 4))
print("by hand:         ", round(((2 - 1) ** 2 + (0 - 0) ** 2 + (1 - 3) ** 2) / 3, 4))


# %% role="answer" grade_id="mse"
def mse(pred, target):
    """Mean squared error, each prediction paired with its own target; a 0-d tensor."""
    ### BEGIN SOLUTION
    return ((pred.reshape(-1) - target.reshape(-1)) ** 2).mean()
    ### END SOLUTION


# %% role="test" grade_id="test-mse-sanity" points=1
_loss = mse(pred_example, target_example)
checks.expect_tensor(_loss, "Your mse(pred_example, target_example)", shape=(),
                     why="A loss is one number kept as a 0-d tensor, so that backward() can start from it.")
checks.expect(abs(_loss.item() - 21 / 9) > 1e-4,
              "Your mse(pred_example, target_example) gives the same number as mse_broken: the subtraction still "
              "pairs every prediction with every target. Print the shape of pred - target (see Hint 1).")
checks.expect_close(_loss, torch.tensor(5 / 3), "Your mse(pred_example, target_example)",
                    why="It should match the value computed by hand: each prediction against its own target.")
print("mse(pred_example, target_example) =", round(_loss.item(), 4))

# %% role="test" grade_id="test-mse" points=2
# Hidden tests try every combination of (N,) and (N, 1), with predictions that require grad.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
with checks.seeded(0):
    _p = torch.randn(6, device=_dev)
    _t = torch.randn(6, device=_dev)
_want = ((_p - _t) ** 2).mean()
for _ps, _ts in [((6, 1), (6,)), ((6,), (6,)), ((6,), (6, 1)), ((6, 1), (6, 1))]:
    _pp = _p.reshape(_ps).clone().requires_grad_(True)
    _tt = _t.reshape(_ts).clone()
    _name = f"Your mse(pred of shape {_ps}, target of shape {_ts})"
    try:
        _loss = mse(_pp, _tt)
    except (IndexError, RuntimeError) as _err:
        checks.expect(False, f"{_name} raised {type(_err).__name__}: {str(_err).splitlines()[0]}. Each of pred "
                             "and target may be (N,) or (N, 1), in any combination, so code that squeezes or indexes "
                             "a dimension only one of those shapes has breaks on the other. Bring both to the "
                             "same one-dimensional shape, whatever they came as (see Hint 2).")
    checks.expect_tensor(_loss, _name, shape=(), requires_grad=True, device=_dev,
                         why="Return a 0-d tensor computed with tensor operations on the inputs' device: a "
                             "loss must stay connected to the graph so that backward() can start from it.")
    checks.expect_close(_loss, _want, _name, rtol=1e-5, atol=1e-6,
                        why="The loss is the mean of N squared differences, each prediction against its own "
                            "target. When one tensor is (N, 1) and the other (N,), or one of them gained a "
                            "dimension, broadcasting pairs every prediction with every target, an (N, N) grid, and "
                            "the mean hides it. Bring both to the same one-dimensional shape before subtracting.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-matmul"
# ## 3 · Element-wise product or matrix product
#
# `A * B` is element-wise: `(A * B)[i, j] = A[i, j] · B[i, j]`. The shapes must match or
# broadcast. `A @ B` (the same as `torch.matmul(A, B)`) is the matrix product:
# `(A @ B)[i, j] = Σₖ A[i, k] · B[k, j]`. It contracts the last dimension of `A` with the
# second-to-last of `B`, so `(n, k) @ (k, m)` gives `(n, m)`. A linear layer is `x @ W + b`
# (`nn.Linear` stores its matrix the other way round, as `(out, in)`, and computes
# `x @ weight.T + bias`).
#
# The two coincide in shape only when everything is square, and that is exactly when the
# mistake goes unnoticed: with 4 examples of 4 features and a 4 × 4 weight matrix, `x * W`
# runs, returns the expected shape, and computes something else entirely.
#
# **Batches of matrices.** `@` treats every dimension before the last two as a *batch*
# dimension: `(B, n, k) @ (B, k, m)` performs B independent matrix products and returns
# `(B, n, m)`. The batch dimensions broadcast too: `(B, n, k) @ (k, m)` applies one matrix to
# every member of the batch. One call replaces a Python loop over the batch, and keeps the
# whole computation in PyTorch's compiled code (and on the GPU, when there is one).
#
# ### Exercise 5 · Batched affine maps
#
# Write `batched_affine(x, W, b)` for B groups of points, each group with its own affine map:
# - `x` has shape `(B, N, D)`: group `k` holds N points of dimension D;
# - `W` has shape `(B, D, E)` and `b` has shape `(B, E)`: the matrix and offset of group `k`;
# - the result has shape `(B, N, E)`, and its group `k` is `x[k] @ W[k] + b[k]`.
#
# Use whole-tensor operations: no Python loop over the groups.
#
# <details><summary>Hint 1</summary>
#
# Write the shapes down. `x @ W` already has shape `(B, N, E)`. What shape must the offsets
# have so that `b[k]` is added to each of the N rows of group `k`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Broadcasting lines shapes up from the right: `(B, E)` against `(B, N, E)` pairs B with N,
# not with B. Give `b` an extra size-1 dimension in the right place, so that it lines up with
# `(B, N, E)` position by position (section 2 shows how to add one).
# </details>

# %% role="answer" grade_id="batched-affine"
def batched_affine(x, W, b):
    """(B, N, D) points, (B, D, E) matrices, (B, E) offsets -> (B, N, E): x[k] @ W[k] + b[k]."""
    ### BEGIN SOLUTION
    return x @ W + b.unsqueeze(1)
    ### END SOLUTION


# %% role="test" grade_id="test-affine-sanity" points=1
_x = torch.ones(2, 5, 3, device=checks.DEVICE)
_W = torch.ones(2, 3, 4, device=checks.DEVICE)
_b = torch.zeros(2, 4, device=checks.DEVICE)
_out = batched_affine(_x, _W, _b)
checks.expect_tensor(_out, "Your batched_affine(x, W, b) for x (2, 5, 3), W (2, 3, 4), b (2, 4)", shape=(2, 5, 4),
                     why="Each group maps its N points from D = 3 to E = 4 dimensions.")
checks.expect_close(_out, torch.full((2, 5, 4), 3.0, device=checks.DEVICE), "Your batched_affine(ones, ones, zeros)",
                    why="Each output entry sums D = 3 products of ones.")
print("batched_affine returns", checks.describe(_out))

# %% role="test" grade_id="test-affine" points=3
# Hidden tests: square shapes (where * and @ are easy to confuse), bias alignment, and the number of torch calls.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE


def _reference(x, W, b):
    return torch.stack([x[k] @ W[k] + b[k] for k in range(x.shape[0])])


for _B, _N, _D, _E in [(4, 4, 4, 4), (3, 5, 4, 2), (1, 2, 3, 4), (3, 3, 2, 2)]:
    with checks.seeded(_B * 10 + _N):
        _x = torch.randn(_B, _N, _D, device=_dev)
        _W = torch.randn(_B, _D, _E, device=_dev)
        _b = torch.randn(_B, _E, device=_dev)
    _name = f"Your batched_affine for x {tuple(_x.shape)}, W {tuple(_W.shape)}, b {tuple(_b.shape)}"
    _out = batched_affine(_x, _W, _b)
    checks.expect_tensor(_out, _name, shape=(_B, _N, _E), device=_dev)
    _want = _reference(_x, _W, _b)
    if _N == _D == _E and torch.allclose(_out, _x * _W + _b[:, None, :], rtol=1e-4, atol=1e-5):
        checks.expect(False, f"{_name} multiplied x and W element-wise: * pairs entries at the same position, "
                             "while an affine map needs the matrix product, @ (torch.matmul), which sums over the "
                             "shared dimension. With square shapes both run, so the shape alone cannot warn you.")
    if _B == _N and torch.allclose(_out, _x @ _W + _b, rtol=1e-4, atol=1e-5):
        checks.expect(False, f"{_name} added the offsets to the wrong rows. Broadcasting lines shapes up from "
                             "the right, so a (B, E) tensor meets (B, N, E) as (1, B, E): group k's points got "
                             "the offsets of every group in turn. Insert a size-1 dimension so B meets B.")
    checks.expect_close(_out, _want, _name, rtol=1e-4, atol=1e-5,
                        why="Group k is x[k] @ W[k] + b[k]: a matrix product (@) followed by one offset "
                            "added to each of the group's N rows.")

with checks.seeded(1):
    _args_small = (torch.randn(2, 3, 4, device=_dev), torch.randn(2, 4, 5, device=_dev), torch.randn(2, 5, device=_dev))
    _args_big = (torch.randn(16, 12, 9, device=_dev), torch.randn(16, 9, 7, device=_dev), torch.randn(16, 7, device=_dev))
_, _count_small = checks.count_torch_calls(batched_affine, *_args_small)
_, _count_big = checks.count_torch_calls(batched_affine, *_args_big)
checks.expect(_count_big.total <= _count_small.total + 2,
              f"Your batched_affine made {_count_small.total} torch calls for 2 groups of 3 points but "
              f"{_count_big.total} for 16 groups of 12 points: the number of calls grows with the input, the "
              "mark of a Python loop (over the groups, the points or the dimensions). @ treats leading "
              "dimensions as batch dimensions, so one call maps every point of every group, and one "
              "broadcast addition adds every offset.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-reductions"
# ## 4 · Reductions, and the dimension they remove
#
# A **reduction** (`sum`, `mean`, `max`, `argmax`, `torch.linalg.vector_norm`, ...) combines
# the entries along a dimension into one. By default that dimension disappears: for `x` of
# shape `(N, D)`, `x.sum(dim=1)` has shape `(N,)`. With `keepdim=True` it stays, with size 1:
# `(N, 1)`. `dim=-1` means "the last dimension", which keeps code working when extra leading
# dimensions appear.
#
# The difference matters the moment you combine the result with the tensor it came from.
# Dividing `x` (N, D) by per-row totals of shape `(N,)` lines N up with D (from the right, as
# always): an error when N ≠ D, and, when N = D (a batch of 32 examples of 32 features, say),
# a silent division of entry `[i, j]` by the total of **row j**. Totals of shape `(N, 1)` are
# a column, and each row meets its own. The habit: when a reduced result is going to be
# broadcast back against its source, keep the dimension.
#
# ### Exercise 6 · Row normalisation
#
# Write `normalise_rows(x)` for `x` of shape `(..., D)` (any number of leading dimensions):
# return a **new** tensor in which every vector along the last dimension is divided by its
# own Euclidean length `√(Σ xᵢ²)`, so that each has length 1. Do not change `x` (the caller
# still needs it). You may assume no vector is all zeros.
#
# <details><summary>Hint 1</summary>
#
# `torch.linalg.vector_norm(x, dim=..., keepdim=...)` (or `x.norm(...)`) computes
# Euclidean lengths along a dimension.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Test your function on a square input, such as `torch.randn(4, 4)`, and check that every row
# of the result has length 1. A bug that needs N ≠ D to show itself will pass on square data.
# </details>

# %% role="answer" grade_id="normalise-rows"
def normalise_rows(x):
    """A new tensor: each vector along the last dimension of x divided by its Euclidean length."""
    ### BEGIN SOLUTION
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    ### END SOLUTION


# %% role="test" grade_id="test-normalise-sanity" points=1
_x = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], device=checks.DEVICE)
_out = normalise_rows(_x)
checks.expect_tensor(_out, "Your normalise_rows(x) for x of shape (2, 3)", shape=(2, 3), dtype=torch.float32)
checks.expect_close(_out, torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], device=checks.DEVICE),
                    "Your normalise_rows(x)", why="Divide each row by its own length: the row (3, 4, 0) has length 5.")
print("normalise_rows works on a small example")

# %% role="test" grade_id="test-normalise" points=3
# Hidden tests: square batches, more than two dimensions, and the caller's tensor left unchanged.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
with checks.seeded(0):
    _cases = {
        "a (4, 4) batch": torch.randn(4, 4, device=_dev),
        "a (5, 3) batch": torch.randn(5, 3, device=_dev),
        "a (2, 3, 3) batch": torch.randn(2, 3, 3, device=_dev),
        "a (3, 3, 3) batch": torch.randn(3, 3, 3, device=_dev),
    }
for _name, _x in _cases.items():
    _before = _x.clone()
    _out = normalise_rows(_x)
    checks.expect(torch.equal(_x, _before),
                  f"Your normalise_rows changed the caller's tensor ({_name}). A function receives the caller's "
                  "tensor itself, not a copy, so an in-place operation (x /= ..., x.div_(...)) rewrites data the "
                  "caller still needs. Compute a new tensor instead (out of place: x / ...).")
    checks.expect_tensor(_out, f"Your normalise_rows on {_name}", shape=tuple(_x.shape), device=_dev)
    _want = _x / torch.linalg.vector_norm(_x, dim=-1, keepdim=True)
    try:
        _dropped = _x / torch.linalg.vector_norm(_x, dim=-1)
    except RuntimeError:
        _dropped = None
    if _dropped is not None and torch.allclose(_out, _dropped, rtol=1e-4, atol=1e-5):
        checks.expect(False, f"Your normalise_rows on {_name} divided by lengths that lost their dimension: "
                             "without keepdim=True, the reduced lengths line up with the last axis, so entry "
                             "[..., i, j] was divided by the length of vector j instead of vector i. Keep the "
                             "reduced dimension (keepdim=True) so each vector meets its own length.")
    checks.expect_close(_out, _want, f"Your normalise_rows on {_name}", rtol=1e-4, atol=1e-5,
                        why="Each vector along the last dimension is divided by its own Euclidean length: "
                            "reduce over dim=-1 and keep that dimension so the lengths broadcast back onto "
                            "their own vectors.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-inplace"
# ## 5 · In place or out of place
#
# Most operations are **out of place**: `y = x * 2` allocates new storage for `y` and leaves
# `x` alone. Their **in-place** twins end in an underscore (`x.mul_(2)`, `x.add_(1)`,
# `x.clamp_(0, 1)`, `x.zero_()`); augmented assignment (`x *= 2`), item assignment
# (`x[0] = 5`) and `x.copy_(y)` are in place too. They write into the storage `x` already has:
# no new memory, but every tensor that shares that storage sees the change.
#
# Two facts make this matter:
# - A function receives the caller's tensor object itself. Inside it, `x /= n` rewrites the
#   caller's data, whereas `x = x / n` builds a new tensor and only rebinds the local name
#   `x`: the caller's tensor is untouched.
# - A view (section 7) shares its base's storage, so writing into a view in place writes into
#   the base. That is how `x[:, 0] = 0` changes a column of `x`.
#
# (Notebook 01 showed a third: autograd refuses in-place changes to tensors it needs for the
# backward pass.) The default is out of place. In-place operations are for code
# whose *job* is to update existing state (an optimiser updating weights, a buffer of
# running statistics), and PyTorch's convention names such functions with a trailing
# underscore.
#
# ### Exercise 7 · The in-place twin
#
# Write `normalise_rows_(x)`: the same normalisation as `normalise_rows`, but **in place**:
# afterwards the caller's tensor `x` holds the normalised vectors, and the function returns
# `x` itself, as PyTorch's own in-place methods do. It must also work when `x` is a view into
# a larger tensor, whatever its layout (a block of rows, or a few columns of every row): then
# the larger tensor's entries change.
#
# <details><summary>Hint 1</summary>
#
# Compute the lengths first (a new, small tensor), then divide `x` by them with an in-place
# operation such as `x.div_(...)` or `x /= ...`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `x = x / lengths` inside the function does not change the caller's tensor, and neither
# does pointing `x.data` at new memory when `x` is a view: the larger tensor never sees it.
# </details>

# %% role="answer" grade_id="normalise-rows-inplace"
def normalise_rows_(x):
    """Normalise the vectors along the last dimension of x in place; return x."""
    ### BEGIN SOLUTION
    x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True))
    return x
    ### END SOLUTION


# %% role="test" grade_id="test-normalise-inplace-sanity" points=1
_x = torch.tensor([[3.0, 4.0], [0.0, 5.0]], device=checks.DEVICE)
_out = normalise_rows_(_x)
checks.expect_close(_x, torch.tensor([[0.6, 0.8], [0.0, 1.0]], device=checks.DEVICE), "The caller's x after normalise_rows_(x)",
                    why="normalise_rows_ must work in place: the caller's tensor x itself should now hold unit-length "
                        "rows. x = x / ... only rebinds a local name; an in-place operation writes into x's memory.")
checks.expect(_out is _x, "Your normalise_rows_(x) should return x itself (the same tensor object), as PyTorch's in-place "
                          "methods do.")
print("normalise_rows_ changed x in place")

# %% role="test" grade_id="test-normalise-inplace" points=2
# Hidden tests: views into a larger tensor (the larger tensor must change), one of them not contiguous,
# and more than two dimensions.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
with checks.seeded(1):
    _big = torch.randn(5, 3, device=_dev)
    _cube = torch.randn(2, 3, 3, device=_dev)
_before = _big.clone()
_rows = _big[1:4]
_ret = normalise_rows_(_rows)
checks.expect(torch.equal(_big[0], _before[0]) and torch.equal(_big[4], _before[4]),
              "Your normalise_rows_(big[1:4]) changed rows of big outside the view it was given.")
if torch.allclose(_big[1:4], _before[1:4] / torch.linalg.vector_norm(_before[1:4], dim=-1), rtol=1e-4, atol=1e-5):
    checks.expect(False, "Your normalise_rows_ divided by lengths that lost their dimension: without keepdim=True "
                         "the (3,) lengths of a (3, 3) tensor line up with the last axis, so entry [i, j] was "
                         "divided by the length of row j instead of row i. Keep the reduced dimension.")
checks.expect_close(_big[1:4], _before[1:4] / torch.linalg.vector_norm(_before[1:4], dim=-1, keepdim=True),
                    "The view big[1:4], after normalise_rows_(big[1:4]),",
                    why="big[1:4] is a view: it shares big's storage, so an in-place operation on it writes into "
                        "big. Replacing x's data (x.data = ...) or rebinding the name (x = ...) points at new "
                        "memory that big never sees. Divide in place (x.div_(...) or x /= ...).")
checks.expect(_ret is _rows, "Your normalise_rows_(x) should return x itself (the same tensor object).")
_cube_before = _cube.clone()
normalise_rows_(_cube)
checks.expect_close(_cube, _cube_before / torch.linalg.vector_norm(_cube_before, dim=-1, keepdim=True),
                    "a (2, 3, 3) tensor after normalise_rows_",
                    why="Normalise along the last dimension, whatever the number of leading dimensions, and keep "
                        "the reduced dimension so each vector meets its own length.")
with checks.seeded(2):
    _grid = torch.randn(2, 4, 6, device=_dev)
_grid_before = _grid.clone()
_inside = torch.zeros(2, 4, 6, dtype=torch.bool, device=_dev)
_inside[:, 1:3, 1:4] = True
_part = _grid[:, 1:3, 1:4]   # a 2 x 3 block of each matrix: a view, but not a contiguous one
_ret = normalise_rows_(_part)
checks.expect(torch.equal(_grid[~_inside], _grid_before[~_inside]),
              "Your normalise_rows_(grid[:, 1:3, 1:4]) changed entries of grid outside the view it was given.")
checks.expect(not torch.equal(_grid, _grid_before),
              "Your normalise_rows_(grid[:, 1:3, 1:4]) left grid unchanged. That view is not contiguous (it picks "
              "a block out of each matrix), so reshape, flatten or .contiguous() make a copy of it, and an "
              "in-place operation on the copy never reaches grid. Divide x itself in place: an in-place "
              "operation on a view writes through its strides, whatever its layout.")
_block = _grid_before[:, 1:3, 1:4]
checks.expect_close(_grid[:, 1:3, 1:4], _block / torch.linalg.vector_norm(_block, dim=-1, keepdim=True),
                    "The view grid[:, 1:3, 1:4], after normalise_rows_(grid[:, 1:3, 1:4]),",
                    why="Each vector along the last dimension of the view is divided by its own length, in place.")
checks.expect(_ret is _part, "Your normalise_rows_(x) should return x itself (the same tensor object).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-memory"
# ## 6 · Inside a tensor: storage, strides and offset
#
# Now the two fields of metadata we skipped. To find entry `[i, j, k]`, PyTorch computes a
# position in the flat storage:
#
# `position = offset + i · stride[0] + j · stride[1] + k · stride[2]`
#
# The **strides** (`t.stride()`) say how many storage slots to skip to move one step along
# each dimension; the **offset** (`t.storage_offset()`) says where entry `[0, 0, 0]` sits. A
# freshly made `(3, 4)` tensor stores its rows one after another (row-major order), so its
# strides are `(4, 1)`: the next entry of a row is 1 slot further, the next row starts 4
# slots further. Many operations just write new strides and offsets over the same storage,
# moving no data at all:
#
# | operation | shape | strides | offset |
# |---|---|---|---|
# | `x = torch.arange(12.).reshape(3, 4)` | (3, 4) | (4, 1) | 0 |
# | `x.T` (transpose) | (4, 3) | (1, 4) | 0 |
# | `x[1:]` | (2, 4) | (4, 1) | 4 |
# | `x[:, ::2]` | (3, 2) | (4, 2) | 0 |
# | `x[0].expand(3, 4)` | (3, 4) | (0, 1) | 0 |
#
# A tensor is **contiguous** when its strides are exactly those of a fresh row-major tensor
# of its shape (a dimension of size 1 is never stepped along, so its stride does not count).
# `x` is contiguous; `x.T` is not: walking it row by row jumps around the storage.
#
# **`view` versus `reshape`.** `t.view(new_shape)` reinterprets the same storage with a new
# shape, which is only possible when some strides describe the new shape over the existing
# layout. Merging two dimensions into one needs their entries to sit evenly spaced in
# storage; after a `transpose` or `permute` they usually do not, and `view` raises
# *"view size is not compatible with input tensor's size and stride"*. `t.reshape(new_shape)`
# returns a view when one is possible and **copies** otherwise. `t.contiguous()` copies into
# fresh row-major storage (and returns `t` itself if it is already contiguous).
#
# ### Exercise 8 · The memory model by hand
#
# Write three small functions in plain Python arithmetic on the metadata (the shape,
# `t.stride()`, `t.storage_offset()`): never the tensor's values, and without asking PyTorch
# for the answer.
# - `contiguous_strides(shape)`: the strides, as a tuple of ints, of a fresh row-major tensor
#   of that shape (all sizes are at least 1; `()` for a 0-d shape), worked out from the shape
#   alone, without making a tensor.
# - `storage_index(t, index)`: the position in `t`'s storage of the entry `t[index]`, as an
#   int, where `index` is a tuple of non-negative ints, one per dimension. (The tests also
#   pass tensors on the `meta` device, which have all the metadata but no values.)
# - `looks_contiguous(t)`: `True` when `t`'s strides are those of a fresh row-major tensor of
#   its shape, ignoring dimensions of size 1; `False` otherwise. Work it out from the
#   strides, without calling `t.is_contiguous()` or `t.contiguous()`.
#
# <details><summary>Hint 1</summary>
#
# The last dimension has stride 1. Each earlier dimension's stride is the product of the
# sizes of all dimensions after it: build the tuple from the right.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `storage_index` is the formula at the top of this section. Views such as `x[1:]` start
# part-way into the storage, and views such as `x.T` have strides of their own.
# </details>

# %% role="answer" grade_id="memory-model"
def contiguous_strides(shape):
    """Strides (in elements) of a fresh, row-major tensor of this shape."""
    ### BEGIN SOLUTION
    strides = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))
    ### END SOLUTION


def storage_index(t, index):
    """Position in t's storage of the entry t[index]."""
    ### BEGIN SOLUTION
    return t.storage_offset() + sum(i * s for i, s in zip(index, t.stride()))
    ### END SOLUTION


def looks_contiguous(t):
    """True when t's strides are row-major for its shape (dimensions of size 1 ignored)."""
    ### BEGIN SOLUTION
    expected = contiguous_strides(tuple(t.shape))
    return all(size == 1 or s == e for size, s, e in zip(t.shape, t.stride(), expected))
    ### END SOLUTION


# %% role="test" grade_id="test-memory-sanity" points=1
checks.expect_equal(contiguous_strides((3, 4)), (4, 1), "Your contiguous_strides((3, 4))",
                    why="In a fresh (3, 4) tensor the next entry of a row is 1 slot further on, and the next row "
                        "starts 4 slots further on. Return a tuple of ints.")
_x = torch.arange(12, device=checks.DEVICE).reshape(3, 4)
checks.expect_equal(storage_index(_x, (1, 2)), 6, "Your storage_index(x, (1, 2)) for x = torch.arange(12).reshape(3, 4)")
checks.expect(looks_contiguous(_x) is True and looks_contiguous(_x.T) is False,
              "Your looks_contiguous should return True for a fresh tensor x and False for x.T (as a bool).")
print("the memory-model functions pass the visible examples")

# %% role="test" grade_id="test-contiguous-strides" points=1
# Hidden tests compare with the strides PyTorch gives fresh tensors of many shapes, and check that
# contiguous_strides works them out without making a tensor.
### BEGIN HIDDEN TESTS
import random as _random

_got, _counter = checks.count_torch_calls(contiguous_strides, (2, 3, 4))
checks.expect(_counter.total == 0,
              "Your contiguous_strides(shape) makes a tensor (or asks PyTorch) to read its strides. The exercise "
              "is to work them out from the shape alone, in plain Python: the last dimension has stride 1, and "
              "each earlier dimension's stride is the product of the sizes of all the dimensions after it.")
_rng = _random.Random(1)
_shapes = [(), (5,), (2, 3, 4), (1, 7), (7, 1), (2, 1, 3, 1), (64, 3, 224, 224)]
_shapes += [tuple(_rng.randint(1, 6) for _ in range(_rng.randint(1, 5))) for _ in range(20)]
for _s in _shapes:
    _want = tuple(torch.empty(_s, device="meta").stride())
    checks.expect_equal(contiguous_strides(_s), _want, f"Your contiguous_strides({_s})", show=False,
                        why="The last dimension has stride 1, and each earlier dimension's stride is the product "
                            "of the sizes of all the dimensions after it (row-major order).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-storage-index" points=2
# Hidden tests: transposes, offsets, steps and expanded views, checked against where each entry really sits,
# and the same views on the meta device (metadata, no values).
### BEGIN HIDDEN TESTS
import itertools as _itertools

_dev = checks.DEVICE
_base = torch.arange(24, device=_dev)   # storage slot k holds the number k
_x = _base.reshape(2, 3, 4)
_views = {
    "x (fresh)": _x,
    "x.transpose(0, 2)": _x.transpose(0, 2),
    "x[1]": _x[1],
    "x[:, 1:, ::2]": _x[:, 1:, ::2],
    "x.permute(1, 2, 0)[1:]": _x.permute(1, 2, 0)[1:],
    "x[1, 2].expand(3, 4)": _x[1, 2].expand(3, 4),
}
_meta_x = torch.empty(24, device="meta").reshape(2, 3, 4)   # the same views: metadata, but no values
_meta_views = {
    "x (fresh)": _meta_x,
    "x.transpose(0, 2)": _meta_x.transpose(0, 2),
    "x[1]": _meta_x[1],
    "x[:, 1:, ::2]": _meta_x[:, 1:, ::2],
    "x.permute(1, 2, 0)[1:]": _meta_x.permute(1, 2, 0)[1:],
    "x[1, 2].expand(3, 4)": _meta_x[1, 2].expand(3, 4),
}
for _name, _v in _views.items():
    _values = _v.cpu()   # a copy for reading; storage_index gets the view itself
    _naive = tuple(torch.empty(tuple(_v.shape), device="meta").stride())
    for _idx in _itertools.product(*(range(n) for n in _v.shape)):
        _got = storage_index(_v, _idx)
        checks.expect(type(_got) is int, f"Your storage_index({_name}, {_idx}) should return an int.")
        try:
            _got_meta = storage_index(_meta_views[_name], _idx)
        except (RuntimeError, NotImplementedError) as _err:
            checks.expect("meta" not in str(_err),
                          f"Your storage_index({_name}, {_idx}) failed on a meta tensor, which has the metadata but "
                          "no values: it reads the tensor's entries. The position of an entry comes from the "
                          "metadata alone: the offset plus, for every dimension, the index times that "
                          "dimension's stride.")
            raise
        checks.expect(_got_meta == _got,
                      f"Your storage_index({_name}, {_idx}) gave another answer for the same view on the meta device "
                      "(same shape, strides and offset, but no values): it depends on the tensor's values. The "
                      "position of an entry comes from the metadata alone.")
        _want = int(_values[_idx])
        if _got == _want:
            continue
        _off = _v.storage_offset()
        checks.expect(not (_off and _got == _want - _off),
                      f"Your storage_index({_name}, {_idx}) is off by the view's storage offset. A view that starts "
                      "part-way into the storage (x[1], x[:, 1:]) records where its first entry sits in "
                      "t.storage_offset(), and every position is counted from there.")
        checks.expect(_got != _off + sum(i * s for i, s in zip(_idx, _naive)),
                      f"Your storage_index({_name}, {_idx}) used the strides a fresh tensor of that shape would have. "
                      "A view has strides of its own (t.stride()): after a transpose, a step or an expand they "
                      "are not row-major.")
        checks.expect(False, f"Your storage_index({_name}, {_idx}) is not where that entry sits in the storage. The "
                             "position is the offset plus, for every dimension, the index times that "
                             "dimension's stride.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-looks-contiguous" points=1
# Hidden tests compare looks_contiguous with PyTorch on views, including ones with dimensions of size 1.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
_x = torch.arange(24.0, device=_dev).reshape(2, 3, 4)
_cases = {
    "x": _x,
    "x.transpose(1, 2)": _x.transpose(1, 2),
    "x[:, :, :2]": _x[:, :, :2],
    "x[1] (an offset, but row-major)": _x[1],
    "x[:, ::2]": _x[:, ::2],
    "x.transpose(1, 2).contiguous()": _x.transpose(1, 2).contiguous(),
    "x[:, :1, :]": _x[:, :1, :],
    "x.unsqueeze(1).transpose(0, 1) (a size-1 dimension in front)": _x.unsqueeze(1).transpose(0, 1),
    "torch.arange(4.).reshape(4, 1).T (a size-1 dimension)": torch.arange(4.0, device=_dev).reshape(4, 1).T,
}
for _name, _t in _cases.items():
    _got, _counter = checks.count_torch_calls(looks_contiguous, _t)
    _asked = sorted({k.rsplit(".", 1)[-1] for k in _counter.calls} & {"is_contiguous", "contiguous"})
    checks.expect(not _asked,
                  f"Your looks_contiguous called t.{_asked[0] if _asked else ''}(), which asks PyTorch for the answer. "
                  "Work it out from t.shape and t.stride(): compare each stride with the one a fresh row-major "
                  "tensor of that shape would have.")
    checks.expect(type(_got) is bool, f"Your looks_contiguous({_name}) should return a bool (True or False).")
    _want = _t.is_contiguous()
    if _got != _want and 1 in tuple(_t.shape):
        checks.expect(False, f"Your looks_contiguous({_name}) disagrees with PyTorch. A dimension of size 1 is never "
                             "stepped along, so its stride can be anything without changing the layout: skip "
                             "dimensions of size 1 when you compare strides.")
    checks.expect(_got == _want, f"Your looks_contiguous({_name}) disagrees with PyTorch. A tensor is contiguous when "
                                 "every stride (of a dimension larger than 1) equals the stride a fresh row-major "
                                 "tensor of the same shape would have.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-time-major"
# ### Exercise 9 · Fix a broken snippet: `view` after `transpose`
#
# Sequence models often want time first. `time_major_broken` takes a batch of sequences of
# shape `(B, T, F)` (B sequences, T time steps, F features per step) and should return a
# `(T, B·F)` tensor whose row `t` holds step `t` of sequence 0, then step `t` of sequence 1,
# and so on. Run its cell and read the error. Then write the fixed `time_major(x)`; leave
# `x` unchanged.
#
# <details><summary>Hint 1</summary>
#
# After the transpose, print `.stride()` and `.is_contiguous()` of the intermediate tensor.
# Which of section 6's operations accepts any layout?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep the transpose: skipping it gives the right shape with the entries in the wrong
# places, because reshaping alone never moves an entry from one axis to another.
# </details>

# %% role="locked" grade_id="time-major-broken"
def time_major_broken(x):
    """(B, T, F) -> (T, B * F): row t holds every sequence's step t (broken)."""
    B, T, F = x.shape
    return x.transpose(0, 1).view(T, B * F)


try:
    time_major_broken(torch.arange(12.0).reshape(2, 3, 2))
except RuntimeError as err:
    print("time_major_broken failed:", str(err).splitlines()[0])


# %% role="answer" grade_id="time-major"
def time_major(x):
    """(B, T, F) -> (T, B * F): row t holds step t of sequence 0, then of sequence 1, ..."""
    ### BEGIN SOLUTION
    B, T, F = x.shape
    return x.transpose(0, 1).reshape(T, B * F)
    ### END SOLUTION


# %% role="test" grade_id="test-time-major-sanity" points=1
_x = torch.arange(12.0, device=checks.DEVICE).reshape(2, 3, 2)   # B=2 sequences, T=3 steps, F=2 features
_out = time_major(_x)
checks.expect_tensor(_out, "Your time_major(x) for x of shape (2, 3, 2)", shape=(3, 4))
checks.expect_close(_out[0], torch.cat([_x[0, 0], _x[1, 0]]), "row 0 of time_major(x)",
                    why="Row t holds step t of sequence 0, then step t of sequence 1.")
print("time_major returns", checks.describe(_out))

# %% role="test" grade_id="test-time-major" points=2
# Hidden tests: several batch, time and feature sizes; x must be left unchanged.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
for _B, _T, _F in [(2, 3, 2), (4, 5, 3), (3, 7, 1), (5, 2, 4)]:
    with checks.seeded(_B):
        _x = torch.randn(_B, _T, _F, device=_dev)
    _before = _x.clone()
    _out = time_major(_x)
    _name = f"Your time_major(x) for x of shape {(_B, _T, _F)}"
    checks.expect_tensor(_out, _name, shape=(_T, _B * _F), device=_dev)
    _want = torch.stack([torch.cat([_x[b, t] for b in range(_B)]) for t in range(_T)])
    if not torch.allclose(_out, _want) and torch.equal(_out, _x.reshape(_T, _B * _F)):
        checks.expect(False, f"{_name} regrouped x's memory without moving any axis. view and reshape keep the "
                             "order in which entries sit in memory (all of sequence 0 first), so the time axis "
                             "must be brought to the front with a transpose before the batch and feature axes "
                             "are merged.")
    checks.expect_close(_out, _want, _name, why="Transpose batch and time, then merge batch and features with an "
                                                "operation that copies when the transposed layout cannot be viewed.")
    checks.expect(torch.equal(_x, _before), f"{_name} changed x. Leave the input as it was.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-views"
# ## 7 · Views and copies
#
# A **view** is a tensor that shares its storage with another one: its own shape, strides
# and offset over the same memory. Views cost nothing (no data moves, whatever the size),
# which is why slicing, transposing and reshaping are cheap, and they are live: a write
# through one is seen through the other. A **copy** has storage of its own.
#
# Which you get:
# - **Views:** basic indexing with integers, slices, `None` and `...`; `transpose`, `permute`,
#   `.T`; `view`; `expand`; `unsqueeze` and `squeeze`; `detach`; and `torch.from_numpy`
#   (a view of the NumPy array's memory).
# - **Copies:** advanced indexing (with a list or tensor of indices, or a boolean mask: the
#   chosen entries can be anywhere, in any order, so no strides can describe them);
#   `clone`; the result of any arithmetic; `.to()` when it changes the dtype or device.
# - **It depends:** `reshape`, `flatten` and `contiguous` return a view (or the tensor
#   itself) when the layout allows and a copy otherwise; `.to()`, `.float()` and friends
#   return the tensor itself when nothing needs to change.
#
# **How to know for sure.** `t.untyped_storage().data_ptr()` is the address where `t`'s
# storage begins: the same number for every tensor that shares that storage. Do not confuse
# it with `t.data_ptr()`, the address of `t`'s *first entry*, which moves with the offset:
# `x[1:]` has a different `data_ptr()` from `x` but the same storage.
#
# ### Exercise 10 · Predict: is this a view?
#
# For `x = torch.arange(12.0).reshape(3, 4)`, predict for each expression whether its result
# shares storage with `x` (`True`) or has storage of its own (`False`). Fill in
# `view_predictions` without running the expressions; a hidden test checks each one.
#
# <details><summary>Hint 1</summary>
#
# A view must be describable by one stride per dimension and an offset over `x`'s storage.
# For each expression, ask whether the entries it selects sit at evenly spaced positions, in
# the order the result visits them.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For the "it depends" cases, ask whether there is anything to change: is `x.T` already
# contiguous? Is `x` already float32? Can 12 entries of `x.T`, visited row by row, be found
# in storage with a single stride?
# </details>

# %% role="answer" grade_id="view-predictions"
view_predictions = {
    "x[1]": None,              # True (a view of x) or False (a copy)?
    "x[:, 1]": None,
    "x[[0, 2]]": None,
    "x[x > 5]": None,
    "x.T": None,
    "x.reshape(4, 3)": None,
    "x.T.reshape(12)": None,
    "x.T.contiguous()": None,
    "x.float()": None,
}
### BEGIN SOLUTION
view_predictions = {
    "x[1]": True,
    "x[:, 1]": True,
    "x[[0, 2]]": False,
    "x[x > 5]": False,
    "x.T": True,
    "x.reshape(4, 3)": True,
    "x.T.reshape(12)": False,
    "x.T.contiguous()": False,
    "x.float()": True,
}
### END SOLUTION

# %% role="test" grade_id="test-view-predictions" points=3
_keys = ["x[1]", "x[:, 1]", "x[[0, 2]]", "x[x > 5]", "x.T", "x.reshape(4, 3)", "x.T.reshape(12)",
         "x.T.contiguous()", "x.float()"]
checks.expect(type(view_predictions) is dict and set(view_predictions) == set(_keys),
              "The answer should define view_predictions as a dict with exactly the keys of the template.")
checks.expect(all(type(view_predictions[k]) is bool for k in _keys),
              "Every entry of view_predictions should be True or False.")
# Hidden tests evaluate each expression and compare storage pointers with x's.
### BEGIN HIDDEN TESTS
_x = torch.arange(12.0, device=checks.DEVICE).reshape(3, 4)
_concept = {
    "x[1]": "Where in x's storage do the entries that x[1] picks sit: could one offset and one stride per "
            "dimension describe them (see Hint 1)?",
    "x[:, 1]": "Where in x's storage do the entries of one column sit: could one offset and one stride "
               "describe them, though they are not side by side (see Hint 1)?",
    "x[[0, 2]]": "Indexing with a list of indices is advanced indexing: ask whether strides could describe "
                 "any selection, in any order.",
    "x[x > 5]": "Indexing with a boolean mask is advanced indexing: how many entries it picks is only known "
                "from the data.",
    "x.T": "What does a transpose have to change: the numbers in storage, or only the strides that say how "
           "to read them (section 6's table)?",
    "x.reshape(4, 3)": "reshape returns a view whenever strides can describe the new shape over the existing "
                       "layout: read x's 12 entries in storage order and ask whether a (4, 3) grid of them "
                       "needs anything moved.",
    "x.T.reshape(12)": "reshape returns a view only when strides can describe the result: visit x.T row by row "
                       "and see whether the storage positions are evenly spaced.",
    "x.T.contiguous()": "contiguous() returns the tensor itself when it is already contiguous and copies "
                        "otherwise: is x.T contiguous?",
    "x.float()": "Conversions such as .float() and .to() return the tensor itself when nothing needs to "
                 "change: what is x's dtype?",
}
_wrong = []
for _key in _keys:
    _result = eval(_key, {"x": _x, "torch": torch})
    if view_predictions[_key] != checks.same_storage(_result, _x):
        _wrong.append(_key)
checks.expect(not _wrong, ("Your prediction for " + _wrong[0] + " is not" if len(_wrong) == 1 else
                           "Your predictions for " + ", ".join(_wrong) + " are not")
              + " what PyTorch does. " + " ".join(_concept[k] for k in _wrong))
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-shares-storage"
# ### Exercise 11 · Is this a view? Ask the storage
#
# Write `shares_storage(a, b)`: `True` (a Python `bool`) when the tensors `a` and `b` are
# windows onto the same storage, `False` otherwise. It must work for any two tensors: a view
# and its base, two views of the same base, two tensors made from the same NumPy array, a
# view that starts part-way into the storage.
#
# <details><summary>Hint 1</summary>
#
# Compare where the two storages begin, not where the two tensors' first entries are: see
# the end of section 7.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Equal values prove nothing (a clone has them too), and `t._base` only links a view to the
# tensor it was made from through PyTorch's view operations: two tensors made by
# `torch.from_numpy` from one array share memory without either being the other's base.
# </details>

# %% role="answer" grade_id="shares-storage"
def shares_storage(a, b):
    """True when tensors a and b share one storage."""
    ### BEGIN SOLUTION
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    ### END SOLUTION


# %% role="test" grade_id="test-shares-storage-sanity" points=1
_x = torch.arange(6.0, device=checks.DEVICE).reshape(2, 3)
checks.expect(shares_storage(_x, _x[0]) is True, "Your shares_storage(x, x[0]) should be True (a bool): x[0] is a view of x.")
checks.expect(shares_storage(_x, _x.clone()) is False, "Your shares_storage(x, x.clone()) should be False (a bool): a clone "
                                                       "has storage of its own.")
print("shares_storage passes the visible examples")

# %% role="test" grade_id="test-shares-storage" points=2
# Hidden tests: views with offsets, two views of one base, tensors from one NumPy array, equal but separate tensors.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
_x = torch.arange(12.0, device=_dev).reshape(3, 4)
_arr = np.zeros(5, dtype=np.float32)
_cases = [
    ("x and x.clone()", _x, _x.clone(), False,
     "A clone holds equal values in storage of its own: equal values do not mean shared memory. Compare "
     "where the storages begin."),
    ("x and a separate tensor with the same values", _x, torch.arange(12.0, device=_dev).reshape(3, 4), False,
     "Equal values do not mean shared memory: compare storages, not contents."),
    ("x and x[1:] (a view that starts 4 entries in)", _x, _x[1:], True,
     "x[1:] begins part-way into x's storage, so its first entry has a different address from x's. Compare "
     "where the storages begin (untyped_storage().data_ptr()), not where the first entries are (data_ptr())."),
    ("x[1:] and x[:, 2] (two views of one base)", _x[1:], _x[:, 2], True,
     "Both are windows onto x's storage, though neither was made from the other, and their first entries "
     "sit at different addresses. Compare where the storages begin."),
    ("x and x.T", _x, _x.T, True, "A transpose is a view of the same storage."),
    ("x[0] and x[2] (two views of one base that do not overlap)", _x[0], _x[2], True,
     "Both are windows onto x's storage, even though no entry belongs to both: sharing storage is about "
     "the memory block the tensors read from, not about overlapping entries. Compare where the storages begin."),
    ("two tensors made by torch.from_numpy from one array", torch.from_numpy(_arr), torch.from_numpy(_arr), True,
     "Both read the NumPy array's memory, yet neither is the other's _base: only comparing storages finds it."),
    ("x and x[[0, 2]]", _x, _x[[0, 2]], False, "Advanced indexing copies the selected rows into new storage."),
]
from unittest import mock as _mock

def _no_borrowing(*args, **kwargs):  # the course's own helper stands in for the grader, not for you
    raise checks.CheckFailure("Your shares_storage called the grader's checks.same_storage instead of comparing "
                              "the storages itself. Compare where the two storages begin (see the end of "
                              "section 7).")

for _name, _a, _b, _want, _why in _cases:
    with _mock.patch.object(checks, "same_storage", _no_borrowing):
        _got = shares_storage(_a, _b)
    checks.expect(type(_got) is bool, f"Your shares_storage should return a Python bool (for {_name}).")
    checks.expect(_got is _want, f"Your shares_storage gives {_got} for {_name}. {_why}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-channels"
# ### Exercise 12 · Channels-last to channels-first, as a view
#
# Image libraries and NumPy usually store a batch of colour images **channels-last**:
# `(N, H, W, C)`, the three colour values of a pixel side by side. PyTorch's convolution
# layers expect **channels-first**: `(N, C, H, W)`. Converting means moving an axis, which is
# `permute`'s job: it rewrites the strides and returns a view, with no data moved.
#
# Two mistakes are common here. `images.reshape(N, C, H, W)` produces the right shape with
# the wrong contents: reshaping keeps the order of the entries in memory and only regroups
# them, so each "channel" ends up as a strip of mixed-up pixel values. And adding
# `.contiguous()` (or `.clone()`) after the permute makes a full copy of every image, which
# you may need later for a `view`, but which is not what was asked here.
#
# Write `channels_first(images)`: `(N, H, W, C)` in, `(N, C, H, W)` out, with
# `out[n, c, h, w] == images[n, h, w, c]`, returned as a **view** of `images`.
#
# <details><summary>Hint 1</summary>
#
# `permute` takes, for each position of the result, the number of the input dimension that
# goes there.
# </details>

# %% role="answer" grade_id="channels-first"
def channels_first(images):
    """(N, H, W, C) -> (N, C, H, W), as a view of images."""
    ### BEGIN SOLUTION
    return images.permute(0, 3, 1, 2)
    ### END SOLUTION


# %% role="test" grade_id="test-channels-sanity" points=1
_images = torch.arange(2 * 4 * 5 * 3.0, device=checks.DEVICE).reshape(2, 4, 5, 3)
_out = channels_first(_images)
checks.expect_tensor(_out, "Your channels_first(images) for images of shape (2, 4, 5, 3)", shape=(2, 3, 4, 5),
                     why="(N, H, W, C) becomes (N, C, H, W).")
checks.expect(_out[0, 1, 0, 0].item() == _images[0, 0, 0, 1].item() and _out[1, 2, 3, 4].item() == _images[1, 3, 4, 2].item(),
              "Your channels_first(images)[n, c, h, w] should be images[n, h, w, c] (checked at [0, 1, 0, 0] and [1, 2, 3, 4]).")
print("channels_first returns", checks.describe(_out))

# %% role="test" grade_id="test-channels" points=2
# Hidden tests check every entry, that the result is a view of the input, and a large batch on the meta device.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
with checks.seeded(0):
    _images = torch.rand(3, 4, 6, 3, device=_dev)
_out = channels_first(_images)
_name = "Your channels_first(images) for images of shape (3, 4, 6, 3)"
checks.expect_tensor(_out, _name, shape=(3, 3, 4, 6), device=_dev,
                     why="permute takes, for each position of the result, which input dimension goes there.")
_want = torch.stack([_images[..., c] for c in range(3)], dim=1)
if not torch.equal(_out, _want) and torch.equal(_out, _images.reshape(3, 3, 4, 6)):
    checks.expect(False, f"{_name} regrouped the memory with reshape (or view) instead of moving the channel axis. "
                         "Reshaping keeps the order of the entries in memory, where a pixel's colours sit side by "
                         "side, so each 'channel' mixes colours from different pixels. Moving an axis is a job "
                         "for permute.")
checks.expect(torch.equal(_out, _want), f"{_name}: out[n, c, h, w] should be images[n, h, w, c] for every entry.")
checks.expect(checks.same_storage(_out, _images),
              f"{_name} is a copy, where a view was asked for: .contiguous(), .clone(), torch.stack or any new "
              "tensor copies every image. permute alone rewrites the strides over the same storage.")
_meta = torch.empty(64, 224, 224, 3, device="meta")
checks.expect_tensor(channels_first(_meta), "Your channels_first on a (64, 224, 224, 3) batch on the meta device",
                     shape=(64, 3, 224, 224), device="meta",
                     why="The conversion only rearranges axes, whatever the sizes and the device.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-vectorise"
# ## 8 · Let broadcasting do the looping
#
# A Python loop over the entries of a tensor calls PyTorch once (or more) per entry. Each
# call has a fixed cost, microseconds on the CPU and a kernel launch on a GPU, so the loop's
# cost grows with the data while the useful arithmetic per call stays tiny. A **vectorised**
# expression describes the whole computation in a handful of calls, and PyTorch runs the
# loop inside its compiled code, on whatever device holds the data.
#
# Broadcasting is the main tool. To combine every `a[i]` with every `b[j]`, put the two
# indices on different axes and let the size-1 dimensions stretch:
#
# ```text
# a[:, None, :]   (N, 1, D)
# b[None, :, :]   (1, M, D)
# difference      (N, M, D)    entry [i, j] is a[i] - b[j]
# ```
#
# then reduce over the last axis. The intermediate holds N·M·D numbers, fine for moderate
# sizes; for very large ones, `torch.cdist` uses an algebraic identity with a matrix product
# instead.
#
# **How the tests check "no loops".** They count the torch functions and tensor methods your
# code calls (with a `TorchFunctionMode`, the hook PyTorch offers for exactly this), once for
# small inputs and once for larger ones. A vectorised answer makes the same number of calls
# whatever the size. They never time your code.
#
# ### Exercise 13 · Pairwise distances
#
# Write `pairwise_distances(a, b)` for `a` of shape `(N, D)` and `b` of shape `(M, D)`:
# return the `(N, M)` tensor whose entry `[i, j]` is the Euclidean distance between `a[i]`
# and `b[j]`, on the inputs' device, without Python loops and without changing `a` or `b`.
#
# <details><summary>Hint 1</summary>
#
# Build the `(N, M, D)` tensor of differences with the indexing above, then square, sum over
# the right dimension and take the square root.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Check your shapes on an example where N ≠ M: a result of shape `(N,)` or `(N, D)` means
# a dimension was not added, or the wrong one was reduced.
# </details>

# %% role="answer" grade_id="pairwise"
def pairwise_distances(a, b):
    """(N, D) and (M, D) -> (N, M) Euclidean distances, by broadcasting."""
    ### BEGIN SOLUTION
    diff = a[:, None, :] - b[None, :, :]
    return (diff ** 2).sum(dim=-1).sqrt()
    ### END SOLUTION


# %% role="test" grade_id="test-pairwise-sanity" points=1
_a = torch.tensor([[0.0, 0.0], [1.0, 1.0]], device=checks.DEVICE)
_b = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]], device=checks.DEVICE)
_out = pairwise_distances(_a, _b)
checks.expect_tensor(_out, "Your pairwise_distances(a, b) for a (2, 2), b (3, 2)", shape=(2, 3),
                     why="One distance for every pair (a[i], b[j]).")
checks.expect_close(_out[0, 0], 5.0, "The distance between (0, 0) and (3, 4)",
                    why="A Euclidean distance is the square root of the summed squared differences.")
print("pairwise_distances returns", checks.describe(_out))

# %% role="test" grade_id="test-pairwise" points=3
# Hidden tests compare with exact distances, count torch calls for small and large inputs, and check the inputs are unchanged.
### BEGIN HIDDEN TESTS
_dev = checks.DEVICE
for _N, _M, _D in [(4, 6, 3), (5, 5, 2), (1, 7, 4), (8, 3, 1)]:
    with checks.seeded(_N * 10 + _M):
        _a = torch.randn(_N, _D, device=_dev)
        _b = torch.randn(_M, _D, device=_dev)
    _a0, _b0 = _a.clone(), _b.clone()
    _name = f"Your pairwise_distances for a of shape {(_N, _D)} and b of shape {(_M, _D)}"
    _out = pairwise_distances(_a, _b)
    checks.expect(torch.equal(_a, _a0) and torch.equal(_b, _b0),
                  f"{_name} changed its inputs. Compute new tensors (out of place) and leave a and b as they were.")
    checks.expect_tensor(_out, _name, shape=(_N, _M), device=_dev,
                         why="Put a's points on one axis and b's on another (section 8 shows how) "
                             "and reduce over the feature dimension, the last one.")
    _want = torch.cdist(_a.double(), _b.double()).float()
    if torch.allclose(_out, _want ** 2, rtol=1e-4, atol=1e-5) and not torch.allclose(_out, _want, rtol=1e-4, atol=1e-5):
        checks.expect(False, f"{_name} returned squared distances: take the square root of the summed squares.")
    checks.expect_close(_out, _want, _name, rtol=1e-4, atol=1e-5,
                        why="Entry [i, j] is the square root of the sum over features of (a[i] - b[j]) squared.")
with checks.seeded(2):
    _small = (torch.randn(4, 3, device=_dev), torch.randn(6, 3, device=_dev))
    _large = (torch.randn(40, 8, device=_dev), torch.randn(60, 8, device=_dev))
_, _count_small = checks.count_torch_calls(pairwise_distances, *_small)
_, _count_large = checks.count_torch_calls(pairwise_distances, *_large)
checks.expect(_count_large.total <= _count_small.total + 2,
              f"Your pairwise_distances made {_count_small.total} torch calls for 4 × 6 points of 3 features but "
              f"{_count_large.total} for 40 × 60 points of 8 features: the number of calls grows with the input, "
              "the mark of a Python loop (over points or over features). Let broadcasting pair every a[i] with "
              "every b[j] in one expression, and reduce over the features in one call.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-indexing"
# ## 9 · Selecting and joining: masks, `where`, `gather`, `cat` and `stack`
#
# Slices (`x[1:3]`, `x[:, 0]`) pick evenly spaced entries, so they are views (section 7). The
# other ways of selecting pick entries that need not be evenly spaced, so they **copy**:
#
# - **A boolean mask.** `x > 0` is a `bool` tensor shaped like `x`; `x[mask]` returns the
#   selected entries as a new 1-D tensor, in row-major order. On the left of `=`, it writes
#   into `x` itself: `x[mask] = 0` changes the caller's tensor in place.
# - **`torch.where(cond, a, b)`** chooses element by element: `a` where `cond` is true, `b`
#   elsewhere, with broadcasting, in a new tensor. It is the out-of-place way to "replace the
#   entries where ...".
# - **Integer indices.** `x[idx]` with an int64 tensor `idx` picks whole rows, in any order,
#   repeats allowed. To pick *one entry per row*, at a column that differs from row to row (the
#   score of each sample's true class, say), use `x.gather(1, idx)`: `idx` has as many
#   dimensions as `x`, and `out[i, j] = x[i, idx[i, j]]`. The tempting `x[:, targets]` is
#   something else: every row, at every target's column, an `(N, N)` table.
# - **Joining.** `torch.cat(tensors, dim)` joins along an *existing* dimension: the sizes along
#   it add up. `torch.stack(tensors, dim)` adds a *new* dimension at `dim`: the shapes must be
#   equal, and the result has one dimension more. Stack two `(N, D)` tensors on `dim=1` and
#   you get `(N, 2, D)`, where row `i` holds the pair `(a[i], b[i])`.
#
# Missing values meet masks early in practice: a sensor that failed shows up as `nan`, and
# `nan` poisons every sum it touches. `torch.isnan(x)` finds them; `torch.nanmean` averages
# what is left.
#
# ### Exercise 14 · Pick, mask and join
#
# Write three functions, each with tensor operations (no Python loop over rows or entries), on
# the inputs' device, leaving the inputs unchanged:
#
# - `true_class_scores(logits, targets)`: `logits` is `(N, C)`, `targets` is `(N,)` int64;
#   return the `(N,)` tensor whose entry `i` is `logits[i, targets[i]]`, for any `N`, `N = 1`
#   included.
# - `fill_missing(x)`: `x` is a float `(N, D)` table that may hold `nan`s; return a copy in
#   which every `nan` is replaced by the mean of the values present in its **column** (every
#   column has at least one). The values that were present stay exactly as they were.
# - `interleave(a, b)`: `a` and `b` have the same shape `(N, ...)`; return the `(2N, ...)`
#   tensor whose rows are `a[0], b[0], a[1], b[1], ...`.
#
# <details><summary>Hint 1</summary>
#
# `gather` wants an index with as many dimensions as `logits`: `targets.unsqueeze(1)` is
# `(N, 1)`, and the result is `(N, 1)` too. Remove exactly that dimension, `squeeze(1)`: a bare
# `squeeze()` also removes the batch dimension when `N = 1`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.isnan(x)` is the mask; `torch.nanmean(x, dim=0, keepdim=True)` is a `(1, D)` row of
# column means that broadcasts against `x`; `torch.where` does the replacing without touching
# `x`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# `torch.stack([a, b], dim=1)` pairs `a[i]` with `b[i]`; a `reshape` then flattens the first
# two dimensions, keeping the others: `(2 * N, *a.shape[1:])`, or `-1` for the first size.
# </details>

# %% role="answer" grade_id="indexing"
def true_class_scores(logits, targets):
    """(N, C) scores and (N,) class ids -> (N,) score of each row's class."""
    ### BEGIN SOLUTION
    return logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    ### END SOLUTION


def fill_missing(x):
    """A copy of x (N, D) with each nan replaced by the mean of the values present in its column."""
    ### BEGIN SOLUTION
    return torch.where(torch.isnan(x), torch.nanmean(x, dim=0, keepdim=True), x)
    ### END SOLUTION


def interleave(a, b):
    """Rows a[0], b[0], a[1], b[1], ... of two tensors of the same shape (N, ...)."""
    ### BEGIN SOLUTION
    return torch.stack([a, b], dim=1).reshape(-1, *a.shape[1:])
    ### END SOLUTION


# %% role="test" grade_id="test-indexing-sanity" points=1
_logits = torch.tensor([[0.1, 0.9, 0.0], [2.0, -1.0, 0.5]], device=checks.DEVICE)
_s = true_class_scores(_logits, torch.tensor([1, 2], device=checks.DEVICE))
checks.expect_tensor(_s, "Your true_class_scores for 2 rows", shape=(2,),
                     why="One score per row: logits[i, targets[i]].")
checks.expect_close(_s, torch.tensor([0.9, 0.5], device=checks.DEVICE), "Your true_class_scores for 2 rows")
_x = torch.tensor([[1.0, float("nan")], [3.0, 4.0], [float("nan"), 6.0]], device=checks.DEVICE)
_f = fill_missing(_x)
checks.expect_tensor(_f, "Your fill_missing of a (3, 2) table", shape=(3, 2))
checks.expect(not bool(torch.isnan(_f).any()), "The result of fill_missing still holds nan.")
_i = interleave(torch.zeros(2, 3, device=checks.DEVICE), torch.ones(2, 3, device=checks.DEVICE))
checks.expect_tensor(_i, "Your interleave of two (2, 3) tensors", shape=(4, 3),
                     why="Two tensors of N rows give 2N rows.")
print("scores:", _s.tolist(), "| filled:", _f.tolist(), "| interleaved first column:", _i[:, 0].tolist())

# %% role="test" grade_id="test-true-class" points=2
# Hidden tests: other sizes (N = C, N = 1), a comparison with a loop, the inputs unchanged, and
# the number of torch calls for small and large batches.
### BEGIN HIDDEN TESTS
for _N, _C in [(7, 5), (6, 6), (1, 4)]:
    with checks.seeded(_N + 10 * _C):
        _logits = torch.randn(_N, _C, device=checks.DEVICE)
        _targets = torch.randint(0, _C, (_N,), device=checks.DEVICE)
    _l0, _t0 = _logits.clone(), _targets.clone()
    _name = f"Your true_class_scores for {_N} rows and {_C} classes"
    try:
        _got = true_class_scores(_logits, _targets)
    except RuntimeError as _err:
        if isinstance(_err, NotImplementedError):
            raise
        checks.expect("same number of dimensions" not in str(_err),
                      f"{_name} failed: gather needs an index with as many dimensions as the tensor it "
                      f"reads ({str(_err).splitlines()[0][:100]}). Make targets (N, 1) with unsqueeze(1) "
                      "(see Hint 1).")
        raise
    checks.expect(torch.equal(_logits, _l0) and torch.equal(_targets, _t0), f"{_name} changed its inputs.")
    if type(_got) is torch.Tensor and tuple(_got.shape) == (_N, _N) and _N > 1:
        checks.expect(False, f"{_name} returned an ({_N}, {_N}) table: logits[:, targets] takes every row at "
                             "every target's column. One entry per row is logits.gather(1, ...) (section 9), "
                             "or logits[torch.arange(N), targets].")
    if type(_got) is torch.Tensor and _N == 1 and tuple(_got.shape) == ():
        checks.expect(False, f"{_name} returned a 0-d tensor for a batch of one row: a bare squeeze() "
                             "removed the batch dimension too. Squeeze only the dimension gather added, "
                             "squeeze(1) (see Hint 1).")
    checks.expect_tensor(_got, _name, shape=(_N,), dtype=_logits.dtype, device=checks.DEVICE)
    _want = torch.stack([_logits[_i, _targets[_i]] for _i in range(_N)])
    checks.expect_close(_got, _want, _name, rtol=0, atol=0, why="Entry i is logits[i, targets[i]], exactly.")
with checks.seeded(3):
    _small = (torch.randn(4, 3, device=checks.DEVICE), torch.randint(0, 3, (4,), device=checks.DEVICE))
    _large = (torch.randn(400, 3, device=checks.DEVICE), torch.randint(0, 3, (400,), device=checks.DEVICE))
_, _c_small = checks.count_torch_calls(true_class_scores, *_small)
_, _c_large = checks.count_torch_calls(true_class_scores, *_large)
checks.expect(_c_large.total <= _c_small.total + 2,
              f"Your true_class_scores made {_c_small.total} torch calls for 4 rows and {_c_large.total} for "
              "400: it loops over the rows in Python. gather picks every row's entry in one call.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-fill-missing" points=2
# Hidden tests: a table with nans in several columns, compared with column means computed one by
# one, with the input unchanged and the present values untouched.
### BEGIN HIDDEN TESTS
with checks.seeded(5):
    _x = torch.randn(9, 4, device=checks.DEVICE) * 3 + torch.arange(4.0, device=checks.DEVICE) * 10
    _holes = torch.rand(9, 4, device=checks.DEVICE) < 0.3
    _holes[0] = False                       # every column keeps at least one value
    _holes[1, 2] = True
    _x[_holes] = float("nan")
_x0 = _x.clone()
_got = fill_missing(_x)
checks.expect(torch.equal(torch.isnan(_x), torch.isnan(_x0)) and torch.equal(torch.nan_to_num(_x), torch.nan_to_num(_x0)),
              "Your fill_missing changed its input: x[mask] = ... writes into the caller's tensor. Build "
              "a new tensor (torch.where, or a clone) and leave x as it was.")
checks.expect_tensor(_got, "The result of fill_missing for a (9, 4) table", shape=(9, 4), dtype=torch.float32,
                     device=checks.DEVICE)
checks.expect(not bool(torch.isnan(_got).any()),
              f"The result of fill_missing still holds nan in {int(torch.isnan(_got).sum())} entries (the table has "
              f"{int(_holes.sum())} holes): some nans were not replaced, or were replaced by a mean that is nan "
              "itself (a mean that includes a nan is nan). Replace every nan, with the mean of only the values "
              "present in its column (torch.nanmean, or a sum of the present values divided by their count).")
_present = ~_holes
checks.expect(torch.equal(_got[_present], _x0[_present]),
              "Your fill_missing changed values that were present. Replace only the nan entries.")
_cols = torch.stack([_x0[:, _j][_present[:, _j]].mean() for _j in range(4)])
_rows = torch.stack([_x0[_i][_present[_i]].mean() for _i in range(9)])
if torch.allclose(_got[_holes], _rows[:, None].expand(9, 4)[_holes], rtol=1e-5, atol=1e-5):
    checks.expect(False, "Your fill_missing filled each nan with the mean of its row. The exercise asks for "
                         "its column: the mean of that feature over the other samples (dim=0).")
checks.expect_close(_got[_holes], _cols[None, :].expand(9, 4)[_holes], "the values fill_missing put in place of the nans",
                    rtol=1e-5, atol=1e-5, why="Each nan becomes the mean of the values present in its column.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-interleave" points=2
# Hidden tests: 2-D and 3-D inputs, compared with rows taken one by one.
### BEGIN HIDDEN TESTS
for _shape in [(4, 3), (3, 2, 5), (1, 6)]:
    with checks.seeded(len(_shape) + _shape[0]):
        _a = torch.randn(*_shape, device=checks.DEVICE)
        _b = torch.randn(*_shape, device=checks.DEVICE)
    _name = f"Your interleave of two tensors of shape {_shape}"
    _want = torch.stack([_r for _i in range(_shape[0]) for _r in (_a[_i], _b[_i])])
    try:
        _got = interleave(_a, _b)
    except RuntimeError as _err:
        if isinstance(_err, NotImplementedError):
            raise
        checks.expect(False, f"{_name} failed ({str(_err).splitlines()[0][:100]}). The rows may have more than "
                             "one dimension: keep every dimension after the first, a.shape[1:] (see Hint 3).")
    checks.expect_tensor(_got, _name, shape=(2 * _shape[0],) + tuple(_shape[1:]), device=checks.DEVICE,
                         why="2N rows, each shaped like a row of a.")
    if _shape[0] > 1 and torch.equal(_got, torch.cat([_a, _b])):
        checks.expect(False, f"{_name} gives a[0], a[1], ..., then b[0], b[1], ...: the tensors were joined "
                             "end to end (cat, or stack on dim=0). Pair a[i] with b[i] first: stack on dim=1 "
                             "(section 9).")
    checks.expect(torch.equal(_got, _want), f"{_name} does not hold the rows a[0], b[0], a[1], b[1], ... in that order.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A tensor is flat storage plus metadata: shape, dtype, device, strides and offset. Say
#   dtypes out loud: float32 for what a model computes with, int64 for class labels.
# - `torch.from_numpy` and `torch.as_tensor` share memory when they can; `torch.tensor` and
#   `.clone()` copy. Conversions that change nothing return the tensor itself.
# - Broadcasting aligns shapes from the right and stretches sizes of 1. It is how a bias
#   reaches every row, and how (N,) against (N, 1) silently becomes (N, N).
# - `*` is element-wise, `@` is the matrix product, and leading dimensions of `@` are batches.
# - Reductions drop the dimension they reduce unless you pass `keepdim=True`.
# - In-place operations write into existing storage, which the caller and every view share.
# - Views reuse storage; `view` needs a compatible layout, `reshape` copies when it must;
#   storage pointers tell views from copies.
# - Vectorised code makes a constant number of calls, whatever the size of the data.
#
# Next, in **03 · Autograd**, you will follow gradients through these operations, and see
# why in-place changes and views matter to the graph.
