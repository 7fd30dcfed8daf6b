# %% [markdown] role="prose" grade_id="title"
# # 05 · Training: losses, optimisers and the loop
#
# **Time:** about 3 h 15 min of work (5,400 words to read, 12 exercises). Run top to bottom, the
# finished notebook takes about 2 s.
#
# PyTorch hands you the parts of training and leaves the assembly to you. A **loss** turns the
# model's outputs into one number that says how wrong they are; **autograd** turns that number
# into a gradient for every parameter; an **optimiser** turns gradients into changes of the
# parameters. The loop that repeats these, batch after batch, is code you write yourself.
# That is freedom, and it is responsibility: almost every training bug runs without an error.
# The model just learns worse, or not at all, and nothing tells you why.
#
# **By the end of this notebook you will be able to:**
# - write the five beats of a training step in the right order, and say what breaks when one
#   of them moves;
# - choose a loss for a task and feed it what it expects: logits, `int64` class indices, float
#   targets of the right shape;
# - write SGD with momentum as a `torch.optim.Optimizer` that matches torch's own, update for
#   update;
# - explain why AdamW applies weight decay differently from Adam;
# - put a learning-rate scheduler, gradient clipping and gradient accumulation each in its
#   right place in the loop;
# - read a loss curve, and train an MLP on real handwritten digits to a validation-accuracy
#   target.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import math

import torch
import torch.nn.functional as F
from torch import nn

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-loop"
# ## 1 · The loop in five beats
#
# A model is a function with knobs, its parameters. Training turns the knobs a little at a
# time so that the outputs move towards the targets. Each turn takes five beats:
#
# 1. `optimizer.zero_grad()` clears the gradients left over from the previous update;
# 2. **forward**: `outputs = model(x)` runs the model and records a fresh graph;
# 3. **loss**: `loss = loss_fn(outputs, y)` condenses the error into one number;
# 4. **backward**: `loss.backward()` walks the graph and stores d(loss)/d(parameter) in each
#    parameter's `.grad`;
# 5. `optimizer.step()` reads every `.grad` and moves its parameter.
#
# Why the first beat? Because `backward()` *adds* into `.grad` rather than overwriting it (you
# met this in 03). Adding is useful on purpose (section 9 builds on it), but in an ordinary
# loop it means that without clearing, every update would use the sum of all gradients so far.
# The optimiser knows the parameters, so it does the clearing: by default `zero_grad()` sets
# each `.grad` to `None`, which is cheaper than filling it with zeros.
#
# Every one of these calls is legal in any order, so PyTorch cannot warn you when the order is
# wrong. A `step()` before `backward()` uses stale gradients; a `zero_grad()` between
# `backward()` and `step()` throws away the gradients the step was about to use.
#
# ### Exercise 1 · Predict, then verify
#
# Here is one loop, with three different bodies. The weight `w` starts at 2.0, the loss is
# `3 * w` (so the gradient of every backward pass is 3), and SGD updates `w ← w − lr · w.grad`
# with `lr = 0.1`.
#
# ```python
# w = torch.tensor(2.0, requires_grad=True)
# optimizer = torch.optim.SGD([w], lr=0.1)
# for _ in range(3):
#     ...  # body A, B or C
# ```
#
# ```python
# # A                          # B                          # C
# optimizer.zero_grad()        loss = 3 * w                 loss = 3 * w
# loss = 3 * w                 loss.backward()              loss.backward()
# loss.backward()              optimizer.step()             optimizer.zero_grad()
# optimizer.step()                                          optimizer.step()
# ```
#
# **Without running anything**, fill in `loop_predictions`: the value of `w` after the loop for
# each body, and the value of `w.grad` after the loop for B and C (a float, or `None`).
#
# <details><summary>Hint 1</summary>
#
# In B nothing clears `.grad`. After the second `backward()` it holds 3 + 3. What does it
# hold when the third step runs, and how far did each of the three steps move `w`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# In C, `zero_grad()` sets `.grad` to `None`. What can `step()` do with a parameter whose
# `.grad` is `None`?
# </details>

# %% role="answer" grade_id="loop-predictions"
loop_predictions = {
    "A: w": None,        # a float
    "B: w": None,        # a float
    "B: w.grad": None,   # a float
    "C: w": None,        # a float
    "C: w.grad": None,   # a float, or None
}
### BEGIN SOLUTION
loop_predictions = {
    "A: w": 1.1,
    "B: w": 0.2,
    "B: w.grad": 9.0,
    "C: w": 2.0,
    "C: w.grad": None,
}
### END SOLUTION

# %% role="test" grade_id="test-loop-predictions" points=3
# Hidden tests run the three loops and compare them with your predictions.
checks.expect(isinstance(loop_predictions, dict)
              and set(loop_predictions) == {"A: w", "B: w", "B: w.grad", "C: w", "C: w.grad"},
              "`loop_predictions` should be a dict with exactly the keys 'A: w', 'B: w', 'B: w.grad', "
              "'C: w' and 'C: w.grad'.")
### BEGIN HIDDEN TESTS
def _run_loop(body):
    _w = torch.tensor(2.0, requires_grad=True, device=checks.DEVICE)
    _opt = torch.optim.SGD([_w], lr=0.1)
    for _ in range(3):
        body(_w, _opt)
    return _w.item(), (None if _w.grad is None else _w.grad.item())


def _body_a(w, opt):
    opt.zero_grad()
    (3 * w).backward()
    opt.step()


def _body_b(w, opt):
    (3 * w).backward()
    opt.step()


def _body_c(w, opt):
    (3 * w).backward()
    opt.zero_grad()
    opt.step()


def _expect_prediction(value, expected, name, why):
    # Not checks.expect_close: its message says how far off a number is, which here is the answer.
    checks.expect(type(value) in (int, float),
                  f"{name} should be a number (a float), but it is {checks.describe(value)}.")
    checks.expect(math.isclose(value, expected, rel_tol=1e-3, abs_tol=1e-3),
                  f"{name} is {value:.6g}, which is not what PyTorch computes. {why}")


_A, _B, _C = _run_loop(_body_a), _run_loop(_body_b), _run_loop(_body_c)
_expect_prediction(loop_predictions["A: w"], _A[0], "Your prediction for w after loop A",
                   why="In the correct loop every backward pass starts from a cleared .grad, so each of the "
                       "three steps subtracts lr times the same gradient.")
_expect_prediction(loop_predictions["B: w.grad"], _B[1], "Your prediction for w.grad after loop B",
                   why="backward() adds into .grad, and nothing in B clears it, so .grad ends up holding the "
                       "sum of every iteration's gradient (see Hint 1).")
_expect_prediction(loop_predictions["B: w"], _B[0], "Your prediction for w after loop B",
                   why="Each step in B uses the accumulated .grad, so every step is larger than the one "
                       "before: add up the three steps.")
checks.expect(loop_predictions["C: w.grad"] is None,
              "Your prediction for w.grad after loop C is not what PyTorch reports. By default zero_grad() "
              "sets .grad to None (not to a tensor of zeros), and nothing after it in body C computes a "
              "new gradient.")
