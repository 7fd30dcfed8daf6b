# %% [markdown] role="prose" grade_id="title"
# # 01 · What PyTorch is, and why its graphs are dynamic
#
# **Time:** about 1 h 15 min of work (2,200 words to read, 5 exercises). Run top to bottom, the
# finished notebook takes under a second.
#
# PyTorch is three things working together: **tensors** (arrays that know their shape, type and
# device), **automatic differentiation** (gradients computed for you by recording what you do),
# and **plain Python** to glue them. There is no separate language for models: a model is a
# Python function, and the gradient machinery watches it run.
#
# **By the end of this notebook you will be able to:**
# - say what "define-by-run" means and why it lets ordinary `if` and `while` steer a model;
# - predict which tensors PyTorch tracks, and where gradients end up;
# - walk the recorded graph through `grad_fn.next_functions` and measure it;
# - explain why a graph cannot be reused after `backward()`, and compute derivatives safely;
# - write device-agnostic code: pick the device once, and keep data where the model lives.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first.

# %% role="locked" grade_id="setup"
import torch
from torch import nn

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__)

# %% [markdown] role="prose" grade_id="md-tracking"
# ## 1 · Tensors that remember where they came from
#
# A tensor created with `requires_grad=True` asks PyTorch to remember every operation applied
# to it. Each result then carries a `grad_fn`: a node that knows which operation produced it
# and how to push a gradient back through that operation. The tensors you created yourself and
# asked gradients for are the **leaves** of this record; when you call `backward()` on a
# scalar result, PyTorch walks the record backwards with the chain rule and *adds* each leaf's
# gradient into its `.grad`.
#
# Two consequences worth holding on to:
# - tracking spreads: anything computed from a tracked tensor is tracked too;
# - only leaves that asked for gradients receive them. A constant that did not ask keeps
#   `.grad` as `None`, and so does an intermediate result.
#
# ### Exercise 1 · Predict, then verify
#
# Read the cell below **without running it** and predict what PyTorch will report. Fill in
# the dictionary `predictions` in the answer cell: a `bool`, a `float`, and either `None` or a
# `float`. The hidden test runs the code and compares.
#
# ```python
# a = torch.tensor(2.0, requires_grad=True)
# b = torch.tensor(5.0)
# c = a * b + a ** 2
# c.backward()
# ```
#
# <details><summary>Hint 1</summary>
#
# Does `c` depend on a tensor that requires grad? Then what is `c.requires_grad`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Differentiate `a·b + a²` with respect to `a` by hand, then put in `a = 2`, `b = 5`. For
# `b.grad`: did `b` ask for a gradient?
# </details>

# %% role="answer" grade_id="predictions"
predictions = {
    "c.requires_grad": None,   # True or False?
    "a.grad": None,            # a float: the value PyTorch puts in a.grad
    "b.grad": None,            # None, or a float?
}
### BEGIN SOLUTION
predictions = {
    "c.requires_grad": True,
    "a.grad": 9.0,
    "b.grad": None,
}
### END SOLUTION

# %% role="test" grade_id="test-predictions" points=3
# Hidden tests compare your predictions with what PyTorch does.
checks.expect(isinstance(predictions, dict) and set(predictions) == {"c.requires_grad", "a.grad", "b.grad"},
              "predictions should be a dict with exactly the keys 'c.requires_grad', 'a.grad' and 'b.grad'.")
### BEGIN HIDDEN TESTS
_a = torch.tensor(2.0, requires_grad=True)
_b = torch.tensor(5.0)
_c = _a * _b + _a ** 2
_c.backward()
checks.expect(predictions["c.requires_grad"] is _c.requires_grad,
              "Your prediction for c.requires_grad is not what PyTorch does. Remember that tracking "
              "spreads: is c computed from any tensor that requires grad (see Hint 1)?")
_pa = predictions["a.grad"]
if type(_pa) is torch.Tensor and _pa.numel() == 1:
    _pa = _pa.item()
checks.expect(type(_pa) in (int, float),
              "Your prediction for a.grad should be a number (a float), the value PyTorch puts in a.grad.")
checks.expect(abs(_pa - _a.grad.item()) < 1e-6,
              "Your prediction for a.grad is not the gradient PyTorch computes. Apply the chain rule "
              "to a*b + a**2 with respect to a (both terms depend on a), then substitute the values "
              "(see Hint 2).")