_expect_prediction(loop_predictions["C: w"], _C[0], "Your prediction for w after loop C",
                   why="A zero_grad() between backward() and step() erases the gradient just before step() "
                       "reads it, and step() skips a parameter whose .grad is None (see Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-train-step"
# ## 2 · One training step
#
# Wrap the five beats in a function and you have the unit that every training loop repeats.
# Two details are worth getting right from the start:
#
# - **Do not trust `.grad` to be clean when you are called.** An earlier evaluation, a
#   gradient check, or another loop may have left gradients behind. Clearing at the *start* of
#   the step, as beat 1 does, makes the step correct whatever happened before it.
# - **Return a number, not the loss tensor.** The loss tensor is the root of this batch's
#   graph; whoever keeps it keeps the graph alive. `loss.item()` gives a plain Python float,
#   which is all anyone watching the loss needs. The loss you report is the one of this
#   forward pass, computed with the parameters *before* the update.
#
# ### Exercise 2 · `train_step`
#
# Write `train_step(model, x, y, loss_fn, optimizer)`: one update of `model` on the batch
# `(x, y)`, returning the batch's loss as a Python float.
#
# <details><summary>Hint 1</summary>
#
# Five lines for the five beats of section 1, in that order, then the return.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `.item()` turns a tensor holding one number into a Python number, detached from any graph.
# </details>

# %% role="answer" grade_id="train-step"
def train_step(model, x, y, loss_fn, optimizer):
    """One update of model on the batch (x, y). Returns the batch's loss as a Python float."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    outputs = model(x)
    loss = loss_fn(outputs, y)
    loss.backward()
    optimizer.step()
    return loss.item()
    ### END SOLUTION


# %% role="test" grade_id="test-train-step-sanity" points=1
with checks.seeded(0):
    _model = nn.Linear(4, 3).to(checks.DEVICE)
    _x = torch.randn(8, 4, device=checks.DEVICE)
    _y = torch.randint(0, 3, (8,), device=checks.DEVICE)
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_before = _model.weight.detach().clone()
_loss = train_step(_model, _x, _y, nn.CrossEntropyLoss(), _opt)
checks.expect(type(_loss) is float,
              f"`train_step` should return the loss as a Python float, but it returned {checks.describe(_loss)}. "
              "Use loss.item(): a number that no longer holds on to the graph.")
checks.expect(not torch.equal(_before, _model.weight.detach()),
              "After train_step the model's weights are unchanged, so nothing was learned. The step must "
              "compute gradients with loss.backward() and then apply them with optimizer.step(); the order "
              "is zero_grad, forward, loss, backward, step.")
print(f"train_step returned {_loss:.4f} and updated the weights")

# %% role="test" grade_id="test-train-step" points=3
# Hidden tests watch the order of zero_grad, backward and step (starting with stale gradients in
# .grad) and compare three steps with the same steps taken by torch's own loop.
### BEGIN HIDDEN TESTS
import copy as _copy


def _batches(n, seed=1):
    with checks.seeded(seed):
        return [(torch.randn(16, 5, device=checks.DEVICE), torch.randint(0, 3, (16,), device=checks.DEVICE))
                for _ in range(n)]


with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(checks.DEVICE)
_ref = _copy.deepcopy(_model)
_opt = torch.optim.SGD(_model.parameters(), lr=0.1, momentum=0.9)
_ref_opt = torch.optim.SGD(_ref.parameters(), lr=0.1, momentum=0.9)
for _p, _q in zip(_model.parameters(), _ref.parameters()):  # gradients left over from earlier work
    _p.grad = torch.ones_like(_p)
    _q.grad = torch.ones_like(_q)
_loss_fn = nn.CrossEntropyLoss()
with checks.TrainingSpy(_model, _opt) as _spy:
    _losses = [train_step(_model, _x, _y, _loss_fn, _opt) for _x, _y in _batches(3)]
_spy.check_loop(steps=3, name="`train_step`")
for _i, (_x, _y) in enumerate(_batches(3)):
    _ref_opt.zero_grad()
    _l = _loss_fn(_ref(_x), _y)
    _l.backward()
    _ref_opt.step()
    checks.expect(type(_losses[_i]) is float,
                  f"`train_step` should return a Python float, but it returned {checks.describe(_losses[_i])}.")
    checks.expect_close(_losses[_i], _l.item(), f"The loss train_step returned for batch {_i + 1}",
                        rtol=1e-4, atol=1e-5,
                        why="Return the loss of this batch's forward pass, computed before the update.")
for (_n, _p), _q in zip(_model.named_parameters(), _ref.parameters()):
    checks.expect_close(_p.detach(), _q.detach(), f"Parameter {_n} after three calls of train_step",
                        rtol=1e-4, atol=1e-5,
                        why="Each call makes exactly one update from this batch's gradient: zero_grad, "
                            "forward, loss, backward, step.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-losses"
# ## 3 · Losses, and what each one expects
#
# Choosing a loss is a modelling decision: it defines what "wrong" means, and its gradient is
# all the model ever learns from. Three losses cover most tasks. Each has a contract about its
# inputs, and most loss bugs are broken contracts that raise no error.
#
# **One class out of C: `nn.CrossEntropyLoss`** (or `F.cross_entropy`). Its input is raw
# scores, *logits*, of shape `(N, C)`: any real numbers, straight out of the last linear
# layer. Its target is the index of the right class for each example: shape `(N,)`, dtype
# `int64`. Inside, it turns logits into log-probabilities with `log_softmax` and takes minus
# the log-probability of the right class. Because the softmax is *inside*, a softmax in your
# model is applied twice: the scores get squashed towards uniform, the gradients shrink, and
# training crawls, silently. (Float targets mean something else to this loss: class
# *probabilities* of shape `(N, C)`. A float tensor of class ids is refused.)
#
# **Yes/no decisions, one or many per example: `nn.BCEWithLogitsLoss`.** Input: logits of any
# shape. Target: the same shape, *float*, 0.0 or 1.0. It applies the sigmoid itself, in a form
# that stays accurate when a logit is large (computing `log(sigmoid(z))` naively runs into
# `log(0)` once the sigmoid rounds to 0 or 1). A sigmoid before it is applied twice.
#
# **Predicting numbers: `nn.MSELoss`**, the mean of squared differences. Input and target must
# have the same shape, and the classic trap is broadcasting: a model with one output returns
# `(N, 1)`, targets usually come as `(N,)`, and `(N, 1) − (N,)` broadcasts to `(N, N)`: every
# prediction gets compared with every target. PyTorch warns, then returns a wrong number.
#
# All three average over the batch by default (`reduction="mean"`), so the size of the loss
# does not depend on the batch size.
#
# ### Exercise 3 · Fix three broken losses
#
# The next cell holds three loss functions written for data as it really arrives: class ids
# read from a CSV file (so they are floats), multi-label targets stored as `int64` zeros and
# ones, and regression targets as a flat `(N,)` tensor. Run it and read what happens. Then
# write the fixed versions below, with the same arguments:
#
# - `classify_loss(logits, labels)`: logits `(N, C)`, labels `(N,)` float class ids;
# - `multilabel_loss(logits, targets)`: logits `(N, K)`, targets `(N, K)` of `int64` 0/1;
# - `regression_loss(pred, target)`: pred `(N, 1)`, target `(N,)`.
#
# Each returns the mean loss as a 0-d tensor connected to the graph. Convert what needs
# converting inside the function.
#
# <details><summary>Hint 1</summary>
#
# Read the two error messages: what dtype does each loss want for its targets? `.long()` and
# `.float()` convert.
# </details>
#
# <details><summary>Hint 2</summary>
#
# In this exercise softmax and sigmoid belong inside the loss, not before it.
# </details>
#
# <details><summary>Hint 3</summary>
#
# For the regression, make the two shapes equal before the loss sees them: `squeeze(1)` on
# the prediction, or `unsqueeze(1)` on the target.
# </details>

# %% role="locked" grade_id="losses-broken"
def classify_loss_broken(logits, labels):
    probs = torch.softmax(logits, dim=1)
    return nn.CrossEntropyLoss()(probs, labels)


def multilabel_loss_broken(logits, targets):
    return nn.BCEWithLogitsLoss()(torch.sigmoid(logits), targets)


def regression_loss_broken(pred, target):
    return nn.MSELoss()(pred, target)


with checks.seeded(0):
    _demo = {
        "classify_loss_broken": (classify_loss_broken, torch.randn(4, 3), torch.tensor([0.0, 2.0, 1.0, 1.0])),
        "multilabel_loss_broken": (multilabel_loss_broken, torch.randn(4, 3), torch.randint(0, 2, (4, 3))),
        "regression_loss_broken": (regression_loss_broken, torch.randn(4, 1), torch.randn(4)),
    }
for _name, (_fn, _a, _b) in _demo.items():
    try:
        print(f"{_name} returned {_fn(_a, _b).item():.4f}")
    except RuntimeError as _err:
        print(f"{_name} raised RuntimeError: {_err}")


# %% role="answer" grade_id="losses"
def classify_loss(logits, labels):
    """Cross-entropy of (N, C) logits against (N,) class ids that arrive as floats."""
    ### BEGIN SOLUTION
    return F.cross_entropy(logits, labels.long())
    ### END SOLUTION


def multilabel_loss(logits, targets):
    """Binary cross-entropy of (N, K) logits against (N, K) int64 targets of 0s and 1s."""
    ### BEGIN SOLUTION
    return F.binary_cross_entropy_with_logits(logits, targets.float())
    ### END SOLUTION


def regression_loss(pred, target):
    """Mean squared error between (N, 1) predictions and (N,) targets."""
    ### BEGIN SOLUTION
    return F.mse_loss(pred.squeeze(1), target)
    ### END SOLUTION


# %% role="test" grade_id="test-losses-sanity" points=1
with checks.seeded(0):
    _logits = torch.randn(5, 4, device=checks.DEVICE, requires_grad=True)
    _labels = torch.tensor([0.0, 3.0, 1.0, 1.0, 2.0], device=checks.DEVICE)
    _ml_logits = torch.randn(5, 3, device=checks.DEVICE, requires_grad=True)
    _ml_targets = torch.randint(0, 2, (5, 3), device=checks.DEVICE)
    _pred = torch.randn(5, 1, device=checks.DEVICE, requires_grad=True)
    _target = torch.randn(5, device=checks.DEVICE)
for _name, _fn, _args in [("classify_loss", classify_loss, (_logits, _labels)),
                          ("multilabel_loss", multilabel_loss, (_ml_logits, _ml_targets)),
                          ("regression_loss", regression_loss, (_pred, _target))]:
    try:
        _value = _fn(*_args)
    except RuntimeError as _err:
        if "dtype" not in str(_err) and "cast" not in str(_err):
            raise
        checks.expect(False, f"`{_name}` raised RuntimeError: {_err}. Each loss expects a particular dtype for "
                             "its targets; convert them inside the function (see Hint 1).")
    checks.expect_tensor(_value, f"`{_name}(...)`", shape=(), requires_grad=True,
                         why="A loss is one number (a 0-d tensor) still connected to the graph of its "
                             "inputs, so that backward() can start from it.")
print("all three losses return a scalar connected to the graph")

# %% role="test" grade_id="test-classify-loss" points=2
# Hidden tests compare classify_loss and its gradient with cross-entropy on the raw logits.
### BEGIN HIDDEN TESTS
for _n, _c in [(6, 4), (3, 10)]:
    with checks.seeded(_n):
        _logits = (3 * torch.randn(_n, _c, device=checks.DEVICE)).requires_grad_()
        _labels = torch.randint(0, _c, (_n,), device=checks.DEVICE).float()
    try:
        _got = classify_loss(_logits, _labels)
    except RuntimeError as _err:
        if "dtype" not in str(_err) and "scalar type" not in str(_err):
            raise
        checks.expect(False, f"`classify_loss` raised RuntimeError: {_err}. CrossEntropyLoss takes class "
                             "indices as int64 (torch.long); labels that arrive as floats must be converted "
                             "(for example with .long()) before they reach the loss.")
    checks.expect_tensor(_got, "`classify_loss(logits, labels)`", shape=(), requires_grad=True,
                         why="Return the loss tensor itself, connected to the logits' graph.")
    _want = F.cross_entropy(_logits, _labels.long())
    _twice = F.cross_entropy(torch.softmax(_logits, dim=1), _labels.long())
    checks.expect(abs(_got.item() - _twice.item()) > 1e-5,
                  "`classify_loss` applies a softmax before the cross-entropy. CrossEntropyLoss already "
                  "computes log_softmax of its input, so it must get the raw logits: an extra softmax "
                  "squashes the scores, shrinks the gradients and slows training, without any error.")
    checks.expect_close(_got, _want, "`classify_loss(logits, labels)`", rtol=1e-4, atol=1e-6,
                        why="It should be the cross-entropy of the raw logits against the class indices, "
                            "averaged over the batch (nn.CrossEntropyLoss or F.cross_entropy).")
    _g, = torch.autograd.grad(_got, _logits, allow_unused=True)
    checks.expect(_g is not None,
                  "No gradient flows from classify_loss back to the logits: the tensor it returns is not connected "
                  "to them (rebuilt from a number with torch.tensor(...), or cut with .detach() or .item()), so a "
                  "model trained with it would never learn. Compute the loss from the logits with torch operations "
                  "and return that tensor.")
    _g_want, = torch.autograd.grad(_want, _logits)
    checks.expect_close(_g, _g_want, "The gradient of classify_loss with respect to the logits",
                        rtol=1e-4, atol=1e-6, why="The loss must be computed from the logits themselves.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-multilabel-loss" points=1
# Hidden tests compare multilabel_loss and its gradient with binary cross-entropy on the logits,
# including very confident (large) logits.
### BEGIN HIDDEN TESTS
with checks.seeded(3):
    _logits = (4 * torch.randn(8, 3, device=checks.DEVICE))
    _targets = torch.randint(0, 2, (8, 3), device=checks.DEVICE)
_logits[0] = torch.tensor([40.0, -40.0, 25.0], device=checks.DEVICE)   # confident...
_targets[0] = torch.tensor([0, 1, 0], device=checks.DEVICE)            # ...and wrong
_logits.requires_grad_()
try:
    _got = multilabel_loss(_logits, _targets)
except RuntimeError as _err:
    if "cast" not in str(_err) and "dtype" not in str(_err) and "scalar type" not in str(_err):
        raise
    checks.expect(False, f"`multilabel_loss` raised RuntimeError: {_err}. BCEWithLogitsLoss needs float targets "
                         "(0.0 or 1.0) of the same shape as the logits: convert the int64 targets with .float().")
checks.expect_tensor(_got, "`multilabel_loss(logits, targets)`", shape=(), requires_grad=True,
                     why="Return the loss tensor itself, connected to the logits' graph.")
_want = F.binary_cross_entropy_with_logits(_logits, _targets.float())
_twice = F.binary_cross_entropy_with_logits(torch.sigmoid(_logits), _targets.float())
checks.expect(abs(_got.item() - _twice.item()) > 1e-5,
              "`multilabel_loss` applies a sigmoid before BCEWithLogitsLoss, which applies the sigmoid itself: "
              "the logits are squashed twice. Pass the raw logits.")
checks.expect(abs(_got.item() - _want.item() * _logits.numel()) > 1e-3 * _want.item() * _logits.numel(),
              "`multilabel_loss` adds up the losses of all the entries instead of averaging them, so its size "
              "grows with the batch. Return the mean over every entry, as BCEWithLogitsLoss does by default "
              "(reduction='mean').")
checks.expect_close(_got, _want, "`multilabel_loss(logits, targets)`", rtol=1e-4, atol=1e-5,
                    why="It should be binary cross-entropy on the raw logits, averaged over every entry. If it "
                        "matches for moderate logits but not for very large ones, the sigmoid and the log were "
                        "computed separately: use "
                        "BCEWithLogitsLoss, which is numerically stable for any logit.")
_g, = torch.autograd.grad(_got, _logits, allow_unused=True)
checks.expect(_g is not None,
              "No gradient flows from multilabel_loss back to the logits: the tensor it returns is not connected to "
              "them (rebuilt from a number with torch.tensor(...), or cut with .detach() or .item()), so a model "
              "trained with it would never learn. Compute the loss from the logits with torch operations and "
              "return that tensor.")
_g_want, = torch.autograd.grad(_want, _logits)
checks.expect_close(_g, _g_want, "The gradient of multilabel_loss with respect to the logits", rtol=1e-4, atol=1e-6,
                    why="The loss must be computed from the logits themselves.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-regression-loss" points=1
# Hidden tests compare regression_loss and its gradient with the mean squared error of matching shapes.
### BEGIN HIDDEN TESTS
with checks.seeded(4):
    _pred = torch.randn(7, 1, device=checks.DEVICE, requires_grad=True)
    _target = torch.randn(7, device=checks.DEVICE)
_got = regression_loss(_pred, _target)
checks.expect_tensor(_got, "`regression_loss(pred, target)`", shape=(), requires_grad=True,
                     why="Return the loss tensor itself, connected to the predictions' graph.")
_want = F.mse_loss(_pred.squeeze(1), _target)
_all_pairs = ((_pred - _target) ** 2).mean()
checks.expect(abs(_got.item() - _all_pairs.item()) > 1e-6,
              "`regression_loss` compares every prediction with every target: (N, 1) against (N,) broadcasts "
              "to (N, N). Give the prediction and the target the same shape before the loss.")
checks.expect_close(_got, _want, "`regression_loss(pred, target)`", rtol=1e-4, atol=1e-6,
                    why="It should be the mean of the squared differences between each prediction and its own "
                        "target.")
_g, = torch.autograd.grad(_got, _pred, allow_unused=True)
checks.expect(_g is not None,
              "No gradient flows from regression_loss back to the predictions: the tensor it returns is not "
              "connected to them (rebuilt from a number with torch.tensor(...), or cut with .detach() or .item()), "
              "so a model trained with it would never learn. Compute the loss from pred with torch operations and "
              "return that tensor.")
_g_want, = torch.autograd.grad(_want, _pred)
checks.expect_close(_g, _g_want, "The gradient of regression_loss with respect to the predictions", rtol=1e-4,
                    atol=1e-6, why="The loss must be computed from the predictions themselves.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-epoch"
# ## 4 · An epoch, and the two modes of a model
#
# An **epoch** is one pass over the training data, one step per batch. Two concerns join the
# loop at this level.
#
# **Mode.** Some layers behave differently while training. Dropout zeroes random activations
# during training and does nothing during evaluation; batch norm normalises with the
# statistics of the current batch (and updates its running averages) during training, and
# with the stored averages during evaluation. `model.train()` and `model.eval()` set a flag on
# every submodule. A real run alternates: train an epoch, evaluate (which switches to eval
# mode), train the next epoch... so the function that trains an epoch must switch the model
# back to training mode itself, at its start. Forget it and every epoch after the first
# evaluation trains with dropout switched off.
#
# **Watching the loss without holding on to it.** To follow progress you want the epoch's
# average loss. Adding loss *tensors* (`total += loss`) records an addition in the graph each
# time, chaining every batch's graph onto `total`: all of them stay in memory until `total`
# is dropped, and what you return is a tensor tied to a graph, not a number. Add Python
# floats instead.
#
# ### Exercise 4 · Fix a broken epoch
#
# `train_epoch_broken` below runs without an error and returns something that looks like a
# loss. It has three bugs. The cell runs it right after an "evaluation", on a small model with
# dropout: read what it prints. Then write `train_epoch(model, loader, loss_fn, optimizer)`:
#
# - it trains in training mode, one update per batch (use your `train_step`);
# - it returns the mean of the batch losses (each batch counts once) as a Python float;
# - `loader` is anything that yields `(inputs, targets)` pairs: a list of batches, or a
#   `DataLoader`.
#
# <details><summary>Hint 1</summary>
#
# Compare the loop body with the five beats of section 1. Which beat is missing?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Look at what the demonstration printed: the kind of value returned, and the mode the model
# trained in.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Your `train_step` already does the five beats and returns a float: the loop only has to
# call it, add up, and count.
# </details>

# %% role="locked" grade_id="epoch-broken"
def train_epoch_broken(model, loader, loss_fn, optimizer):
    total = 0
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss
    return total / len(loader)


with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    _batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(5)]
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_model.eval()  # as if we had just measured the validation accuracy
_result = train_epoch_broken(_model, _batches, nn.CrossEntropyLoss(), _opt)
print("train_epoch_broken returned", checks.describe(_result), "with grad_fn", type(_result.grad_fn).__name__)
print("nodes in the graph behind it:", len(checks.graph_nodes(_result)))
print("the model trained with model.training =", _model.training)


# %% role="answer" grade_id="train-epoch"
def train_epoch(model, loader, loss_fn, optimizer):
    """One pass over loader in training mode. Returns the mean batch loss as a Python float."""
    ### BEGIN SOLUTION
    model.train()
    total, batches = 0.0, 0
    for x, y in loader:
        total += train_step(model, x, y, loss_fn, optimizer)
        batches += 1
    return total / batches
    ### END SOLUTION


# %% role="test" grade_id="test-train-epoch-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(checks.DEVICE)
    _batches = [(torch.randn(8, 4, device=checks.DEVICE), torch.randint(0, 3, (8,), device=checks.DEVICE))
                for _ in range(4)]
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_mean = train_epoch(_model, _batches, nn.CrossEntropyLoss(), _opt)
checks.expect(type(_mean) is float,
              f"`train_epoch` should return the epoch's mean loss as a Python float, but it returned "
              f"{checks.describe(_mean)}. Add up numbers (loss.item(), or what train_step returns), not "
              "loss tensors.")
print(f"mean loss over the epoch: {_mean:.4f}")

# %% role="test" grade_id="test-train-epoch-loop" points=2
# Hidden tests call train_epoch right after an evaluation (model in eval mode, stale gradients
# in .grad) and watch the order of zero_grad, backward and step and the model's mode.
### BEGIN HIDDEN TESTS
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.25), nn.Linear(16, 3)).to(checks.DEVICE)
    _batches = [(torch.randn(8, 4, device=checks.DEVICE), torch.randint(0, 3, (8,), device=checks.DEVICE))
                for _ in range(5)]
_opt = torch.optim.SGD(_model.parameters(), lr=0.05, momentum=0.9)
_model.eval()
for _p in _model.parameters():
    _p.grad = torch.ones_like(_p)
with checks.seeded(1), checks.TrainingSpy(_model, _opt) as _spy:
    train_epoch(_model, _batches, nn.CrossEntropyLoss(), _opt)
_spy.check_loop(steps=len(_batches), name="`train_epoch`")
### END HIDDEN TESTS

# %% role="test" grade_id="test-train-epoch-loss" points=2
# Hidden tests check the mean loss train_epoch returns (with a smaller last batch), and that it lets each
# batch's graph go.
### BEGIN HIDDEN TESTS
_watch = checks.GraphWatch()
_seen = []


def _watched_loss(outputs, targets):
    _l = F.cross_entropy(outputs, targets)
    _seen.append(_l.item())
    return _watch.tag(_l)


with checks.seeded(2):
    _model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(checks.DEVICE)
    _batches = [(torch.randn(_n, 4, device=checks.DEVICE), torch.randint(0, 3, (_n,), device=checks.DEVICE))
                for _n in (8, 8, 8, 8, 8, 2)]  # the last batch is smaller, as a DataLoader's often is
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_mean = train_epoch(_model, _batches, _watched_loss, _opt)
checks.expect(type(_mean) is float,
              f"`train_epoch` should return a Python float, but it returned {checks.describe(_mean)}. Adding loss "
              "tensors keeps every batch's graph alive; add loss.item() instead.")
checks.expect(_watch.tagged == len(_batches),
              f"`train_epoch` computed the loss {_watch.tagged} times for {len(_batches)} batches; it should "
              "compute it once per batch.")
checks.expect(_watch.peak <= 2,
              f"While train_epoch ran, the graphs of {_watch.peak} earlier batches were still alive. Something "
              "kept each batch's loss tensor (adding loss tensors into a total, or appending them to a list), "
              "and with it the batch's whole graph, so memory grows with every batch. Keep Python numbers "
              "(loss.item()) instead.")
_sizes = [len(_y) for _, _y in _batches]
checks.expect(abs(_mean - sum(_l * _n for _l, _n in zip(_seen, _sizes)) / sum(_sizes)) > 1e-6
              or abs(_mean - sum(_seen) / len(_seen)) <= 1e-6,
              "`train_epoch` weighted each batch's loss by the number of samples in it. The exercise asks for the "
              "mean of the batch losses with every batch counting once: add up what train_step returns and "
              "divide by the number of batches.")
checks.expect_close(_mean, sum(_seen) / len(_seen), "The mean loss train_epoch returned", rtol=1e-5, atol=1e-6,
                    why="Return the mean of the batch losses, each as computed for its batch before that "
                        "batch's update; every batch counts once.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-sgd"
# ## 5 · An optimiser is an update rule with a memory
#
# An optimiser computes no gradients; it consumes them. Plain SGD moves each parameter
# against its gradient: `p ← p − lr · g`. Picture a loss surface shaped like a long, narrow
# valley: the gradient points mostly across the valley, towards the nearer wall, so plain SGD
# zig-zags from wall to wall while creeping along the floor. **Momentum** gives each
# parameter a velocity, a buffer `b` that sums recent gradients with fading weights.
# Components that flip sign at every step cancel out in the buffer; components that keep
# pointing the same way build up speed.
#
# This is the rule of `torch.optim.SGD`, for each parameter `p` with gradient `g`, with
# learning rate `lr`, momentum `μ` and weight decay `λ`:
#
# 1. `g ← g + λ·p`: weight decay as an L2 penalty, whose gradient `λ·p` pulls every weight
#    towards zero;
# 2. `b ← g` on the parameter's first step, `b ← μ·b + g` on later steps (with `μ = 0` there is
#    no buffer: `b` is just `g`);
# 3. `p ← p − lr·b`.
#
# **The anatomy of a `torch.optim.Optimizer`.**
# - `super().__init__(params, defaults)` stores the parameters in `self.param_groups`: a list
#   of dicts, each holding a `"params"` list and that group's hyperparameters (`"lr"`, ...),
#   taken from `defaults` where the group sets none. Groups let one model train with several
#   learning rates.
# - `self.state` maps each parameter to a dict of what the rule must remember between steps:
#   here, the momentum buffer. Keeping it there, rather than in attributes of your own, is
#   what lets `state_dict()` save it and a checkpoint resume it (08).
# - `step()` reads each group's hyperparameters *at every call* (a scheduler changes
#   `group["lr"]` between steps); updates parameters in place, since the model holds these
#   very tensors; does so inside `torch.no_grad()`, since an update is not part of the model's
#   computation and autograd refuses in-place changes to leaves that require grad; and skips
#   parameters whose `.grad` is `None` (frozen, or unused by this loss).
# - `step(closure=None)` is the standard signature. A few optimisers (L-BFGS) must evaluate
#   the loss several times per step, so every optimiser accepts a `closure`: a function that
#   clears the gradients, recomputes the loss, calls `backward()` and returns the loss. When
#   one is given, `step` calls it first, with recording switched on (`torch.enable_grad()`,
#   since `step` itself runs without it), and returns the loss it got; otherwise it returns
#   `None`. Code written for any optimiser (a training library, a scheduler test) may pass
#   one, so yours must accept it too.
# - `zero_grad()` is inherited: you do not write it.
#
# ### Exercise 5 · `MomentumSGD`
#
# Complete `MomentumSGD(params, lr, momentum=0.0, weight_decay=0.0)`. Its updates must match
# those of `torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)` to
# float precision, with parameter groups, learning rates changed between steps, and
# parameters without gradients; its momentum buffers must live in `self.state`, where
# `state_dict()` finds them; and `step(closure=None)` must handle a closure as described
# above.
#
# <details><summary>Hint 1</summary>
#
# `__init__` is one line: hand a dict of the defaults to the parent class.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `step` is two nested loops: over `self.param_groups`, then over `group["params"]`.
# `self.state[p]` is a dict that starts empty for each parameter: a missing buffer means this
# is the parameter's first step.
# </details>
#
# <details><summary>Hint 3</summary>
#
# In place: `p.add_(b, alpha=-lr)`, `b.mul_(mu).add_(g)`. When you create the buffer, make it a
# copy (`.clone()`) of the gradient: if it *is* `p.grad`, then zeroing or accumulating
# gradients changes your buffer too.
# </details>

# %% role="answer" grade_id="momentum-sgd"
class MomentumSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay: the update rule of torch.optim.SGD."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        ### BEGIN SOLUTION
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        ### END SOLUTION

    def step(self, closure=None):
        """Update every parameter that has a gradient, once. Returns the closure's loss, if given."""
        ### BEGIN SOLUTION
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad
                    if wd != 0:
                        g = g.add(p, alpha=wd)
                    if mu != 0:
                        state = self.state[p]
                        if "momentum_buffer" not in state:
                            state["momentum_buffer"] = g.clone()
                        else:
                            state["momentum_buffer"].mul_(mu).add_(g)
                        g = state["momentum_buffer"]
                    p.add_(g, alpha=-lr)
        return loss
        ### END SOLUTION


# %% role="test" grade_id="test-momentum-sgd-sanity" points=1
_p = nn.Parameter(torch.tensor([1.0, 2.0], device=checks.DEVICE))
_opt = MomentumSGD([_p], lr=0.1)
_p.grad = torch.tensor([0.5, -1.0], device=checks.DEVICE)
_opt.step()
checks.expect_close(_p.detach(), torch.tensor([0.95, 2.1], device=checks.DEVICE),
                    "The parameter after one step with lr=0.1 and no momentum",
                    why="Without momentum the update is p ← p − lr·g, made in place on the parameter itself "
                        "(the model holds that very tensor).")
print("one plain step looks right")


# %% role="test" grade_id="test-momentum-sgd" points=3
# Hidden tests train two copies of a small network, one with torch.optim.SGD (momentum and
# weight decay) and one with MomentumSGD, compare them after every step, and look for the
# momentum buffers in MomentumSGD's state_dict().
### BEGIN HIDDEN TESTS
def _make_net():
    with checks.seeded(0):
        return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).to(checks.DEVICE)