checks.expect(predictions["b.grad"] is None,
              "Your prediction for b.grad is not what PyTorch reports. Only leaves created with "
              "requires_grad=True receive a .grad: did b ask for one, and what does .grad hold for a "
              "tensor that never received a gradient (section 1 says)?")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-define-by-run"
# ## 2 · Define-by-run: the graph is recorded while your code runs
#
# Older frameworks were **graph-first**: you described the whole computation as a graph, the
# framework compiled it, and only then did data flow through. Control flow had to be expressed
# with special graph operations, because the graph existed before any number did.
#
# PyTorch is **define-by-run**. There is no graph until your Python code executes; each tensor
# operation appends a node as it happens, and the next forward pass records a brand-new graph.
# So an ordinary `if` or `while` that looks at a tensor's *value* simply decides which
# operations get recorded this time. Two inputs can produce two differently shaped graphs from
# the same function, and autograd differentiates whichever path actually ran.
#
# Graphs did not go away in PyTorch 2; they became optional and automatic. `torch.compile(fn)`
# watches `fn` run, captures the tensor operations it sees into a graph, and hands that graph to
# a compiler that fuses operations into faster kernels. Where Python does something it cannot
# capture (a branch on a tensor's value, a `print`), it splits the graph there, lets Python run
# that part as usual, and records a *guard*: the condition under which the captured graph is
# still valid, such as "`x` is still a float32 of this shape". Call it again with inputs that
# break a guard and it captures again. `torch.export` goes further and must capture the whole
# program as one graph, with no Python left, so that it can run where Python cannot (a phone, a
# C++ server); it refuses a branch on data unless you rewrite it with `torch.cond`. So you
# write and debug define-by-run code, and compile or export it when speed or deployment asks
# for a graph ([14 · Performance](../14_performance/14_performance.ipynb) and
# [15 · Deployment](../15_deployment/15_deployment.ipynb) do both).
#
# ### Exercise 2 · A function whose graph depends on its input
#
# Write `grow(x)` for a 0-d float tensor `x` (non-zero) that may require grad:
# 1. while `|x| < 1`, replace `x` by `2 * x`;
# 2. return the square of the result.
#
# If the loop doubled `k` times, then `grow(x) = (2^k · x)^2 = 4^k · x²`. Then write
# `grow_grad(x)` **by hand**: given a Python float `x`, return the derivative of `grow` at
# `x` as a float, without autograd (you will need `k` again). Autograd and your hand-derived
# gradient must agree.
#
# <details><summary>Hint 1</summary>
#
# A comparison on a 0-d tensor gives a 0-d boolean tensor, and Python can use it directly as
# a `while` condition. Mind the *magnitude*: a negative `x` must stop doubling too. Inside the
# loop, make a *new* tensor rather than modifying `x` in place: an in-place update of a leaf
# that requires grad is refused by PyTorch.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For `grow_grad`, count the doublings with the same loop on plain floats, then differentiate
# `4^k · x²` with respect to `x`, treating `k` as a constant (it does not change for small
# changes of `x`).
# </details>

# %% role="answer" grade_id="grow"
def grow(x):
    """Double x while |x| < 1, then return the square of the result."""
    ### BEGIN SOLUTION
    while x.abs() < 1:
        x = x * 2
    return x ** 2
    ### END SOLUTION


def grow_grad(x):
    """The derivative of grow at the float x, derived by hand (no autograd)."""
    ### BEGIN SOLUTION
    k = 0
    while abs(x) * 2 ** k < 1:
        k += 1
    return 2 * 4 ** k * x
    ### END SOLUTION


# %% role="test" grade_id="test-grow-sanity" points=1
_x = torch.tensor(0.3, requires_grad=True)
_y = grow(_x)
checks.expect_tensor(_y, "grow(torch.tensor(0.3, requires_grad=True))", shape=(), requires_grad=True,
                     why="grow should return a 0-d tensor that is still connected to x's graph.")
checks.expect(type(grow_grad(0.3)) is float, "grow_grad(0.3) should return a Python float.")
print("grow looks right so far:", round(_y.item(), 4))


# %% role="test" grade_id="test-grow" points=3
# Hidden tests compare autograd's gradient of your grow with the exact derivative.
### BEGIN HIDDEN TESTS
def _exact(x):
    k = 0
    while abs(x) * 2 ** k < 1:
        k += 1
    return (4 ** k) * x * x, 2 * (4 ** k) * x