with checks.seeded(1):
    _data = [(torch.randn(10, 5, device=checks.DEVICE), torch.randn(10, 2, device=checks.DEVICE)) for _ in range(6)]


def _trajectory(model, opt):
    _out = []
    for _x, _y in _data:
        opt.zero_grad()
        F.mse_loss(model(_x), _y).backward()
        opt.step()
        _out.append([_q.detach().clone() for _q in model.parameters()])
    return _out


def _same(a, b):
    return all(torch.allclose(_u, _v, rtol=1e-4, atol=1e-6) for _u, _v in zip(a, b))


def _torch_run(**settings):
    _m = _make_net()
    return _trajectory(_m, torch.optim.SGD(_m.parameters(), **settings))


_cfg = dict(lr=0.05, momentum=0.9, weight_decay=0.01)
_ref = _torch_run(**_cfg)
_net = _make_net()
_mine = MomentumSGD(_net.parameters(), **_cfg)
_got = _trajectory(_net, _mine)
if not _same(_got[-1], _ref[-1]):
    checks.expect(not _same(_got[-1], _torch_run(lr=0.05, momentum=0.0, weight_decay=0.01)[-1]),
                  "MomentumSGD's updates match SGD *without* momentum: the velocity buffer does not survive "
                  "from one step to the next. Keep it in self.state[p]: create it on a parameter's first "
                  "step, and update it in place on later steps.")
    checks.expect(not _same(_got[-1], _torch_run(lr=0.05, momentum=0.9, weight_decay=0.0)[-1]),
                  "MomentumSGD's updates match SGD with momentum but without weight decay: add "
                  "weight_decay·p to the gradient before it enters the momentum buffer (step 1 of the rule).")
    _first = next(_i for _i in range(len(_ref)) if not _same(_got[_i], _ref[_i]))
    checks.expect(_first > 0,
                  "MomentumSGD's very first update already differs from torch.optim.SGD's. On a parameter's "
                  "first step the buffer is the gradient itself (weight decay included), and the update "
                  "p ← p − lr·b changes the parameter in place.")
    checks.expect(False,
                  f"MomentumSGD's first update matches torch.optim.SGD, but update {_first + 1} does not. "
                  "Check how the buffer combines with each new gradient: b ← μ·b + g, with no other factor, "
                  "kept in self.state[p] from one step to the next. The g that enters the buffer already holds "
                  "the weight decay λ·p (step 1): SGD does not shrink the parameter separately, as AdamW does.")
# The buffers must live in self.state, where optimizer.state_dict() finds them (a checkpoint saves them).
_saved = _mine.state_dict()["state"]
checks.expect(len(_saved) == len(list(_net.parameters()))
              and all(any(torch.is_tensor(_v) and tuple(_v.shape) == tuple(_q.shape) for _v in _saved.get(_i, {}).values())
                      for _i, _q in enumerate(_net.parameters())),
              "MomentumSGD's updates are right, but its momentum buffers are not in self.state[p], so "
              "optimizer.state_dict() does not contain them: a checkpoint would lose them and a resumed run "
              "would restart without its velocity (section 5, and 08). Keep per-parameter memory in "
              "self.state[p], a dict that the base class creates for you.")
# step(closure): the closure recomputes the loss and its gradients; step runs it first, with
# recording on, and returns its loss. Compared with torch.optim.SGD given the same closure.
_closure_nets = (_make_net(), _make_net())
_closure_opts = (MomentumSGD(_closure_nets[0].parameters(), **_cfg),
                 torch.optim.SGD(_closure_nets[1].parameters(), **_cfg))
_returned = []
for _m, _o in zip(_closure_nets, _closure_opts):
    def _closure(_m=_m, _o=_o):
        _o.zero_grad()
        _loss = F.mse_loss(_m(_data[0][0]), _data[0][1])
        _loss.backward()
        return _loss
    try:
        with torch.no_grad():  # step must switch recording on for the closure itself
            _returned.append(_o.step(_closure))
    except TypeError as _err:
        checks.expect("positional argument" not in str(_err) and "unexpected keyword" not in str(_err),
                      "MomentumSGD.step does not accept a closure: every torch optimiser's step has the "
                      "signature step(closure=None), and code written for any optimiser may pass one "
                      "(section 5).")
        raise
    except RuntimeError as _err:
        checks.expect("does not require grad" not in str(_err),
                      "MomentumSGD.step called the closure while recording was off, so its backward() "
                      "found no graph. Call the closure inside `with torch.enable_grad():`: step runs "
                      "without recording, but the closure must record (section 5).")
        raise
checks.expect(torch.is_tensor(_returned[0]) and torch.equal(_returned[0], _returned[1]),
              "MomentumSGD.step(closure) should return the loss the closure returned (and None when "
              "there is no closure), as torch's optimisers do.")
checks.expect(_same([_q.detach() for _q in _closure_nets[0].parameters()],
                    [_q.detach() for _q in _closure_nets[1].parameters()]),
              "With a closure, MomentumSGD.step did not update as torch.optim.SGD does: call the closure "
              "first (it computes fresh gradients), then update with those gradients.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-momentum-sgd-groups" points=2
# Hidden tests use two parameter groups with their own learning rate, momentum and weight decay,
# a scheduler that changes the learning rate between steps, zero_grad(set_to_none=False), and a layer that
# takes no part in the loss (its .grad stays None).
### BEGIN HIDDEN TESTS
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.head = nn.Linear(6, 1)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def _make_net():
    with checks.seeded(0):
        return _Net().to(checks.DEVICE)


def _groups(m):
    return [{"params": list(m.body.parameters()), "lr": 0.02, "momentum": 0.5},
            {"params": list(m.head.parameters()) + list(m.unused.parameters()), "weight_decay": 0.01}]


with checks.seeded(5):
    _data = [(torch.randn(12, 4, device=checks.DEVICE), torch.randn(12, 1, device=checks.DEVICE)) for _ in range(6)]


def _trajectory(model, opt):
    _sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    _out = []
    for _x, _y in _data:
        opt.zero_grad(set_to_none=False)
        F.mse_loss(model(_x), _y).backward()
        opt.step()
        _sched.step()
        _out.append([_q.detach().clone() for _q in model.parameters()])
    return _out


def _same(a, b):
    return all(torch.allclose(_u, _v, rtol=1e-4, atol=1e-6) for _u, _v in zip(a, b))


_cfg = dict(lr=0.1, momentum=0.9, weight_decay=0.0)
_ref_net = _make_net()
_ref = _trajectory(_ref_net, torch.optim.SGD(_groups(_ref_net), **_cfg))
_net = _make_net()
_opt = MomentumSGD(_groups(_net), **_cfg)
try:
    _got = _trajectory(_net, _opt)
except (AttributeError, TypeError) as _err:
    checks.expect(False, f"MomentumSGD.step raised {type(_err).__name__}: {_err}. One layer took no part in the "
                         "loss, so its parameters' .grad is None: skip such parameters, they have nothing to "
                         "apply.")
_unused = [_q.detach() for _q in _net.unused.parameters()]
_unused_ref = [_q.detach() for _q in _ref_net.unused.parameters()]
checks.expect(_same(_unused, _unused_ref),
              "MomentumSGD changed parameters whose .grad is None (a layer that took no part in the loss). "
              "Skip them entirely: no gradient means no update.")
_grads = {_q.grad.untyped_storage().data_ptr() for _q in _net.parameters() if _q.grad is not None}
checks.expect(not any(torch.is_tensor(_v) and _v.untyped_storage().data_ptr() in _grads
                      for _st in _opt.state.values() for _v in _st.values()),
              "MomentumSGD's momentum buffer is the gradient tensor itself, so zero_grad(set_to_none=False) and "
              "the next backward() overwrite the buffer. Store a copy: g.clone().")
if not _same(_got[-1], _ref[-1]):
    _first = next(_i for _i in range(len(_ref)) if not _same(_got[_i], _ref[_i]))
    checks.expect(_first >= 2,
                  f"With two parameter groups that set their own lr, momentum and weight_decay, MomentumSGD's "
                  f"update {_first + 1} already differs from torch.optim.SGD's, before the scheduler has changed "
                  "anything. Each group carries its own hyperparameters: read lr, momentum and weight_decay "
                  "from the group at every step (group['lr'], group['momentum'], ...), not from the "
                  "constructor's arguments.")
    checks.expect(False,
                  f"MomentumSGD matches torch.optim.SGD until the scheduler lowers the learning rate, then update "
                  f"{_first + 1} differs. Read group['lr'] at every step (a scheduler writes a new value there), "
                  "and keep the learning rate out of the momentum buffer: b sums gradients, lr scales the step.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-adam"
# ## 6 · Adam, and why AdamW decays differently
#
# **Adam** keeps two running averages per parameter: `m`, of the gradient (a momentum), and
# `v`, of the squared gradient. Its step is `lr · m̂ / (√v̂ + ε)`, where the hats undo the bias of
# averages that start at zero. Dividing by `√v̂` normalises the step: a parameter whose
# gradients are consistently large and one whose gradients are consistently tiny both move by
# roughly `lr` per step. That is why Adam forgives a badly chosen learning rate and badly
# scaled parameters, and why it is a common default.
#
# Now add weight decay. `torch.optim.Adam(weight_decay=λ)` does what SGD does: it adds `λ·p` to
# the gradient. But then the sum goes through the normalisation like everything else, so the
# decay no longer means "shrink each weight by a fixed fraction". A weight with large
# gradients barely feels it; a weight with tiny gradients is pulled by up to a full `lr`-sized
# step. **AdamW** (decoupled weight decay) takes the decay out of the gradient: each step first
# shrinks the weight directly, `p ← p − lr·λ·p`, then takes the Adam step on the plain
# gradient. With Adam-style optimisers and weight decay, AdamW is the usual choice.
#
# ### Exercise 6 · Predict, then verify
#
# ```python
# p = nn.Parameter(torch.tensor([1.0]))
# r = nn.Parameter(torch.tensor([1.0]))
# q = nn.Parameter(torch.tensor([1.0]))
# for t in (p, r, q):
#     t.grad = torch.zeros(1)      # right now, the loss does not depend on these weights
# torch.optim.Adam([p], lr=0.1, weight_decay=0.1).step()
# torch.optim.Adam([r], lr=0.1, weight_decay=0.001).step()
# torch.optim.AdamW([q], lr=0.1, weight_decay=0.1).step()
# ```
#
# Predict `p`, `r` and `q` after their first step (three decimals are enough), and name the
# optimiser, `"Adam"` or `"AdamW"`, that removes the same fraction of each weight at every step,
# whatever the weight's gradients.
#
# <details><summary>Hint 1</summary>
#
# On the first step the bias corrections make `m̂ = g` and `v̂ = g²`, so Adam's step is
# `lr · g / (|g| + ε)`, which is about `lr` whenever `g` is not tiny compared with `ε = 1e-8`.
# What is `g` for `p` once the weight decay is added? And for `r`?
# </details>
#
# <details><summary>Hint 2</summary>
#
# In AdamW the gradient stays zero, so `m` and `v` stay zero and the Adam part moves nothing.
# What does the decoupled decay do on its own?
# </details>

# %% role="answer" grade_id="adam-predictions"
adam_predictions = {
    "p after Adam": None,          # a float
    "r after Adam": None,          # a float
    "q after AdamW": None,         # a float
    "fixed-fraction decay": None,  # "Adam" or "AdamW"
}
### BEGIN SOLUTION
adam_predictions = {
    "p after Adam": 0.9,
    "r after Adam": 0.9,
    "q after AdamW": 0.99,
    "fixed-fraction decay": "AdamW",
}
### END SOLUTION

# %% role="test" grade_id="test-adam-predictions" points=3
# Hidden tests run the three optimisers and compare with your predictions.
checks.expect(isinstance(adam_predictions, dict)
              and set(adam_predictions) == {"p after Adam", "r after Adam", "q after AdamW", "fixed-fraction decay"},
              "`adam_predictions` should be a dict with exactly the keys 'p after Adam', 'r after Adam', "
              "'q after AdamW' and 'fixed-fraction decay'.")
### BEGIN HIDDEN TESTS
_p, _r, _q = (nn.Parameter(torch.tensor([1.0], device=checks.DEVICE)) for _ in range(3))
for _t in (_p, _r, _q):
    _t.grad = torch.zeros(1, device=checks.DEVICE)
torch.optim.Adam([_p], lr=0.1, weight_decay=0.1).step()
torch.optim.Adam([_r], lr=0.1, weight_decay=0.001).step()
torch.optim.AdamW([_q], lr=0.1, weight_decay=0.1).step()


def _expect_prediction(value, expected, name, why):
    # Not checks.expect_close: its message says how far off a number is, which here is the answer.
    checks.expect(type(value) in (int, float),
                  f"{name} should be a number (a float), but it is {checks.describe(value)}.")
    checks.expect(abs(value - expected) <= 2e-3, f"{name} is {value:.6g}, which is not what PyTorch computes. {why}")


_expect_prediction(adam_predictions["p after Adam"], _p.item(), "Your prediction for p after Adam",
                   why="Adam adds weight_decay·p to the gradient and then normalises the sum: on a first "
                       "step that gives a step of about lr, whatever the size of the gradient (see Hint 1).")
_expect_prediction(adam_predictions["r after Adam"], _r.item(), "Your prediction for r after Adam",
                   why="A weight decay 100 times smaller still goes through Adam's normalisation: the size "
                       "of the L2 term is divided away.")
_expect_prediction(adam_predictions["q after AdamW"], _q.item(), "Your prediction for q after AdamW",
                   why="AdamW shrinks the weight directly by lr·weight_decay of itself, and with a zero "
                       "gradient its Adam part has nothing to do (see Hint 2).")
checks.expect(type(adam_predictions["fixed-fraction decay"]) is str
              and adam_predictions["fixed-fraction decay"] == "AdamW",
              "Your answer for 'fixed-fraction decay' is not right (write \"Adam\" or \"AdamW\"). Ask which "
              "optimiser's decay goes through the gradient normalisation, and which one's does not.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-adamw"
# ### Exercise 7 · `AdamW`, by hand
#
# Now write the rule you just predicted. For each parameter `p` with gradient `g`, at the
# parameter's step number `t` (1 on its first step), with `β₁, β₂ = betas`:
#
# 1. `p ← p − lr·λ·p`: the decoupled decay, applied to the weight itself, before anything
#    else, and never added to `g`;
# 2. `m ← β₁·m + (1 − β₁)·g` and `v ← β₂·v + (1 − β₂)·g²`, both starting at zero;
# 3. `m̂ = m / (1 − β₁ᵗ)` and `v̂ = v / (1 − β₂ᵗ)`: the bias corrections. Without them the
#    first steps are far too small, because `m` and `v` start at zero;
# 4. `p ← p − lr · m̂ / (√v̂ + ε)`.
#
# Complete `AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)`. Its
# updates must match `torch.optim.AdamW`'s with the same settings to float precision, with
# parameter groups and parameters without gradients; `m`, `v` and `t` live in `self.state[p]`;
# `step(closure=None)` follows the standard signature, as in Exercise 5. Write the rule
# yourself: no `torch.optim.Adam` or `AdamW` inside, and no subclass of them.
#
# <details><summary>Hint 1</summary>
#
# The skeleton is `MomentumSGD`'s: defaults to the parent class, two loops in `step`, skip
# `p.grad is None`, everything in place inside `torch.no_grad()`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# On a parameter's first step `self.state[p]` is empty: create `step = 0` and two zero
# buffers shaped like `p` (`torch.zeros_like(p)`), then count the step before using `t`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# In place: `p.mul_(1 - lr * wd)`, `m.mul_(b1).add_(g, alpha=1 - b1)`,
# `v.mul_(b2).addcmul_(g, g, value=1 - b2)`. The bias corrections divide copies
# (`m / (1 - b1 ** t)`), never the buffers themselves.
# </details>

# %% role="answer" grade_id="adamw"
class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay: the update rule of torch.optim.AdamW."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        ### BEGIN SOLUTION
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        ### END SOLUTION

    def step(self, closure=None):
        """Update every parameter that has a gradient, once. Returns the closure's loss, if given."""
        ### BEGIN SOLUTION
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] += 1
                    t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                    p.mul_(1 - lr * wd)
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    m_hat = m / (1 - b1 ** t)
                    v_hat = v / (1 - b2 ** t)
                    p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)
        return loss
        ### END SOLUTION


# %% role="test" grade_id="test-adamw-sanity" points=1
_w_mine = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], device=checks.DEVICE))
_w_ref = nn.Parameter(_w_mine.detach().clone())
for _w in (_w_mine, _w_ref):
    _w.grad = torch.tensor([0.3, 0.0, -4.0], device=checks.DEVICE)