class _StopRunaway(checks.TorchCallCounter):
    # grow needs a few operations per doubling; thousands mean the loop never ends.
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if self.total > 2000:
            raise checks.CheckFailure(
                f"grow({_v}) was still looping after 2000 tensor operations: for this input the "
                "while loop never ends (each pass also records a node, so the graph grows until "
                "memory runs out). The loop must stop once the magnitude |x| reaches 1, whatever "
                "the sign of x.")
        return super().__torch_function__(func, types, args, kwargs)

for _v in [0.3, 1.5, 0.5, 0.125, 0.9999, -0.05, -2.0]:
    _x = torch.tensor(_v, dtype=torch.float64, requires_grad=True)
    with _StopRunaway():
        _y = grow(_x)
    checks.expect_tensor(_y, f"grow({_v})", shape=(), requires_grad=True)
    _value, _slope = _exact(_v)
    checks.expect_close(_y, torch.tensor(_value, dtype=torch.float64), f"grow({_v})", rtol=1e-9, atol=1e-12,
                        why="Keep doubling while |x| < 1 (strictly), then square what the loop produced.")
    _y.backward()
    checks.expect_close(_x.grad, torch.tensor(_slope, dtype=torch.float64), f"the gradient of grow at {_v}",
                        rtol=1e-9, atol=1e-12,
                        why="Every doubling must be an out-of-place tensor operation that autograd "
                            "records (a new tensor each pass, from the previous one), so autograd can "
                            "follow the path your loop took. Changing x.data, or going through Python "
                            "numbers, hides the doublings from autograd.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-grow-grad" points=2
# Hidden tests compare your hand-derived grow_grad, run with autograd switched off, with the exact derivative.
### BEGIN HIDDEN TESTS
def _exact(x):
    k = 0
    while abs(x) * 2 ** k < 1:
        k += 1
    return (4 ** k) * x * x, 2 * (4 ** k) * x

_AUTOGRAD = {"backward", "grad", "vjp", "jvp", "jacobian", "hessian", "jacrev", "jacfwd", "requires_grad_"}
for _v in [0.3, -0.05, 1.5, 0.5, -2.0, 0.125]:
    with torch.no_grad(), checks.TorchCallCounter() as _counter:  # a derivation by hand needs no autograd
        try:
            _g = grow_grad(_v)
        except RuntimeError as _err:
            checks.expect("grad" not in str(_err),
                          f"grow_grad({_v}) failed when autograd was switched off, so it relies on "
                          "autograd. Derive the derivative by hand instead: count the doublings k, "
                          "then differentiate 4**k * x**2 with respect to x (see Hint 2).")
            raise
        except OverflowError:
            checks.expect(False, f"grow_grad({_v}) kept counting doublings until the numbers overflowed: "
                                 "for this input your loop never stops. Count doublings while the "
                                 "magnitude |x| is below 1, whatever the sign of x.")
    _asked = sorted({k.rsplit(".", 1)[-1] for k in _counter.calls} & _AUTOGRAD)
    checks.expect(not _asked,
                  f"grow_grad({_v}) asked autograd for the derivative ({', '.join(_asked)}), even with "
                  "autograd switched off around it. The exercise is to derive it by hand, so that you "
                  "can check autograd against it: count the doublings k, then differentiate "
                  "4**k * x**2 with respect to x (see Hint 2).")
    checks.expect_close(_g, _exact(_v)[1], f"grow_grad({_v})", rtol=1e-9, atol=1e-12,
                        why="Differentiate 4**k * x**2 with respect to x, with k counted by the same "
                            "loop as in grow: k does not change for small changes of x (see Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-graph"
# ## 3 · Looking at the recorded graph
#
# Every non-leaf result points at the node that made it: `y.grad_fn`. Each node lists its
# inputs' nodes in `next_functions`, a tuple of `(node, index)` pairs, where `node` is `None`
# for an input that needs no gradient. A leaf that requires grad appears as an
# `AccumulateGrad` node: the place where a gradient finally gets added into `.grad`.
#
# ```python
# x = torch.tensor(3.0, requires_grad=True)
# y = x * 2
# y.grad_fn                   # <MulBackward0>
# y.grad_fn.next_functions    # ((<AccumulateGrad>, 0), (None, 0))
# ```
#
# ### Exercise 3 · Measure a graph
#
# Write `graph_depth(t)`: the number of nodes on the **longest** chain from `t.grad_fn` down
# to the end of the graph, counting `t.grad_fn` itself and the `AccumulateGrad` node at the
# bottom. A tensor without a `grad_fn` has depth 0. In the example above, `y` has depth 2.
#
# Then choose two numbers, `shallow_x` and `deep_x`, such that `grow` builds a deeper graph
# for `deep_x` than for `shallow_x`. That is define-by-run, shown by measurement.
#
# <details><summary>Hint 1</summary>
#
# Think recursively: the depth of a node is 1 plus the largest depth among the nodes in its
# `next_functions` (a `None` there counts as 0).
# </details>
#
# <details><summary>Hint 2</summary>
#
# A graph can branch (`a * b + c` has a node with two inputs). Following only the first input
# gives the wrong answer when the deeper branch is the second one; counting every node gives
# the wrong answer when the graph is wide.
# </details>

# %% role="answer" grade_id="graph-depth"
def graph_depth(t):
    """Number of nodes on the longest chain from t.grad_fn to the end of the graph."""
    ### BEGIN SOLUTION
    def depth(node):
        if node is None:
            return 0
        return 1 + max((depth(child) for child, _ in node.next_functions), default=0)

    return depth(t.grad_fn)
    ### END SOLUTION


# %% role="answer" grade_id="depth-inputs"
# Two non-zero numbers: grow should record a deeper graph for deep_x than for shallow_x.
### BEGIN SOLUTION
shallow_x = 5.0
deep_x = 0.01
### END SOLUTION

# %% role="test" grade_id="test-graph-depth-sanity" points=1
_x = torch.tensor(3.0, requires_grad=True)
checks.expect(graph_depth(_x * 2) == 2, "graph_depth(x * 2) should be 2: MulBackward0, then AccumulateGrad.")
checks.expect(graph_depth(_x) == 0, "A leaf has no grad_fn, so its depth is 0.")
print("graph_depth passes the visible examples")

# %% role="test" grade_id="test-graph-depth" points=2
# Hidden tests measure graphs that branch, and graphs whose deep branch is not the first input.
### BEGIN HIDDEN TESTS
_a = torch.tensor(1.5, requires_grad=True)
_b = torch.tensor(-0.5, requires_grad=True)
_cases = {
    "a constant (no grad)": torch.tensor(2.0) * 3,
    "a * b + a": _a * _b + _a,
    "b + (a * 2).exp().sin()": _b + (_a * 2).exp().sin(),
    "(a * 2).exp().sin() + b": (_a * 2).exp().sin() + _b,
    "a wide sum of 8 terms": sum(_a * i for i in range(1, 9)),
    "a value doubled 7 times, then squared": _a,
}
for _ in range(7):
    _cases["a value doubled 7 times, then squared"] = _cases["a value doubled 7 times, then squared"] * 2
_cases["a value doubled 7 times, then squared"] = _cases["a value doubled 7 times, then squared"] ** 2
from unittest import mock as _mock

def _no_borrowing(*args, **kwargs):  # the course's own helper stands in for the grader, not for you
    raise checks.CheckFailure("graph_depth called the grader's checks.graph_depth (or checks.graph_nodes) "
                              "instead of walking the graph itself. Write the walk: the depth of a node is 1 "
                              "plus the largest depth among its next_functions (see Hint 1).")

for _name, _t in _cases.items():
    _want = checks.graph_depth(_t)
    with _mock.patch.object(checks, "graph_depth", _no_borrowing), \
         _mock.patch.object(checks, "graph_nodes", _no_borrowing):
        _got = graph_depth(_t)
    checks.expect(type(_got) is int, f"graph_depth should return an int (for {_name}).")
    checks.expect(_got == _want,
                  f"graph_depth gives {_got} for {_name}, which is not the length of the longest "
                  "chain of nodes. Take the maximum over every input in next_functions, recursively, "
                  "and count each node on the chain once.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-depth-inputs" points=1
# Hidden test: your two inputs make grow record graphs of different depth.
### BEGIN HIDDEN TESTS
def _grow(x):  # the reference grow, so that this test judges only your two inputs
    while x.abs() < 1:
        x = x * 2
    return x ** 2

checks.expect(type(shallow_x) in (int, float) and type(deep_x) in (int, float) and shallow_x != 0 and deep_x != 0,
              "shallow_x and deep_x should be non-zero Python numbers (an int or a float, such as 0.5), "
              "not tensors or None: the test makes the tensors itself.")
_ds = checks.graph_depth(_grow(torch.tensor(float(shallow_x), requires_grad=True)))
_dd = checks.graph_depth(_grow(torch.tensor(float(deep_x), requires_grad=True)))
checks.expect(_dd > _ds,
              "With your two inputs, grow records the same depth (or less) for deep_x as for shallow_x. The loop runs once "
              "per doubling, so an input with a smaller magnitude is doubled more times and records "
              "more nodes.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-backward"
# ## 4 · A graph is used up by `backward()`
#
# To compute gradients, many nodes keep ("save") tensors from the forward pass: `x * x` saves
# `x`, `sin(x)` saves `x` to compute `cos(x)` later. When `backward()` finishes, PyTorch frees
# those saved tensors: the graph has done its job. Calling `backward()` through it again is
# then an error, not a second gradient. (A graph that saved nothing, such as the one for
# `x + 1`, happens to survive a second pass; never rely on it.) This is the flip side of
# define-by-run: you never *keep* a graph, you record a fresh one by running the forward
# computation again.
#
# Gradients also **accumulate**: `backward()` adds into `.grad` rather than overwriting it.
# That is deliberate (it lets several backward passes contribute to one update) but it means
# a leaf reused across computations carries the sum of all their gradients.
#
# ### Exercise 4 · Fix a broken snippet
#
# `derivative_at_broken` below should return the derivative `f'(x)` at each value of the 1-D
# tensor `xs`. It records the graph once and tries to reuse it for every point. Run its cell
# and read the error. Then write the fixed version, `derivative_at(f, xs)`, in the answer cell:
# each point gets a graph of its own and a gradient of its own; the result is a float tensor of
# the same length as `xs`, on the same device; and `xs` itself is left unchanged. Stay in
# tensors from start to finish: `.item()`, `float()` or `torch.tensor(list_of_numbers)` copy
# each value to the CPU, so the broken version's result lands on the CPU even when `xs` lives
# on a GPU. (The hidden tests also pass an `xs` on the `meta` device, whose tensors have a
# shape but no values to read.)
#
# <details><summary>Hint 1</summary>
#
# Inside the loop, make a fresh leaf for the current value: a copy that is cut off from `xs`
# and asks for gradients. Run `f` on that leaf: a new forward pass records a new graph.
# </details>
#
# <details><summary>Hint 2</summary>
#
# A fresh leaf per point also means a fresh, empty `.grad`, so gradients cannot pile up from
# one point to the next. Collect the gradients (tensors, not numbers) and `torch.stack` them:
# the stack stays on the device the gradients are on.
# </details>

# %% role="locked" grade_id="derivative-broken"
def derivative_at_broken(f, xs):
    """The broken version: it records the graph once and reuses it for every point."""
    x = torch.zeros((), requires_grad=True)
    y = f(x)                       # the graph is recorded once, here...
    grads = []
    for value in xs:
        with torch.no_grad():
            x.copy_(value)         # ...then x is moved and the same graph reused
        y.backward()
        grads.append(x.grad.item())
    return torch.tensor(grads)


try:
    derivative_at_broken(lambda x: x ** 2, torch.tensor([1.0, 2.0, 3.0]))
except RuntimeError as err:
    print("derivative_at_broken failed:", str(err).splitlines()[0])


# %% role="answer" grade_id="derivative-at"
def derivative_at(f, xs):
    """f'(x) for every x in the 1-D tensor xs, one graph per point."""
    ### BEGIN SOLUTION
    grads = []
    for value in xs:
        x = value.detach().clone().requires_grad_(True)
        y = f(x)
        y.backward()
        grads.append(x.grad)
    return torch.stack(grads).to(xs.device)
    ### END SOLUTION


# %% role="test" grade_id="test-derivative-sanity" points=1
_xs = torch.tensor([1.0, 2.0, 3.0])
_d = derivative_at(lambda x: x ** 2, _xs)
checks.expect_tensor(_d, "derivative_at(lambda x: x ** 2, xs)", shape=(3,), dtype=torch.float32)
checks.expect(not torch.allclose(_d, torch.tensor([2.0, 6.0, 12.0])),
              "derivative_at(lambda x: x ** 2, [1, 2, 3]) returns running totals (2, 6, 12): gradients "
              "accumulate into .grad across backward passes. Give each point a fresh leaf.")
checks.expect(not torch.allclose(_d, torch.tensor([6.0, 6.0, 6.0])),
              "derivative_at(lambda x: x ** 2, [1, 2, 3]) gives every point the derivative at the last "
              "point: you collected x.grad itself, one tensor that backward keeps updating in place. Store "
              "a copy of each gradient, or give each point a fresh leaf.")
checks.expect_close(_d, torch.tensor([2.0, 4.0, 6.0]), "derivative_at(lambda x: x ** 2, [1, 2, 3])",
                    why="The derivative of x**2 is 2*x, at each point on its own.")
print("derivative_at works on x ** 2")


# %% role="test" grade_id="test-derivative" points=3
# Hidden tests: different functions, one whose graph changes with x, xs left untouched, and xs on the meta device.
### BEGIN HIDDEN TESTS
def _exact(x):
    k = 0
    while abs(x) * 2 ** k < 1:
        k += 1
    return (4 ** k) * x * x, 2 * (4 ** k) * x

def _grow(x):  # the reference grow, so that this test judges only derivative_at
    while x.abs() < 1:
        x = x * 2
    return x ** 2

_xs = torch.tensor([0.3, -1.5, 2.0, 0.05], device=checks.DEVICE)
_before = _xs.clone()
_fns = {
    "x ** 3": (lambda x: x ** 3, lambda v: 3 * v ** 2),
    "sin(x) * x": (lambda x: torch.sin(x) * x, lambda v: torch.cos(v) * v + torch.sin(v)),
    "grow": (_grow, lambda v: torch.tensor([_exact(float(t))[1] for t in v.cpu()], device=v.device)),
}
for _name, (_f, _df) in _fns.items():
    try:
        _d = derivative_at(_f, _xs)
    except RuntimeError as _err:
        checks.expect("more than one value is ambiguous" not in str(_err),
                      f"derivative_at({_name}, xs) passed several points to f at once, and f needs a "
                      "single number (its while loop looks at the value). Each point needs a forward "
                      "pass of its own, on a 0-d leaf, so that autograd records the path taken at "
                      "that point.")
        raise
    checks.expect_tensor(_d, f"derivative_at({_name}, xs)", shape=(4,), dtype=torch.float32, device=_xs.device,
                         why="Return a float tensor with one derivative per point, on the device of xs.")
    _want = _df(_xs).to(torch.float32)
    if torch.allclose(_d, torch.cumsum(_want, 0), rtol=1e-4, atol=1e-5) and not torch.allclose(_d, _want, rtol=1e-4, atol=1e-5):
        checks.expect(False, f"derivative_at({_name}, xs) returns running totals of the derivatives: "
                             "gradients accumulate into .grad across backward passes. Give each point "
                             "a fresh leaf (or clear .grad) so it gets only its own gradient.")
    if torch.allclose(_d, _want[-1].expand(4), rtol=1e-4, atol=1e-5) and not torch.allclose(_d, _want, rtol=1e-4, atol=1e-5):
        checks.expect(False, f"derivative_at({_name}, xs) gives every point the derivative at the last point. "
                             "You collected x.grad itself, the same tensor each time, and backward keeps "
                             "updating that one tensor in place (zero_() clears it in place too), so every "
                             "entry ends up as its final value. Store a copy of each gradient (.clone()), or "
                             "give each point a fresh leaf.")
    checks.expect_close(_d, _want, f"derivative_at({_name}, xs)", rtol=1e-4, atol=1e-5,
                        why="Each point needs its own forward pass: the graph is recorded while f runs, "
                            "and for grow it has a different shape at each point.")
checks.expect(torch.equal(_xs, _before) and not _xs.requires_grad,
              "derivative_at changed xs (or made it require grad). Work on a detached copy of each value.")

_meta_xs = torch.empty(4, device="meta")  # shapes without values: code that reads a value back fails here
try:
    _d = derivative_at(lambda x: x ** 3, _meta_xs)
except (RuntimeError, NotImplementedError) as _err:
    checks.expect("meta" not in str(_err),
                  "derivative_at(x ** 3, xs) failed for an xs on the meta device, because it read values "
                  "back out of xs's device (.item(), float(), copy_ into a tensor made elsewhere, or "
                  "torch.tensor of a list of numbers). On a GPU that copies every point to the CPU and "
                  "returns the result there. Stay in tensors: make each leaf from the entry of xs itself "
                  "(detached and cloned) and torch.stack the gradients.")
    raise
checks.expect_tensor(_d, "derivative_at(x ** 3, xs on the meta device)", shape=(4,), device="meta",
                     why="The result must be on the device of xs: build it from the gradients, which are "
                         "already there, rather than from a new tensor made on the default device.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-devices"
# ## 5 · Devices: where tensors live
#
# Every tensor lives on a **device**: the CPU's memory, or a GPU's (`cuda`; `mps` on Apple
# machines). An operation runs where its inputs are, and all its tensor inputs must be on the
# same device (the one exception: a 0-d CPU tensor, which PyTorch treats like a Python
# number). PyTorch does not move data for you, because copies between devices are slow
# and it will not guess which copy you meant. A model's parameters are tensors too, so a model
# and its inputs must share a device.
#
# The habit that saves you later: **decide the device once, in one place, and pass it along.**
# Code that writes `"cuda"` inside a function crashes on every machine without a GPU (your
# grader may be one of them), and code that silently creates tensors on the CPU breaks the
# day the model moves to a GPU.
#
# ### Exercises 5 and 6 · Pick the device, and keep data where it belongs
#
# **Exercise 5.** Write `pick_device()` returning a `torch.device`: `cuda` when
# `torch.cuda.is_available()`, otherwise `mps` when `torch.backends.mps.is_available()`,
# otherwise `cpu`. It asks every time it is called; the *caller* calls it once and passes the
# answer along.
#
# **Exercise 6.** Write two functions that keep data where it belongs:
# - `make_batch(n, features, device)` returns an `(n, features)` float32 tensor of standard
#   normal samples **created directly on** `device` (no detour through the CPU).
# - `run_model(model, x)` returns `model(x)`, first moving `x` to the device of the model's
#   parameters. Move the input, not the model: the caller decided where the model lives.
#
# <details><summary>Hint 1</summary>
#
# For `pick_device`: `torch.cuda.is_available` is a function, so call it (with parentheses)
# each time `pick_device` runs; the hidden tests pretend to be machines with and without GPUs.
# Return a `torch.device`, not a string.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Most tensor constructors take a `device=` argument: `torch.randn(3, 4, device=device)`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# A model has no `.device` attribute, but its parameters do: `next(model.parameters()).device`.
# </details>

# %% role="answer" grade_id="devices"
def pick_device():
    """cuda if available, else mps if available, else cpu, as a torch.device."""
    ### BEGIN SOLUTION
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
    ### END SOLUTION


def make_batch(n, features, device):
    """An (n, features) float32 tensor of standard normal samples, created on device."""
    ### BEGIN SOLUTION
    return torch.randn(n, features, device=device)
    ### END SOLUTION


def run_model(model, x):
    """model(x), with x moved to the device of the model's parameters."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    return model(x.to(device))
    ### END SOLUTION


# %% role="test" grade_id="test-devices-sanity" points=1
_dev = pick_device()
checks.expect(type(_dev) is torch.device, "pick_device() should return a torch.device, not a string.")
_batch = make_batch(4, 3, torch.device("cpu"))
checks.expect_tensor(_batch, "make_batch(4, 3, cpu)", shape=(4, 3), dtype=torch.float32, device="cpu")
_out = run_model(nn.Linear(3, 2), _batch)
checks.expect_tensor(_out, "run_model(nn.Linear(3, 2), batch)", shape=(4, 2))
print("This machine would use:", _dev)

# %% role="test" grade_id="test-pick-device" points=2
# Hidden tests pretend to be machines with and without GPUs.
### BEGIN HIDDEN TESTS
from unittest import mock as _mock

_machines = [(False, False, "cpu"), (True, False, "cuda"), (False, True, "mps"), (True, True, "cuda")]
_answers = []
for _cuda, _mps, _want in _machines:
    with _mock.patch.object(torch.cuda, "is_available", lambda: _cuda), \
         _mock.patch.object(torch.backends.mps, "is_available", lambda: _mps):
        _got = pick_device()
    checks.expect(type(_got) is torch.device,
                  "pick_device() should return a torch.device (torch.device('cpu')), not a string.")
    _answers.append(_got.type)
for (_cuda, _mps, _want), _got in zip(_machines, _answers):
    _machine = "a machine with " + ("CUDA" if _cuda else "no CUDA") + (" and MPS" if _mps else "")
    if _got == "cuda" and not _cuda:
        checks.expect(False, f"On {_machine}, pick_device() returned cuda. Never hard-code \"cuda\" (nor "
                             "settle the device once, when the cell runs): call torch.cuda.is_available() "
                             "inside pick_device (with parentheses: the function itself always counts as "
                             "true) and fall back, or the code crashes on every machine without a GPU.")
    checks.expect(len(set(_answers)) > 1,
                  f"pick_device() returned {_got} on every machine the test pretended to be: it does not "
                  "ask the machine when it is called (a device decided once, when the cell ran, cannot "
                  "follow the machine the code runs on). Call torch.cuda.is_available() and "
                  "torch.backends.mps.is_available() inside pick_device; the caller is the one who "
                  "calls it once.")
    _got = torch.device(_got)
    checks.expect(_got.type == _want,
                  f"On {_machine}, pick_device() returned {_got.type}. Check CUDA first, then MPS, "
                  "and fall back to the CPU.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-devices" points=2
# Hidden tests use the "meta" device (shapes without data) to see which device your code uses,
# and look at the distribution of make_batch's samples.
### BEGIN HIDDEN TESTS
_meta = torch.device("meta")
_b, _touched = checks.devices_touched(make_batch, 5, 7, _meta)
checks.expect_tensor(_b, "make_batch(5, 7, meta)", shape=(5, 7), dtype=torch.float32, device="meta",
                     why="make_batch must create the tensor on the device it is given: ignoring the "
                         "argument breaks the day the data should live on a GPU.")
checks.expect(_touched == {"meta"},
              "make_batch(5, 7, meta) first created data on the CPU and then moved it. Pass device= to "
              "the constructor, so the data is created where it will be used, without a copy.")
with checks.seeded(0):
    _big = make_batch(2000, 10, checks.DEVICE)
checks.expect_tensor(_big, "make_batch(2000, 10, device)", shape=(2000, 10), dtype=torch.float32)
_big = _big.detach().double().cpu()
checks.expect(abs(_big.mean().item()) < 0.05 and abs(_big.std().item() - 1) < 0.05 and _big.min().item() < -2,
              "make_batch's samples do not look like a standard normal distribution (mean 0, standard "
              "deviation 1, negative values as often as positive ones). Check which random "
              "constructor you call: some draw uniformly from [0, 1), others from the normal "
              "distribution.")
_model = nn.Linear(7, 2, device=_meta)
try:
    _out = run_model(_model, torch.randn(5, 7))
except NotImplementedError as _err:
    checks.expect("meta" not in str(_err),
                  "run_model tried to move the model (the test's model lives on the meta device, "
                  "which has no data to copy). Move the input to the model's device instead: the "
                  "caller chose where the model lives, and moving a large model on every call is slow.")
    raise
checks.expect(next(_model.parameters()).device.type == "meta",
              "run_model moved the model. Move the input to the model's device instead: the caller "
              "chose where the model lives, and moving a large model on every call is slow.")
checks.expect_tensor(_out, "run_model(model on meta, x on cpu)", shape=(5, 2), device="meta",
                     why="The input must be moved to the device of the model's parameters before the "
                         "forward pass: a model and its inputs must share a device.")
_model = nn.Linear(7, 2).to(checks.DEVICE)
_x = torch.randn(5, 7)
_out = run_model(_model, _x)
checks.expect_close(_out, _model(_x.to(checks.DEVICE)), "run_model(model, x)",
                    why="run_model should return exactly model(x) once x is on the model's device.")
checks.expect_tensor(_out, "run_model(model, x)", requires_grad=True,
                     why="model(x) records the graph that training will call backward() through; "
                         "running it under torch.no_grad() (or detaching the output) throws that "
                         "graph away. run_model only moves the input; leave autograd as it is.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - PyTorch records operations while your code runs; the record is a graph of `grad_fn` nodes,
#   rebuilt on every forward pass, so Python control flow shapes it.
# - `backward()` walks that graph once, adds gradients into the leaves' `.grad`, and frees
#   what it saved. A new derivative needs a new forward pass.
# - Devices are explicit: choose one in one place, create data there, and move inputs to where
#   the model lives.
#
# Next, in **02 · Tensors**, you will look inside the tensor itself: shapes, dtypes, strides
# and the memory that views share.