_opt = AdamW([_w_mine], lr=0.1, weight_decay=0.1)
checks.expect(isinstance(_opt, torch.optim.Optimizer), "AdamW should be a torch.optim.Optimizer.")
_opt.step()
torch.optim.AdamW([_w_ref], lr=0.1, weight_decay=0.1).step()
checks.expect_close(_w_mine.detach(), _w_ref.detach(), "the weight vector after one step of your AdamW",
                    rtol=1e-5, atol=1e-6,
                    why="On a first step the bias corrections make the Adam step lr·g/(|g| + ε), after the "
                        "decay p ← p − lr·λ·p.")
print("one step of AdamW matches torch.optim.AdamW:", [round(v, 4) for v in _w_mine.tolist()])

# %% role="test" grade_id="test-adamw" points=3
# Hidden tests train two copies of a small network, one with torch.optim.AdamW and one with
# yours, compare them after every step, with groups, frozen parameters and a closure, and look
# for m, v and t in the state_dict.
### BEGIN HIDDEN TESTS
import importlib as _importlib
from unittest import mock as _mock

_adam_module = _importlib.import_module("torch.optim.adam")
_adamw_module = _importlib.import_module("torch.optim.adamw")


def _make_net():
    with checks.seeded(0):
        return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2)).to(checks.DEVICE)


with checks.seeded(2):
    _data = [(torch.randn(10, 5, device=checks.DEVICE), torch.randn(10, 2, device=checks.DEVICE)) for _ in range(8)]


def _trajectory(model, opt):
    _out = []
    for _x, _y in _data:
        opt.zero_grad()
        F.mse_loss(model(_x), _y).backward()
        opt.step()
        _out.append([_q.detach().clone() for _q in model.parameters()])
    return _out


def _same(a, b):
    return all(torch.allclose(_u, _v, rtol=1e-4, atol=1e-6) for _u, _v in zip(a, b))


def _torch_run(cls=torch.optim.AdamW, **settings):
    _m = _make_net()
    return _trajectory(_m, cls(_m.parameters(), **settings))


class _Shortcut(Exception):
    pass


def _shortcut(*args, **kwargs):
    raise _Shortcut()


checks.expect(not (isinstance(AdamW, type) and issubclass(AdamW, torch.optim.Adam)),
              "Your AdamW is a subclass of torch.optim.Adam (or AdamW), so torch's own rule does the work. "
              "Subclass torch.optim.Optimizer and write the update yourself (section 6 and the steps above).")
_cfg = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.2)
_ref = _torch_run(**_cfg)
_net = _make_net()
try:
    with _mock.patch.object(torch.optim.Adam, "step", _shortcut), \
         _mock.patch.object(torch.optim.AdamW, "step", _shortcut), \
         _mock.patch.object(_adam_module, "adam", _shortcut), \
         _mock.patch.object(_adamw_module, "adamw", _shortcut):
        _mine = AdamW(_net.parameters(), **_cfg)
        _got = _trajectory(_net, _mine)
except _Shortcut:
    checks.expect(False, "Your AdamW hands the update to torch's own Adam or AdamW. Write the rule yourself: "
                         "decay, the two averages, the bias corrections and the step (the steps above).")
if not _same(_got[-1], _ref[-1]):
    _coupled = _torch_run(torch.optim.Adam, **_cfg)
    checks.expect(not _same(_got[-1], _coupled[-1]),
                  "Your AdamW's updates match torch.optim.Adam with weight_decay: the decay is added to the "
                  "gradient (an L2 penalty), where it goes through the normalisation. AdamW decouples it: "
                  "shrink the weight itself, p ← p − lr·λ·p, and keep g the plain gradient (step 1).")
    checks.expect(not _same(_got[-1], _torch_run(**{**_cfg, "weight_decay": 0.0})[-1]),
                  "Your AdamW's updates match AdamW without weight decay: the decay step p ← p − lr·λ·p "
                  "is missing, or it uses another group's weight_decay.")
    _first = next(_i for _i in range(len(_ref)) if not _same(_got[_i], _ref[_i]))
    _unbiased = _make_net()  # one step by the rule without bias corrections, to compare with
    F.mse_loss(_unbiased(_data[0][0]), _data[0][1]).backward()
    with torch.no_grad():
        for _q in _unbiased.parameters():
            _g = _q.grad
            _q.mul_(1 - 0.05 * 0.2)
            _q.add_(-0.05 * (0.2 * _g) / ((0.05 * _g * _g).sqrt() + 1e-6))
    checks.expect(not (_first == 0 and _same(_got[0], [_q.detach() for _q in _unbiased.parameters()])),
                  "Your AdamW's first update is much smaller than torch.optim.AdamW's: the bias corrections "
                  "are missing. m and v start at zero, so early on they are too small by the factors "
                  "1 − β₁ᵗ and 1 − β₂ᵗ: divide copies of them by those factors before the step (step 3).")
    checks.expect(False,
                  f"Your AdamW's updates first differ from torch.optim.AdamW's at update {_first + 1}. Check "
                  "each step of the rule in order: the decay on p first, then m and v with their (1 − β) "
                  "factors, the bias corrections with the parameter's own step count t, and ε added "
                  "after the square root.")
_saved = _mine.state_dict()["state"]
checks.expect(len(_saved) == len(list(_net.parameters()))
              and all(sum(torch.is_tensor(_v) and tuple(_v.shape) == tuple(_q.shape) for _v in _saved.get(_i, {}).values()) >= 2
                      for _i, _q in enumerate(_net.parameters())),
              "Your AdamW's updates are right, but m and v are not in self.state[p], so state_dict() does not "
              "contain them: a checkpoint would lose them, and a resumed run would restart its averages "
              "(08). Keep them in self.state[p].")
# Groups with their own settings, a parameter without a gradient, and a closure.
_a, _b, _frozen = (nn.Parameter(torch.ones(3, device=checks.DEVICE)) for _ in range(3))
_ra, _rb, _rfrozen = (nn.Parameter(torch.ones(3, device=checks.DEVICE)) for _ in range(3))
_groups = lambda a, b, f: [{"params": [a, f], "lr": 0.1, "weight_decay": 0.5}, {"params": [b], "lr": 0.01}]
_mine = AdamW(_groups(_a, _b, _frozen), lr=0.05, weight_decay=0.1)
_theirs = torch.optim.AdamW(_groups(_ra, _rb, _rfrozen), lr=0.05, weight_decay=0.1)
for _opt, (_u, _v) in ((_mine, (_a, _b)), (_theirs, (_ra, _rb))):
    for _k in range(3):
        def _closure(_u=_u, _v=_v, _opt=_opt, _k=_k):
            _opt.zero_grad()
            _loss = ((_u - _k) ** 2).sum() + (_v * (_k + 1)).sum()
            _loss.backward()
            return _loss
        _returned = _opt.step(_closure)
        checks.expect(torch.is_tensor(_returned),
                      "AdamW.step(closure) should return the loss the closure returned, as torch's optimisers "
                      "do (Exercise 5).")
checks.expect(torch.equal(_frozen.detach(), torch.ones(3, device=checks.DEVICE)),
              "Your AdamW changed a parameter whose .grad is None (a frozen one): the decay must skip it "
              "too, as torch's optimisers do. Skip such parameters entirely.")
checks.expect(_same([_a.detach(), _b.detach()], [_ra.detach(), _rb.detach()]),
              "With two parameter groups (their own lr and weight_decay), your AdamW's updates differ from "
              "torch.optim.AdamW's. Read lr, betas, eps and weight_decay from each group at every step.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-schedulers"
# ## 7 · Changing the learning rate over time
#
# A large learning rate covers ground early; a small one settles into a minimum late. A
# **scheduler** automates the change: it holds the optimiser, and each call of
# `scheduler.step()` writes a new value into every group's `"lr"`. A few of torch's:
# `StepLR(optimizer, step_size, gamma)` multiplies the rate by `gamma` every `step_size` calls;
# `CosineAnnealingLR(optimizer, T_max)` glides from the initial rate down towards zero along
# half a cosine over `T_max` calls; `OneCycleLR` warms up, then anneals, counting batches.
#
# Two rules of placement:
# - **A scheduler counts in its own unit.** Epoch schedules (`StepLR` with a step size in
#   epochs, `CosineAnnealingLR` with `T_max` = the number of epochs) get one
#   `scheduler.step()` per epoch; per-batch schedules (`OneCycleLR`) get one per
#   `optimizer.step()`. Calling it in the wrong place runs the schedule too fast or too slow.
# - **`scheduler.step()` comes after `optimizer.step()`.** It means "this period is over: set
#   the rate for the next one". Called before the period's updates, it skips the initial
#   learning rate entirely (torch warns about this, once).
#
# ### Exercise 8 · `fit`
#
# Write `fit(model, loader, loss_fn, optimizer, epochs, scheduler=None)`: it runs `epochs`
# epochs with your `train_epoch`; when a scheduler is given, it steps it once per epoch, in
# the right place; it returns the list of the epochs' mean losses, the loss history you will
# learn to read in section 10.
#
# <details><summary>Hint 1</summary>
#
# The loop body is two lines, plus one to keep the history.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Where is the epoch's last `optimizer.step()`: before or after `train_epoch` returns?
# </details>

# %% role="answer" grade_id="fit"
def fit(model, loader, loss_fn, optimizer, epochs, scheduler=None):
    """Train for `epochs` epochs. Returns the list of the epochs' mean losses."""
    ### BEGIN SOLUTION
    history = []
    for _ in range(epochs):
        history.append(train_epoch(model, loader, loss_fn, optimizer))
        if scheduler is not None:
            scheduler.step()
    return history
    ### END SOLUTION


# %% role="test" grade_id="test-fit-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(checks.DEVICE)
    _batches = [(torch.randn(8, 4, device=checks.DEVICE), torch.randint(0, 3, (8,), device=checks.DEVICE))
                for _ in range(3)]
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_hist = fit(_model, _batches, nn.CrossEntropyLoss(), _opt, epochs=3)
checks.expect(type(_hist) is list and len(_hist) == 3 and all(type(_v) is float for _v in _hist),
              f"`fit(..., epochs=3)` should return a list of 3 floats, one mean loss per epoch; it returned "
              f"{checks.describe(_hist)}.")
print("loss history:", [round(_v, 4) for _v in _hist])

# %% role="test" grade_id="test-fit-schedule" points=2
# Hidden tests record the learning rate of every optimizer.step() during fit with a StepLR
# schedule (halving the rate each epoch).
### BEGIN HIDDEN TESTS
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(checks.DEVICE)
    _batches = [(torch.randn(8, 4, device=checks.DEVICE), torch.randint(0, 3, (8,), device=checks.DEVICE))
                for _ in range(4)]
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_sched = torch.optim.lr_scheduler.StepLR(_opt, step_size=1, gamma=0.5)
_lrs = []
_handle = _opt.register_step_pre_hook(lambda _o, _a, _k: _lrs.append(_o.param_groups[0]["lr"]))
try:
    _hist = fit(_model, _batches, nn.CrossEntropyLoss(), _opt, epochs=3, scheduler=_sched)
finally:
    _handle.remove()
checks.expect(type(_hist) is list and len(_hist) == 3,
              f"`fit(..., epochs=3)` should return a list of 3 epoch losses; it returned {checks.describe(_hist)}.")
checks.expect(len(_lrs) == 12,
              f"fit made {len(_lrs)} optimizer steps for 3 epochs of 4 batches; it should make 12, one per batch.")
_epochs = [_lrs[4 * _i:4 * _i + 4] for _i in range(3)]
checks.expect(all(max(_e) - min(_e) < 1e-12 for _e in _epochs),
              "The learning rate changed within an epoch: the scheduler was stepped once per batch, but this "
              "schedule counts epochs. Call scheduler.step() once per epoch, after the epoch's training.")
checks.expect(abs(_epochs[0][0] - 0.05) > 1e-9,
              "The first epoch did not train at the optimiser's initial learning rate: scheduler.step() ran "
              "before the epoch's optimizer steps, so the schedule skipped its first value. Step the "
              "scheduler after the epoch's training.")
checks.expect(not all(abs(_e[0] - 0.1) < 1e-9 for _e in _epochs),
              "All three epochs trained at the initial learning rate: the scheduler was not stepped between "
              "epochs (not at all, or only once the training was over). Call scheduler.step() once per epoch, "
              "inside the loop over epochs, after that epoch's training.")
checks.expect_close(_opt.param_groups[0]["lr"], 0.0125, "The learning rate after fit", rtol=1e-6,
                    why="Three epochs with StepLR(step_size=1, gamma=0.5) should step the scheduler exactly "
                        "three times, once after each epoch.")
checks.expect_close(torch.tensor([_e[0] for _e in _epochs]), torch.tensor([0.1, 0.05, 0.025]),
                    "The learning rates of the three epochs", rtol=1e-6,
                    why="Epoch 1 trains at the initial rate; each scheduler.step() after an epoch sets the "
                        "rate of the next one.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-clip"
# ## 8 · Gradient clipping
#
# Now and then a batch produces a gradient far larger than usual: an outlier, a cliff in the
# loss surface, a recurrent network unrolled over many steps. A single update with it can throw
# the parameters so far that training never recovers: the loss jumps, or turns into `nan`.
# **Clipping by norm** caps the size of the update without changing its direction. Treat all
# of the model's gradients as one long vector and measure its length, the *global* L2 norm:
# the square root of the sum of the squares of every entry of every gradient. If it exceeds
# `max_norm`, multiply every gradient by `max_norm / norm`; below the cap, change nothing.
#
# Its place in the loop follows from what it does: it edits `.grad`. So it runs after
# `backward()` has filled `.grad`, and before `step()` reads it. Before `backward()`, it would
# clip old gradients (or none), and `backward()` would then write fresh, unclipped ones.
# `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)` does the job and returns the
# norm *before* clipping, which is worth logging: a norm that creeps up or spikes is an early
# warning.
#
# ### Exercise 9 · Clip by hand, then in the loop
#
# Write `clip_gradients(parameters, max_norm)` without `clip_grad_norm_`:
# - `parameters` is any iterable of tensors (for example the generator `model.parameters()`);
#   ignore those whose `.grad` is `None`;
# - if the global norm of the gradients exceeds `max_norm`, multiply every gradient in place by
#   `max_norm / (norm + 1e-6)` (the small constant is torch's, against division by zero);
# - return the global norm before clipping as a Python float (0.0 when there are no gradients).
#
# Then write `train_step_clipped(model, x, y, loss_fn, optimizer, max_norm)`: your training
# step with clipping in its place, returning `(loss, norm)`, both Python floats, where `norm`
# is the norm before clipping.
#
# <details><summary>Hint 1</summary>
#
# A generator can be walked only once. If you need to go over the parameters twice, make a
# list first.
# </details>
#
# <details><summary>Hint 2</summary>
#
# One norm for all gradients together: add up the squares of every gradient tensor, then take
# one square root. Clipping each tensor on its own would change the direction of the update.
# </details>
#
# <details><summary>Hint 3</summary>
#
# `.grad` tensors do not require grad themselves, so `g.mul_(scale)` changes them in place
# without complaint.
# </details>

# %% role="answer" grade_id="clipping"
def clip_gradients(parameters, max_norm):
    """Scale all gradients together so that their global L2 norm is at most max_norm.
    Returns the global norm before clipping, as a Python float."""
    ### BEGIN SOLUTION
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g.mul_(scale)
    return norm.item()
    ### END SOLUTION


def train_step_clipped(model, x, y, loss_fn, optimizer, max_norm):
    """One update with gradient clipping. Returns (loss, norm before clipping) as floats."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    norm = clip_gradients(model.parameters(), max_norm)
    optimizer.step()
    return loss.item(), norm
    ### END SOLUTION


# %% role="test" grade_id="test-clip-sanity" points=1
_a = torch.zeros(3, device=checks.DEVICE, requires_grad=True)
_b = torch.zeros(4, device=checks.DEVICE, requires_grad=True)
_a.grad = torch.full((3,), 3.0, device=checks.DEVICE)
_b.grad = torch.full((4,), 4.0, device=checks.DEVICE)
_norm = clip_gradients([_a, _b], 1.0)
checks.expect(type(_norm) is float,
              f"`clip_gradients` should return the norm as a Python float, but it returned {checks.describe(_norm)}.")
_after = math.sqrt(float((_a.grad ** 2).sum() + (_b.grad ** 2).sum()))
checks.expect(_after <= 1.0 + 1e-4,
              f"After clip_gradients(..., max_norm=1.0) the gradients' global norm is {_after:.3g}, still above "
              "1.0. When the norm exceeds max_norm, multiply every gradient in place (the tensors in .grad "
              "themselves) by max_norm / (norm + 1e-6).")
print(f"norm before clipping {_norm:.4f}, after {_after:.4f}")


# %% role="test" grade_id="test-clip" points=2
# Hidden tests compare clip_gradients with torch.nn.utils.clip_grad_norm_, with parameters given
# as a generator, some without gradients, and norms above and below the cap.
### BEGIN HIDDEN TESTS
def _with_grads(scale):
    with checks.seeded(0):
        _m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.Linear(3, 3)).to(checks.DEVICE)
        for _q in _m.parameters():
            _q.grad = scale * torch.randn_like(_q)
        _m[3].weight.grad = None
    return _m


for _scale, _cap in [(10.0, 1.0), (0.01, 5.0), (3.0, 2.0)]:
    _mine, _ref = _with_grads(_scale), _with_grads(_scale)
    _want = float(torch.nn.utils.clip_grad_norm_(_ref.parameters(), _cap))
    _got = clip_gradients(_mine.parameters(), _cap)  # a generator, as in real use
    checks.expect(type(_got) is float,
                  f"`clip_gradients` should return a Python float, but it returned {checks.describe(_got)}.")
    checks.expect_close(_got, _want, "The norm clip_gradients returned", rtol=1e-4, atol=1e-6,
                        why="Return the global norm of all the gradients before clipping: the square root of "
                            "the sum of the squares of every entry of every gradient (Hint 2).")
    _pairs = list(zip(_mine.parameters(), _ref.parameters()))
    checks.expect(all((_u.grad is None) == (_v.grad is None) for _u, _v in _pairs),
                  "`clip_gradients` gave a gradient to a parameter that had none: leave .grad None where it is None.")
    _pairs = [(_u.grad, _v.grad) for _u, _v in _pairs if _v.grad is not None]
    _untouched = _with_grads(_scale)
    _before = [_u.grad for _u in _untouched.parameters() if _u.grad is not None]
    _unchanged = all(torch.equal(_u, _w) for (_u, _), _w in zip(_pairs, _before))
    if _want <= _cap:
        checks.expect(_unchanged,
                      f"With a global norm of {_want:.3g}, below max_norm={_cap}, clip_gradients changed the "
                      "gradients. Below the cap nothing changes: clipping never scales gradients up.")
        continue
    checks.expect(not _unchanged,
                  f"With a global norm of {_want:.3g}, above max_norm={_cap}, clip_gradients left the gradients "
                  "unchanged. Scale the tensors in .grad themselves, in place; and if you walk `parameters` "
                  "twice, remember that model.parameters() is a generator: the second walk finds nothing. "
                  "Make a list first (Hint 1).")
    _new_norm = math.sqrt(sum(float((_u ** 2).sum()) for _u, _ in _pairs))
    # what clipping each tensor by its own norm would give, to name that mistake only when it is the one
    _each = [_w * min(1.0, _cap / (float(_w.norm()) + 1e-6)) for _w in _before]
    _one_by_one = all(torch.allclose(_u, _e, rtol=1e-4, atol=1e-7) for (_u, _), _e in zip(_pairs, _each))
    checks.expect(not (_one_by_one and _new_norm > _cap * (1 + 1e-4)),
                  f"After clipping, the gradients' global norm is {_new_norm:.3g}, still above max_norm={_cap}. "
                  "Clip by the global norm of all gradients together: clipping each tensor on its own leaves "
                  "the total too large and changes the direction of the update (Hint 2).")
    checks.expect(_new_norm <= _cap * (1 + 1e-4),
                  f"After clipping, the gradients' global norm is {_new_norm:.3g}, still above max_norm={_cap} "
                  f"(it was {_want:.3g}). Scale every gradient, in place, by the one factor max_norm / (norm + 1e-6), "
                  "which is below 1 here: check that factor (is it upside down?) and that every tensor gets it.")
    for _i, (_u, _v) in enumerate(_pairs):
        checks.expect_close(_u, _v, f"Gradient {_i} after clip_gradients", rtol=1e-4, atol=1e-7,
                            why="Scale every gradient by the same factor, max_norm / (norm + 1e-6), in place, so "
                                "that the update keeps its direction.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-clip-step" points=2
# Hidden tests make gradients far larger than max_norm, record the gradients' norm when
# optimizer.step() runs, and compare with a loop that uses torch's clip_grad_norm_.
### BEGIN HIDDEN TESTS
import copy as _copy

with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).to(checks.DEVICE)
    _batches = [(5 * torch.randn(8, 4, device=checks.DEVICE), torch.randint(0, 3, (8,), device=checks.DEVICE))
                for _ in range(3)]
_ref = _copy.deepcopy(_model)


def _big_loss(outputs, targets):
    return 50 * F.cross_entropy(outputs, targets)


def _norm_now(opt):
    _gs = [_q.grad for _g in opt.param_groups for _q in _g["params"] if _q.grad is not None]
    return math.sqrt(sum(float((_u.double() ** 2).sum()) for _u in _gs))


_opt = torch.optim.SGD(_model.parameters(), lr=0.01)
_at_step = []
_handle = _opt.register_step_pre_hook(lambda _o, _a, _k: _at_step.append(_norm_now(_o)))
try:
    with checks.TrainingSpy(_model, _opt) as _spy:
        _outs = [train_step_clipped(_model, _x, _y, _big_loss, _opt, 1.0) for _x, _y in _batches]
finally:
    _handle.remove()
_spy.check_loop(steps=3, name="`train_step_clipped`")
checks.expect(max(_at_step) <= 1.0 + 1e-3,
              f"When optimizer.step() ran, the gradients' norm was {max(_at_step):.3g}, above max_norm=1.0: the "
              "clipping did not reach the gradients the step used. Clipping edits the tensors in .grad in "
              "place, so it must run after loss.backward() has filled .grad and before optimizer.step() "
              "reads it.")
_ref_opt = torch.optim.SGD(_ref.parameters(), lr=0.01)
for _i, (_x, _y) in enumerate(_batches):
    _ref_opt.zero_grad()
    _l = _big_loss(_ref(_x), _y)
    _l.backward()
    _n = float(torch.nn.utils.clip_grad_norm_(_ref.parameters(), 1.0))
    _ref_opt.step()
    _out = _outs[_i]
    checks.expect(type(_out) is tuple and len(_out) == 2 and all(type(_v) is float for _v in _out),
                  f"`train_step_clipped` should return a tuple (loss, norm) of two Python floats; it returned "
                  f"{checks.describe(_out)}.")
    checks.expect_close(_out[0], _l.item(), f"The loss train_step_clipped returned for batch {_i + 1}",
                        rtol=1e-4, atol=1e-4, why="Return this batch's loss, computed before the update.")
    checks.expect_close(_out[1], _n, f"The norm train_step_clipped returned for batch {_i + 1}", rtol=1e-3,
                        atol=1e-4,
                        why="Return the gradients' norm before clipping, as clip_gradients measures it: that "
                            "is the number worth watching.")
for (_name, _p), _q in zip(_model.named_parameters(), _ref.parameters()):
    checks.expect_close(_p.detach(), _q.detach(), f"Parameter {_name} after three clipped steps", rtol=1e-3,
                        atol=1e-5, why="Each step should apply the clipped gradient of its own batch.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-accumulate"
# ## 9 · Gradient accumulation: a big batch in small pieces
#
# Sometimes the batch you want does not fit in memory. Because `backward()` adds into `.grad`,
# you can split a big batch into `k` micro-batches, run forward and backward on each, and
# step once: the gradients sum up in `.grad` as if they had been computed together. Two
# details make it exact:
#
# - **Scale the loss.** Losses are means over their batch. The mean over a big batch made of
#   `k` equal micro-batches is the average of the `k` micro-batch means, so divide each
#   micro-batch's loss by `k` before `backward()`. Skip that and the summed gradient is `k`
#   times too large, as if the learning rate had been multiplied by `k`.
# - **Clear and step once per window.** `zero_grad()` at the start of a window of `k`
#   micro-batches, `step()` at its end. Stepping after every micro-batch just trains with
#   small batches; clearing after every micro-batch throws away the window.
#
# (The match is exact for layers that treat examples independently. Batch norm still
# normalises each micro-batch with its own statistics.)
#
# ### Exercise 10 · `train_epoch_accumulate`
#
# Write `train_epoch_accumulate(model, loader, loss_fn, optimizer, accum_steps)`: like
# `train_epoch` (training mode, a float result), but one optimiser step for every
# `accum_steps` batches, using the gradient that the mean loss over those batches would give.
# It returns the mean of the batch losses as `loss_fn` computed them (before any division). You
# may assume that the number of batches is a multiple of `accum_steps`.
#
# <details><summary>Hint 1</summary>
#
# `enumerate(loader)` counts the batches; the window ends when `(i + 1) % accum_steps == 0`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Call `backward()` on the divided loss, but add the undivided `loss.item()` to your total.
# </details>

# %% role="answer" grade_id="accumulate"
def train_epoch_accumulate(model, loader, loss_fn, optimizer, accum_steps):
    """One epoch, stepping once every accum_steps batches. Returns the mean batch loss."""
    ### BEGIN SOLUTION
    model.train()
    optimizer.zero_grad()
    total, batches = 0.0, 0
    for i, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        (loss / accum_steps).backward()
        total += loss.item()
        batches += 1
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    return total / batches
    ### END SOLUTION


# %% role="test" grade_id="test-accumulate-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).to(checks.DEVICE)
    _batches = [(torch.randn(4, 4, device=checks.DEVICE), torch.randint(0, 3, (4,), device=checks.DEVICE))
                for _ in range(4)]
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_mean = train_epoch_accumulate(_model, _batches, nn.CrossEntropyLoss(), _opt, accum_steps=2)
checks.expect(type(_mean) is float,
              f"`train_epoch_accumulate` should return the mean batch loss as a Python float, but it returned "
              f"{checks.describe(_mean)}.")
print(f"mean micro-batch loss: {_mean:.4f}")

# %% role="test" grade_id="test-accumulate" points=3
# Hidden tests watch zero_grad/backward/step over 8 micro-batches with accum_steps=4, and compare
# the result with two ordinary steps on the same data in batches 4 times as large.
### BEGIN HIDDEN TESTS
import copy as _copy


def _make_net():
    with checks.seeded(0):
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(checks.DEVICE)


with checks.seeded(1):
    _micro = [(torch.randn(4, 4, device=checks.DEVICE), torch.randint(0, 3, (4,), device=checks.DEVICE))
              for _ in range(8)]
_seen = []


def _recording_loss(outputs, targets):
    _l = F.cross_entropy(outputs, targets)
    _seen.append(_l.item())
    return _l


def _big_batch_steps(model, windows):
    _o = torch.optim.SGD(model.parameters(), lr=0.1)
    for _w in windows:
        _o.zero_grad()
        F.cross_entropy(model(torch.cat([_x for _x, _ in _w])), torch.cat([_y for _, _y in _w])).backward()
        _o.step()


def _flat(model):
    return torch.cat([_q.detach().reshape(-1) for _q in model.parameters()])


_model = _make_net()
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
for _p in _model.parameters():
    _p.grad = torch.ones_like(_p)  # left over from earlier work
_model.eval()
with checks.TrainingSpy(_model, _opt) as _spy:
    _mean = train_epoch_accumulate(_model, _micro, _recording_loss, _opt, 4)
_spy.check_loop(steps=2, accumulate=4, name="`train_epoch_accumulate`")
_ref = _make_net()
_big_batch_steps(_ref, [_micro[:4], _micro[4:]])
if not torch.allclose(_flat(_model), _flat(_ref), rtol=1e-4, atol=1e-6):
    # one window alone: is the update a multiple of the big-batch update?
    _start, _one, _big = _flat(_make_net()), _make_net(), _make_net()
    train_epoch_accumulate(_one, _micro[:4], F.cross_entropy, torch.optim.SGD(_one.parameters(), lr=0.1), 4)
    _big_batch_steps(_big, [_micro[:4]])
    _d_one, _d_big = _flat(_one) - _start, _flat(_big) - _start
    checks.expect(not torch.allclose(_d_one, 4 * _d_big, rtol=1e-3, atol=1e-6),
                  "`train_epoch_accumulate`'s update is 4 times the update of one big batch: the accumulated "
                  "gradient is the sum of the micro-batch gradients. Divide each micro-batch's loss by "
                  "accum_steps before backward(), so that the sum becomes the gradient of the mean.")
    checks.expect(False,
                  "After train_epoch_accumulate, the parameters differ from two ordinary steps on batches made "
                  "of 4 micro-batches each. Each step should use the gradient of the mean loss over its window "
                  "of accum_steps micro-batches.")
checks.expect(type(_mean) is float,
              f"`train_epoch_accumulate` should return a Python float, but it returned {checks.describe(_mean)}.")
checks.expect_close(_mean, sum(_seen) / len(_seen), "The mean loss train_epoch_accumulate returned",
                    rtol=1e-5, atol=1e-6,
                    why="Report each micro-batch's loss as loss_fn computed it, before dividing by accum_steps "
                        "(the division only serves the gradient), and average over the batches.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-watch"
# ## 10 · Watching the loss
#
# The loss history is the pulse of a run, and a few readings cover most situations:
#
# - **The first value.** Before training, a classifier has no reason to prefer one class over
#   another, so its predicted probabilities should be close to uniform, and you can work out
#   from the definition of cross-entropy (section 3) what loss that gives. A first loss far
#   above it means confident wrong predictions from the start: look at the initialisation, the
#   inputs' scale, or the labels.
# - **Flat from the start.** The steps are too small, or nothing is stepping at all (a loop
#   bug), or the inputs and labels do not match.
# - **Up, jumpy, `inf` or `nan`.** The steps are too large: each update overshoots the minimum
#   it was heading for. Lower the learning rate, or clip the gradients.
# - **Falling steadily, then flattening.** Healthy. From here the question becomes
#   generalisation: training loss still falling while validation stops improving means
#   overfitting (07 evaluates properly).
#
# Watch the gradient norm (section 8) too: it often warns before the loss does.
#
# ### Exercise 11 · Predict, then verify
#
# **(a)** A 10-class classifier whose last linear layer starts with all weights and biases at
# zero outputs zero logits for every input. What cross-entropy loss does it report on its first
# batch? A float, three decimals are enough.
#
# **(b)** The same small MLP was trained on the digits of section 11 with plain SGD three times,
# changing only the learning rate: 0.001, 0.5 and 30.0. Here are the three histories of epoch
# mean losses (from last layers initialised at zero, as in (a)):
#
# | epoch | curve A | curve B | curve C |
# |------:|--------:|--------:|--------:|
# | 1 | 2.120 | 200.351 | 2.302 |
# | 2 | 1.075 | 6.949 | 2.302 |
# | 3 | 0.521 | 6.168 | 2.302 |
# | 4 | 0.351 | 6.393 | 2.301 |
# | 5 | 0.270 | 5.308 | 2.301 |
# | 6 | 0.207 | 7.163 | 2.301 |
#
# Which learning rate produced each curve?
#
# <details><summary>Hint 1</summary>
#
# With zero logits, softmax gives every class the same probability. Cross-entropy is minus
# the log of the probability given to the right class.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Compare each curve with the loss you found in (a): which one has barely left it, which one
# jumped far above it, which one fell below it?
# </details>

# %% role="answer" grade_id="watch-predictions"
watch_predictions = {
    "initial loss": None,  # a float
    "A": None,             # 0.001, 0.5 or 30.0
    "B": None,
    "C": None,
}
### BEGIN SOLUTION
watch_predictions = {
    "initial loss": 2.303,
    "A": 0.5,
    "B": 30.0,
    "C": 0.001,
}
### END SOLUTION

# %% role="test" grade_id="test-watch-predictions" points=2
# Hidden tests measure the loss of a classifier with zero logits and check your reading of the
# three curves.
checks.expect(isinstance(watch_predictions, dict) and set(watch_predictions) == {"initial loss", "A", "B", "C"},
              "`watch_predictions` should be a dict with exactly the keys 'initial loss', 'A', 'B' and 'C'.")
### BEGIN HIDDEN TESTS
_head = nn.Linear(32, 10).to(checks.DEVICE)
with torch.no_grad():
    _head.weight.zero_()
    _head.bias.zero_()
with checks.seeded(0):
    _first = F.cross_entropy(_head(torch.randn(64, 32, device=checks.DEVICE)),
                             torch.randint(0, 10, (64,), device=checks.DEVICE)).item()
_said = watch_predictions["initial loss"]
checks.expect(type(_said) in (int, float),
              f"Your prediction for the initial loss should be a number (a float), but it is {checks.describe(_said)}.")
# Not checks.expect_close: its message says how far off a number is, which here is the answer.
checks.expect(abs(_said - _first) <= 5e-3,
              f"Your prediction for the initial loss is {_said:.6g}, which is not what PyTorch computes. Zero "
              "logits give each of the 10 classes the same probability, whatever the input; the loss is minus "
              "the log of the probability of the right class (see Hint 1).")
for _curve, _lr in [("A", 0.5), ("B", 30.0), ("C", 0.001)]:
    _said = watch_predictions[_curve]
    checks.expect(type(_said) in (int, float) and float(_said) in (0.001, 0.5, 30.0),
                  f"For curve {_curve}, give one of the three learning rates 0.001, 0.5 or 30.0.")
    checks.expect(float(_said) == _lr,
                  f"The learning rate you gave for curve {_curve} does not fit its shape. Compare each curve "
                  "with the starting loss of (a): a loss that barely leaves it means steps too small, a loss "
                  "that jumps far above it means steps that overshoot, a steady fall means a rate in the "
                  "right range.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-digits"
# ## 11 · A real run: handwritten digits
#
# scikit-learn ships 1,797 scanned handwritten digits, each an 8×8 image of grey levels from 0
# to 16, inside the package (nothing to download). The next cell turns them into 64 features
# scaled to [0, 1] with `int64` labels, splits them into 1,437 training and 360 validation
# images with a fixed seed, and defines `make_loader` (shuffled batches of the training data)
# and `accuracy` (the fraction of correct predictions, computed in eval mode). Evaluation gets
# its own notebook (07); here it is just a measuring stick.
#
# ### Exercise 12 · An MLP that reads digits
#
# - `make_digits_model()` returns a fresh MLP mapping a batch of 64 pixel values, `(N, 64)`, to
#   10 logits, `(N, 10)`. No softmax at the end: section 3 says why.
# - `train_digits(model, train_loader)` trains the model it is given on `train_loader` with your
#   `fit`, and returns `fit`'s loss history. Choose the loss, the optimiser, its learning rate, a
#   scheduler if you like, and the number of epochs: at most 30 passes over the loader.
#
# The hidden test builds a fresh model from another seed, trains it with `train_digits`, and
# asks for a **validation accuracy of at least 92%**, a loss history that falls, and a correct
# loop. A small, well-tuned MLP reaches about 97% here in a second or two of CPU time.
#
# <details><summary>Hint 1</summary>
#
# One hidden layer of 64 to 128 units with a ReLU is plenty.
# </details>
#
# <details><summary>Hint 2</summary>
#
# SGD with momentum 0.9 and a learning rate around 0.1, or AdamW with a learning rate around
# 3e-3, both work here with 15 to 20 epochs. A cosine schedule over the epochs squeezes out a
# little more.
# </details>
#
# <details><summary>Hint 3</summary>
#
# If the accuracy is low, watch the loss (section 10): does the first epoch start near the
# loss you predicted in Exercise 11? Does it fall, and keep falling?
# </details>

# %% role="locked" grade_id="digits-data"
from sklearn.datasets import load_digits


def load_digit_tensors(device, seed=0):
    """Images as (N, 64) float32 in [0, 1] and int64 labels, split 1,437 / 360 with a fixed seed."""
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, val = order[:1437], order[1437:]
    return x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device)


def make_loader(x, y, batch_size=64, seed=0):
    """Shuffled batches of (x, y), in the same order for the same seed."""
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size,
                                       shuffle=True, generator=torch.Generator().manual_seed(seed))


def accuracy(model, x, y):
    """The fraction of examples whose highest logit is the right class (in eval mode, no graph)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train(was_training)
    return correct


x_train, y_train, x_val, y_val = load_digit_tensors(checks.DEVICE)
print(f"training images {tuple(x_train.shape)}, validation images {tuple(x_val.shape)}")


# %% role="answer" grade_id="digits"
def make_digits_model():
    """A fresh MLP from 64 pixel values to 10 logits."""
    ### BEGIN SOLUTION
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    ### END SOLUTION


def train_digits(model, train_loader):
    """Train model on train_loader with fit (at most 30 epochs). Returns fit's loss history."""
    ### BEGIN SOLUTION
    epochs = 20
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return fit(model, train_loader, nn.CrossEntropyLoss(), optimizer, epochs, scheduler)
    ### END SOLUTION


# %% role="locked" grade_id="digits-run"
# Your run: train a model and measure it on the validation images.
try:
    torch.manual_seed(0)
    digits_model = make_digits_model().to(checks.DEVICE)
    digits_history = train_digits(digits_model, make_loader(x_train, y_train))
    print("epoch losses:", [round(v, 3) for v in digits_history])
    print(f"validation accuracy: {accuracy(digits_model, x_val, y_val):.1%}")
except NotImplementedError:
    print("Write make_digits_model and train_digits above, then run this cell again.")

# %% role="test" grade_id="test-digits-sanity" points=1
with checks.seeded(0):
    _m = make_digits_model()
checks.expect(isinstance(_m, nn.Module), "make_digits_model() should return an nn.Module.")
_out = _m.to(checks.DEVICE)(torch.rand(5, 64, device=checks.DEVICE))
checks.expect_tensor(_out, "The model's output for a batch of 5 images", shape=(5, 10), dtype=torch.float32,
                     why="The model maps 64 pixel values to 10 logits, one per digit.")
checks.expect(not torch.allclose(_out.detach().sum(dim=1), torch.ones(5, device=checks.DEVICE), atol=1e-4),
              "Each row of the model's output sums to 1: the model ends with a softmax. Leave it out and return "
              "logits: CrossEntropyLoss applies log_softmax itself (section 3).")
print("the model maps (5, 64) to", tuple(_out.shape))

# %% role="test" grade_id="test-digits" points=4
# Hidden tests train a fresh model (another seed) with train_digits, watching the loop, then
# measure it on the validation images: at least 92% correct.
### BEGIN HIDDEN TESTS
from sklearn.datasets import load_digits as _load_digits

_images, _labels = _load_digits(return_X_y=True)
_x = torch.tensor(_images, dtype=torch.float32) / 16.0
_y = torch.tensor(_labels, dtype=torch.int64)
_order = torch.randperm(len(_x), generator=torch.Generator().manual_seed(0))
_x_tr, _y_tr = _x[_order[:1437]].to(checks.DEVICE), _y[_order[:1437]].to(checks.DEVICE)
_x_va, _y_va = _x[_order[1437:]].to(checks.DEVICE), _y[_order[1437:]].to(checks.DEVICE)


class _CountingLoader:
    """A loader that counts the passes made over it."""

    def __init__(self, loader):
        self.loader, self.passes = loader, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.loader)

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # batch_size, dataset...: those of the wrapped loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


_loader = _CountingLoader(torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(_x_tr, _y_tr), batch_size=64, shuffle=True,
    generator=torch.Generator().manual_seed(1)))
with checks.seeded(1):
    _model = make_digits_model().to(checks.DEVICE)
    _start = [_q.detach().clone() for _q in _model.parameters()]
    with checks.TrainingSpy(_model) as _spy:
        _history = train_digits(_model, _loader)
checks.expect(not all(torch.equal(_a, _q.detach()) for _a, _q in zip(_start, _model.parameters())),
              "After train_digits, the parameters of the model it was given are unchanged: nothing trained "
              "that model. Train the `model` argument itself, the one the caller will evaluate (not a new "
              "model built inside train_digits), with a backward pass and an optimizer step for every batch.")
checks.expect(_loader.passes >= 1,
              "`train_digits` never iterated over the train_loader it was given: it trained on data of its own "
              "choosing. Train on the loader passed in (hand it to fit): the caller decides what the model learns "
              "from, its batches, its shuffling and its split.")
checks.expect(_loader.passes <= 30,
              f"`train_digits` made {_loader.passes} passes over the training data; the budget is 30 epochs. "
              "Choose a learning rate (and schedule) that gets there sooner.")
_spy.check_loop(name="`train_digits`")
checks.expect(type(_history) is list and len(_history) >= 1 and all(type(_v) is float for _v in _history),
              f"`train_digits` should return fit's loss history, a list of floats; it returned "
              f"{checks.describe(_history)}.")
checks.expect(_history[-1] < _history[0],
              "The loss history did not fall: the last epoch's loss is not below the first one's. Read the "
              "curve as in section 10: flat means steps too small (or no steps), rising means steps too large.")
_model.eval()
with torch.no_grad():
    _acc = (_model(_x_va).argmax(dim=1) == _y_va).float().mean().item()
checks.expect(_acc >= 0.92,
              f"After train_digits, the model classifies {_acc:.1%} of the validation images correctly; the "
              "target is 92%. Watch the loss history (section 10) and adjust the learning rate or the number "
              "of epochs (see the hints).")
print(f"validation accuracy {_acc:.1%}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A training step is five beats in a fixed order: zero_grad, forward, loss, backward, step.
#   PyTorch accepts any order, so getting it right is your job.
# - A loss has a contract: `CrossEntropyLoss` takes logits and `int64` class indices,
#   `BCEWithLogitsLoss` takes logits and float targets of the same shape, `MSELoss` takes two
#   tensors of the same shape.
# - An epoch starts with `model.train()` and keeps numbers (`loss.item()`), not graphs.
# - An optimiser is an update rule plus per-parameter state, read from `param_groups` at every
#   step; AdamW decays weights by a fixed fraction, outside Adam's normalisation.
# - Schedulers step after the optimiser, in their own unit; clipping sits between backward and
#   step; accumulation divides the loss and steps once per window.
# - The loss curve tells you what is wrong before anything else does.
#
# Next, in **06 · Data**, you will replace the lists of batches and the ready-made loader of
# this notebook with your own `Dataset` and `DataLoader`.
