# %% [markdown] role="prose" grade_id="title"
# # 07 · Evaluation and inference
#
# **Time:** about 2 h of work (3,600 words to read, 7 exercises). Run top to bottom, the finished
# notebook takes under a second.
#
# Training changes a model; evaluation measures it; inference uses it. The last two must not
# change anything, and that is harder than it sounds: by default a PyTorch model behaves as if
# it were still training, records a gradient graph for every forward pass, and quietly edits
# its own buffers when it sees data. Many "my model got worse" and "my validation numbers
# jump around" reports are evaluation bugs, not training bugs.
#
# **By the end of this notebook you will be able to:**
# - say what `model.train()` and `model.eval()` switch, and predict how dropout and batch norm
#   behave in each mode;
# - turn off gradient recording with `torch.no_grad()` or `torch.inference_mode()`, and say
#   why neither one replaces `eval()`;
# - put a model into evaluation mode and restore afterwards exactly the mode it was in, for
#   every submodule, even when something fails;
# - build an evaluation loader that yields every sample exactly once, in order;
# - compute accuracy, a confusion matrix and per-class recall with tensor operations;
# - write an evaluation loop that leaves parameters, buffers, gradients and optimiser state
#   untouched;
# - write `predict` for new data: batched, without gradients, class ids back on the CPU.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first.

# %% role="locked" grade_id="setup"
import contextlib
import copy

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__)

# %% [markdown] role="prose" grade_id="md-digits"
# ## 0 · A model to evaluate
#
# The cell below trains a small classifier on scikit-learn's bundled handwritten digits
# (8×8 grey images, flattened to 64 numbers, ten classes). It has a batch-norm layer and a
# dropout layer, the two common layers whose behaviour depends on the mode. Training takes a
# second. Note the names it leaves behind: `digits_model` (still in training mode, as a
# model is in the middle of training), `loss_fn`, and the validation data `X_val`, `y_val`
# with its loader `val_loader`.

# %% role="locked" grade_id="digits"
digits = load_digits()
X = torch.tensor(digits.data, dtype=torch.float32) / 16.0   # (1797, 64), pixel values in [0, 1]
y = torch.tensor(digits.target, dtype=torch.int64)          # (1797,), class ids 0..9
order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
X_train, y_train = X[order[:1400]], y[order[:1400]]
X_val, y_val = X[order[1400:]], y[order[1400:]]


def make_classifier(hidden=32, p=0.3):
    return nn.Sequential(nn.Linear(64, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(hidden, 10))


digits_model = make_classifier()
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(digits_model.parameters(), lr=1e-2)
train_loader = DataLoader(TensorDataset(X_train, y_train), batch_size=64, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(0))
val_loader = DataLoader(TensorDataset(X_val, y_val), batch_size=100)   # 397 samples: 100, 100, 100, 97

digits_model.train()
for epoch in range(6):
    for inputs, targets in train_loader:
        optimizer.zero_grad()
        loss = loss_fn(digits_model(inputs), targets)
        loss.backward()
        optimizer.step()
print(f"trained: last training loss {loss.item():.3f}; digits_model.training = {digits_model.training}")

# %% [markdown] role="prose" grade_id="md-modes"
# ## 1 · Two modes, one flag per module
#
# Every `nn.Module` carries a boolean attribute, `training`. `model.train()` sets it to `True`
# on the model **and on every submodule**; `model.eval()` sets it to `False` everywhere
# (`eval()` is simply `train(False)`). The flag does nothing by itself: it is a question that
# some layers ask while they run `forward`. Linear layers, convolutions and activations never
# ask, so a model made only of them computes the same thing in both modes. Two common layers
# do ask:
#
# - **Dropout.** In training mode it zeroes each element with probability `p` and scales the
#   survivors by `1 / (1 - p)`, so the expected value is unchanged; a fresh random mask is
#   drawn on every call. In eval mode it is the identity.
# - **Batch norm.** In training mode it normalises with the mean and variance *of the current
#   batch*, and it updates three buffers: `running_mean` and `running_var` (moving averages of
#   those statistics) and `num_batches_tracked` (a counter). In eval mode it normalises with
#   the stored running statistics and updates nothing.
#
# So a model left in training mode while you evaluate it gives you two problems. Its numbers
# are wrong: dropout makes them random and pessimistic, and batch norm makes each sample's
# output depend on which other samples share its batch. And it **changes the model**: every
# evaluation batch is mixed into the running statistics, so validation data leaks into the
# model you will later use. (Batch norm in training mode also refuses a batch of a single
# sample, since one value has no variance: a classic crash when predicting one example.)
#
# Keep the mental model straight: `eval()` is a switch on **layers**. It changes what
# `forward` computes. It does not touch autograd; that is the next section.
#
# ### Exercise 1 · Predict, then verify
#
# Read the code below **without running it** and predict what it gives. "Agrees" means
# `torch.allclose` would return `True`. Fill in the dictionary `mode_predictions` in the
# answer cell; the hidden test runs the code and compares.
#
# ```python
# torch.manual_seed(0)
# net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(p=0.5))
# x = torch.randn(16, 8)
#
# net.train()
# a, b = net(x), net(x)      # two passes in training mode
# net.eval()
# c, d = net(x), net(x)      # two passes in eval mode
# e = net(x[:1])             # the first sample alone, still in eval mode
# ```
#
# <details><summary>Hint 1</summary>
#
# Which of the two passes in each pair involves randomness? In eval mode, is anything random
# left in this network?
# </details>
#
# <details><summary>Hint 2</summary>
#
# `num_batches_tracked` counts the batches whose statistics were mixed into the running
# averages. In which mode does that happen? And does `net.eval()` reach `net[2]`?
# </details>

# %% role="answer" grade_id="mode-predictions"
mode_predictions = {
    "a agrees with b": None,        # True or False
    "c agrees with d": None,        # True or False
    "num_batches_tracked": None,    # an int: net[1].num_batches_tracked at the end
    "net[2].training": None,        # True or False, at the end
    "e agrees with c[:1]": None,    # True or False
}
### BEGIN SOLUTION
mode_predictions = {
    "a agrees with b": False,
    "c agrees with d": True,
    "num_batches_tracked": 2,
    "net[2].training": False,
    "e agrees with c[:1]": True,
}
### END SOLUTION

# %% role="test" grade_id="test-mode-predictions" points=3
# Hidden tests run the code of Exercise 1 and compare with your predictions.
_keys = {"a agrees with b", "c agrees with d", "num_batches_tracked", "net[2].training", "e agrees with c[:1]"}
checks.expect(isinstance(mode_predictions, dict) and set(mode_predictions) == _keys,
              "mode_predictions should be a dict with exactly the keys of the template.")
checks.expect(all(type(mode_predictions[k]) is bool for k in _keys - {"num_batches_tracked"})
              and type(mode_predictions["num_batches_tracked"]) is int,
              "Each prediction should be True or False, except num_batches_tracked: an int.")
### BEGIN HIDDEN TESTS
with checks.seeded(0):
    _net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(p=0.5)).to(checks.DEVICE)
    _x = torch.randn(16, 8, device=checks.DEVICE)
    _net.train()
    _a, _b = _net(_x), _net(_x)
    _net.eval()
    _c, _d = _net(_x), _net(_x)
    _e = _net(_x[:1])
checks.expect(mode_predictions["a agrees with b"] is torch.allclose(_a, _b),
              "Your prediction for 'a agrees with b' is not what PyTorch does. In training mode, "
              "dropout draws a fresh random mask on every forward pass.")
checks.expect(mode_predictions["c agrees with d"] is torch.allclose(_c, _d),
              "Your prediction for 'c agrees with d' is not what PyTorch does. In eval mode dropout "
              "is the identity and batch norm uses its stored running statistics: ask yourself "
              "whether anything random is left.")
checks.expect_equal(mode_predictions["num_batches_tracked"], int(_net[1].num_batches_tracked),
                    "Your prediction for num_batches_tracked", show=False,
                    why="Batch norm counts a batch only when it mixes that batch's statistics into "
                        "its running averages, which it does in training mode and never in eval mode.")
checks.expect(mode_predictions["net[2].training"] is _net[2].training,
              "Your prediction for net[2].training is not what PyTorch does. train() and eval() "
              "are recursive: they set the flag on the module and on every submodule.")
checks.expect(mode_predictions["e agrees with c[:1]"] is torch.allclose(_e, _c[:1], atol=1e-5),
              "Your prediction for 'e agrees with c[:1]' is not what PyTorch does. Think about "
              "which statistics batch norm normalises with in eval mode, and whether they depend "
              "on the other samples in the batch.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-no-grad"
# ## 2 · Turning off the recorder: `no_grad` and `inference_mode`
#
# Nobody calls `backward()` during evaluation, yet by default every forward pass records a
# graph: each operation saves the tensors its backward would need, for a backward that never
# comes. That costs memory (the activations of every layer stay alive as long as the output
# does, and `total = total + loss` across batches keeps the graphs of *all* batches alive),
# it costs time, and it gives outputs with `requires_grad=True`, which for example refuse
# `.numpy()`.
#
# Two context managers switch the recording off:
# - **`torch.no_grad()`**: operations inside record nothing, and their results have
#   `requires_grad=False`. The tensors made inside are ordinary tensors: you may use them
#   later in code that does record (a teacher model's outputs used as training targets, say).
# - **`torch.inference_mode()`**: everything `no_grad` does, and it also skips some
#   bookkeeping (version counters, view tracking), so it is a little faster. The price: the
#   tensors made inside are *inference tensors*. Autograd refuses to save them for a backward
#   pass later, and they cannot be modified in place outside inference mode. Use it when the
#   results leave as numbers or predictions; use `no_grad` when they flow back into training.
#
# Both also work as decorators (`@torch.no_grad()` above a `def`). And neither one knows
# anything about dropout or batch norm: **`no_grad` leaves the layers in whatever mode the
# model is in, and `eval()` leaves recording on.** Evaluation needs both switches.
#
# ### Exercise 2 · Predict, then verify
#
# Predict, without running it, what this code gives, and fill in `grad_predictions`.
#
# ```python
# torch.manual_seed(0)
# net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(p=0.5), nn.Linear(16, 2))
# x = torch.randn(8, 4)
#
# net.eval()
# y1 = net(x)                       # eval mode, recording on
#
# net.train()
# with torch.no_grad():
#     y2, y3 = net(x), net(x)       # training mode, recording off
#
# with torch.no_grad():
#     h_ng = x * 2
# with torch.inference_mode():
#     h_im = x * 2
#
# net(h_ng).sum().backward()        # does this line raise an error?
# net(h_im).sum().backward()        # and this one?
# ```
#
# <details><summary>Hint 1</summary>
#
# Go through the two switches separately: which one decides whether dropout is active, and
# which one decides whether a result requires grad?
# </details>
#
# <details><summary>Hint 2</summary>
#
# For the last two lines: `net(h)` runs a linear layer on `h`, and the gradient of its weight
# needs `h`, so autograd must save `h` for the backward pass. Which kind of tensor does
# autograd refuse to save?
# </details>

# %% role="answer" grade_id="grad-predictions"
grad_predictions = {
    "y1.requires_grad": None,               # True or False
    "y2 agrees with y3": None,              # True or False
    "y2.requires_grad": None,               # True or False
    "backward through h_ng raises": None,   # True or False
    "backward through h_im raises": None,   # True or False
}
### BEGIN SOLUTION
grad_predictions = {
    "y1.requires_grad": True,
    "y2 agrees with y3": False,
    "y2.requires_grad": False,
    "backward through h_ng raises": False,
    "backward through h_im raises": True,
}
### END SOLUTION

# %% role="test" grade_id="test-grad-predictions" points=3
# Hidden tests run the code of Exercise 2 and compare with your predictions.
_keys = {"y1.requires_grad", "y2 agrees with y3", "y2.requires_grad", "backward through h_ng raises",
         "backward through h_im raises"}
checks.expect(isinstance(grad_predictions, dict) and set(grad_predictions) == _keys,
              "grad_predictions should be a dict with exactly the keys of the template.")
checks.expect(all(type(grad_predictions[k]) is bool for k in _keys),
              "Each prediction should be True or False.")
### BEGIN HIDDEN TESTS
def _raises(net, h):
    try:
        net(h).sum().backward()
    except RuntimeError:
        return True
    return False


with checks.seeded(0):
    _net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(p=0.5), nn.Linear(16, 2)).to(checks.DEVICE)
    _x = torch.randn(8, 4, device=checks.DEVICE)
    _net.eval()
    _y1 = _net(_x)
    _net.train()
    with torch.no_grad():
        _y2, _y3 = _net(_x), _net(_x)
    with torch.no_grad():
        _h_ng = _x * 2
    with torch.inference_mode():
        _h_im = _x * 2
    _ng_raises, _im_raises = _raises(_net, _h_ng), _raises(_net, _h_im)
checks.expect(grad_predictions["y1.requires_grad"] is _y1.requires_grad,
              "Your prediction for y1.requires_grad is not what PyTorch does. eval() changes how "
              "layers such as dropout compute; it does not tell autograd to stop recording.")
checks.expect(grad_predictions["y2 agrees with y3"] is torch.allclose(_y2, _y3),
              "Your prediction for 'y2 agrees with y3' is not what PyTorch does. no_grad only stops "
              "the recording of the graph; it does not change the mode of any layer.")
checks.expect(grad_predictions["y2.requires_grad"] is _y2.requires_grad,
              "Your prediction for y2.requires_grad is not what PyTorch does. Inside no_grad no "
              "operation is recorded, whatever the mode of the model.")
checks.expect(grad_predictions["backward through h_ng raises"] is _ng_raises,
              "Your prediction for the backward through h_ng is not what PyTorch does. A tensor "
              "made under no_grad is an ordinary tensor that simply does not require grad.")
checks.expect(grad_predictions["backward through h_im raises"] is _im_raises,
              "Your prediction for the backward through h_im is not what PyTorch does. Tensors made "
              "under inference_mode are inference tensors: see what autograd may do with them "
              "(Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-restore"
# ## 3 · Leave the model as you found it
#
# Evaluation usually happens in the middle of training: a few epochs, a validation pass, more
# epochs. If the validation pass ends with the model in eval mode, the epochs that follow
# train without dropout and with frozen batch-norm statistics. No error, no warning: just a
# worse model. So code that evaluates should **restore the mode it found**.
#
# "The mode" is not one boolean. Every submodule has its own `training` flag, and real models
# are often **mixed**: when fine-tuning a pretrained network, for instance, it is common to
# keep its batch-norm layers in eval mode (frozen statistics) while everything else trains.
# Saving `was_training = model.training` and calling `model.train(was_training)` at the end
# sets every submodule to the same value, and silently unfreezes those layers. Record each
# submodule's flag; restore each one (`model.modules()` walks them all).
#
# Restore it even when the evaluation fails halfway: an exception in the middle of the loop
# must not leave the model in eval mode either. That is the job of `try` / `finally`, and the
# pattern "set up, run a block, always clean up" is exactly what a **context manager** packs
# up. `contextlib.contextmanager` turns a generator into one: the code before `yield` runs
# when the `with` block starts, the code after it when the block ends; if the block raises,
# the exception comes out of the `yield`.
#
# ### Exercise 3 · `eval_mode`
#
# Write the context manager `eval_mode(model)`:
# - on entering the `with` block, it puts the model and every submodule in eval mode;
# - on leaving it, normally or through an exception, it puts every submodule back in exactly
#   the mode it had before (and lets the exception continue: it must not swallow it).
#
# ```python
# with eval_mode(model):
#     ...            # here the whole model is in eval mode
# # here every submodule is back in the mode it had before
# ```
#
# <details><summary>Hint 1</summary>
#
# Before switching, build a dictionary from each module in `model.modules()` to its
# `training` flag. On the way out, go through that dictionary and set each flag back.
# </details>
#
# <details><summary>Hint 2</summary>
#
# In a `@contextlib.contextmanager` generator, put the `yield` inside `try:` and the restoring
# code in `finally:`, so that it runs even when the `with` block raises.
# </details>

# %% role="answer" grade_id="eval-mode"
@contextlib.contextmanager
def eval_mode(model):
    """Put model and all its submodules in eval mode for a with-block, then restore each one's mode."""
    ### BEGIN SOLUTION
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode
    ### END SOLUTION


# %% role="test" grade_id="test-eval-mode-sanity" points=1
_m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
_m.train()
with eval_mode(_m):
    checks.expect(not _m.training and not _m[1].training,
                  "Inside `with eval_mode(model):` the model and its dropout layer should be in eval mode.")
checks.expect(_m.training and _m[1].training,
              "After the with-block, a model that was training should be training again.")
print("eval_mode switches and restores a simple model")


# %% role="test" grade_id="test-eval-mode" points=3
# Hidden tests: a model already in eval mode, a mixed-mode model (batch norm frozen, the rest
# training), an exception inside the with-block, and nested blocks.
### BEGIN HIDDEN TESTS
def _make():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(8, 2)).to(checks.DEVICE)


def _flags(m):
    return {(f"submodule {name} ({type(sub).__name__})" if name else "the model"): sub.training
            for name, sub in m.named_modules()}


_m = _make()
_m.eval()
with eval_mode(_m):
    pass
checks.expect(not any(_flags(_m).values()),
              "A model that was in eval mode came out of eval_mode in training mode. Restore the "
              "mode each submodule had, rather than assuming the model was training.")

_m = _make()
_m.train()
_m[1].eval()                       # a frozen batch norm inside a training model
_before = _flags(_m)
with eval_mode(_m):
    _inside = _flags(_m)
_after = _flags(_m)
_still = [n for n, t in _inside.items() if t]
checks.expect(not _still,
              f"Inside the with-block, {', '.join(_still)} still had training=True. Every submodule "
              "must be in eval mode: model.eval() sets the flag recursively, and setting "
              "model.training on the top module alone does not.")
_wrong = [n for n in _before if _after[n] != _before[n]]
checks.expect(not (_wrong and all(_before[n] and not _after[n] for n in _wrong)),
              f"After the with-block, {', '.join(_wrong)} stayed in eval mode. eval_mode must put every "
              "submodule back in the mode it had when the block started.")
checks.expect(not _wrong,
              f"After the with-block, the mode of {', '.join(_wrong)} was not what it was before. On "
              "this mixed model (batch norm frozen in eval mode, the rest training) a single "
              "model.train(...) sets every submodule alike. Record the flag of every module in "
              "model.modules() and restore each one (Hint 1). Note that module.train(flag) is recursive "
              "too: restoring one module with train() resets all the modules below it, so set each "
              "module's `training` attribute directly.")

_m = _make()
_m.train()
_raised = False
try:
    with eval_mode(_m):
        raise ValueError("an error inside the evaluation")
except ValueError:
    _raised = True
checks.expect(_raised,
              "An exception raised inside the with-block did not come out of it: eval_mode "
              "swallowed it. Restore the modes in `finally:` and let the exception continue; do not "
              "catch it.")
checks.expect(all(_flags(_m).values()),
              "When the with-block raised an exception, the model stayed in eval mode. Put the "
              "yield inside try: and restore the modes in finally:, so they are restored on every "
              "way out (Hint 2).")

_m = _make()
_m.train()
with eval_mode(_m):
    with eval_mode(_m):
        pass
    checks.expect(not any(_flags(_m).values()),
                  "After an inner `with eval_mode(model):` ended inside an outer one, the model "
                  "was no longer in eval mode: each block must restore the modes it found when "
                  "it started.")
checks.expect(all(_flags(_m).values()), "After two nested eval_mode blocks, the model should be training again.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-loader"
# ## 4 · A loader for evaluation: every sample exactly once
#
# Training loaders are built to make training go well, and the very choices that help there
# spoil a measurement:
# - `shuffle=True` varies the batches from epoch to epoch. For evaluation it changes no
#   average, but it scrambles the order: predictions no longer line up with the rows they
#   came from.
# - `drop_last=True` avoids a tiny last batch (noisy gradient, poor batch-norm statistics).
#   For evaluation it silently leaves up to `batch_size - 1` samples out of every metric.
# - A sampler that draws **with replacement** (`WeightedRandomSampler`, used to balance
#   classes) yields some samples several times and others never. Even with the right total
#   count, the metric is taken over a different data set.
#
# A metric is an average over the evaluation set, so an evaluation loader yields every sample
# exactly once, in order, and keeps the last, smaller batch. What it does keep from the
# training loader is the dataset, the batch size, and the `collate_fn`: the function that
# knows how to put this dataset's samples together into a batch.
#
# ### Exercise 4 · `evaluation_loader`
#
# Write `evaluation_loader(train_loader)`: given a training `DataLoader` (built with a
# `batch_size`, and possibly with shuffling, `drop_last` or a sampler), return a new
# `DataLoader` over the same dataset, with the same batch size and the same `collate_fn`,
# that yields every sample exactly once, in the order of the dataset.
#
# <details><summary>Hint 1</summary>
#
# A `DataLoader` remembers what it was built with: `loader.dataset`, `loader.batch_size`,
# `loader.collate_fn`, `loader.sampler`, `loader.drop_last`. Which of them belong in the new
# loader, and which must go back to their defaults?
# </details>
#
# <details><summary>Hint 2</summary>
#
# With no sampler and `shuffle=False`, a `DataLoader` walks the dataset from index 0 to the
# end. `drop_last` defaults to `False`.
# </details>

# %% role="answer" grade_id="evaluation-loader"
def evaluation_loader(train_loader):
    """A DataLoader over train_loader's dataset (same batch size and collate_fn) that yields every
    sample exactly once, in order."""
    ### BEGIN SOLUTION
    return DataLoader(train_loader.dataset, batch_size=train_loader.batch_size, shuffle=False,
                      drop_last=False, collate_fn=train_loader.collate_fn)
    ### END SOLUTION


# %% role="test" grade_id="test-evaluation-loader-sanity" points=1
_train = DataLoader(TensorDataset(torch.arange(50.0)), batch_size=8, shuffle=True, drop_last=True)
_eval = evaluation_loader(_train)
checks.expect(isinstance(_eval, DataLoader), "Your evaluation_loader should return a torch.utils.data.DataLoader.")
_count = sum(len(batch[0]) for batch in _eval)
checks.expect(_count == 50,
              f"The evaluation loader yielded {_count} samples from a dataset of 50. It must yield "
              "each of them once: which of the training loader's settings leave samples out?")
print("evaluation_loader yields all 50 samples")


# %% role="test" grade_id="test-evaluation-loader" points=2
# Hidden tests: training loaders that sample with replacement, shuffle, or drop the last batch,
# over a dataset of dicts with its own collate_fn.
### BEGIN HIDDEN TESTS
class _Indexed(torch.utils.data.Dataset):
    def __len__(self):
        return 103

    def __getitem__(self, i):
        return {"x": torch.full((2,), float(i)), "index": i}


def _collate(items):
    return torch.stack([it["x"] for it in items]), torch.tensor([it["index"] for it in items])


_ds = _Indexed()
_g = torch.Generator().manual_seed(0)
_loaders = {
    "a loader with a WeightedRandomSampler (replacement=True)": DataLoader(
        _ds, batch_size=16, collate_fn=_collate,
        sampler=WeightedRandomSampler(torch.linspace(1, 3, 103), num_samples=103, replacement=True, generator=_g)),
    "a shuffling loader with drop_last=True": DataLoader(_ds, batch_size=16, shuffle=True, drop_last=True,
                                                         collate_fn=_collate, generator=_g),
    "a loader with batch_size=10 and drop_last=True": DataLoader(_ds, batch_size=10, drop_last=True,
                                                                collate_fn=_collate),
}
for _name, _train in _loaders.items():
    _eval = evaluation_loader(_train)
    checks.expect(isinstance(_eval, DataLoader), "Your evaluation_loader should return a DataLoader.")
    _seen, _sizes = [], []
    for _batch in _eval:
        checks.expect(type(_batch) is tuple and len(_batch) == 2,
                      f"For {_name}, the evaluation loader's batches are not what the training "
                      "loader's collate_fn builds. Pass the training loader's collate_fn on: it is "
                      "the function that knows how to batch this dataset's samples.")
        _sizes.append(len(_batch[1]))
        _seen.extend(int(i) for i in _batch[1])
    checks.expect(max(_sizes) == _train.batch_size and all(s == _train.batch_size for s in _sizes[:-1]),
                  f"For {_name}, the evaluation loader's batches do not hold train_loader.batch_size samples. "
                  "Keep the training loader's batch size (it is what fits through the model); only the "
                  "order, the sampling and drop_last change for evaluation.")
    _dupes = len(_seen) - len(set(_seen))
    checks.expect(_dupes == 0,
                  f"For {_name}, the evaluation loader repeated {_dupes} samples (and so skipped "
                  "others). A sampler that draws with replacement is for training; an evaluation "
                  "loader must yield every sample exactly once, so leave the sampler out.")
    checks.expect(len(_seen) == len(_ds) or not _eval.drop_last,
                  f"For {_name}, the evaluation loader yielded {len(_seen)} of the {len(_ds)} samples: "
                  "drop_last=True drops the last, smaller batch. Every sample must count in a metric.")
    checks.expect(len(_seen) == len(_ds),
                  f"For {_name}, the evaluation loader yielded {len(_seen)} samples for a dataset of {len(_ds)} "
                  "(drop_last is off). Every sample must count in a metric, exactly once: let the loader walk "
                  "the dataset's own indices, 0 to len(dataset) - 1, rather than a sampler or a count of its own.")
    checks.expect(_seen == list(range(len(_ds))),
                  f"For {_name}, the evaluation loader yields the samples out of order. Shuffling is "
                  "for training; in evaluation, predictions must line up with the rows they came from.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-metrics"
# ## 5 · Metrics are tensor computations
#
# A classifier's output for a batch is a `(N, C)` tensor of logits: one row per sample, one
# column per class. The predicted class of each sample is the position of the largest entry
# **in its row**, that is, the argmax over the class dimension. The argmax over the other
# dimension answers a different question ("for each class, which sample scores highest?")
# and is a sneaky bug: when the batch happens to hold as many samples as there are classes,
# it even has the right shape. A second classic: comparing predictions of shape `(N, 1)` with
# targets of shape `(N,)` broadcasts to an `(N, N)` table of every prediction against every
# target, and its mean is not an accuracy.
#
# Accuracy, the fraction of correct predictions, hides *which* classes fail. The **confusion
# matrix** shows it: `cm[t, p]` counts the samples whose true class is `t` and whose predicted
# class is `p`. Rows are the truth, columns the predictions, and the diagonal holds the correct
# ones. From it:
# - the **recall** of class `c` is `cm[c, c]` divided by the sum of row `c`: of the samples
#   that really are `c`, the fraction the model found;
# - the **precision** of class `c` divides by the sum of column `c` instead: of the samples
#   predicted as `c`, the fraction that really are `c`.
#
# A class with no samples in the evaluation set has recall 0 / 0: undefined. Report it as
# `nan`, not 0, which would claim the model failed on samples that do not exist.
#
# Counting the pairs needs no Python loop. Give each (true, predicted) pair a single number,
# `t * C + p`, which runs from 0 to `C*C - 1`; `torch.bincount` counts how often each number
# occurs, and a reshape turns the `C*C` counts into the matrix.
#
# ### Exercise 5 · Metrics
#
# Write three functions, each with tensor operations (no Python loop over samples):
# - `accuracy(logits, targets)`: `logits` is `(N, C)`, `targets` is `(N,)` int64; return the
#   fraction of samples whose predicted class equals the target, as a Python `float`.
# - `confusion_matrix(preds, targets, num_classes)`: `preds` and `targets` are `(N,)` int64
#   class ids; return the `(num_classes, num_classes)` int64 matrix described above (rows:
#   true class), on the device of the inputs.
# - `per_class_recall(cm)`: return a float32 tensor of shape `(C,)` with the recall of each
#   class, `nan` for a class with no samples.
#
# <details><summary>Hint 1</summary>
#
# `logits.argmax(dim=...)` returns the position of the largest value along one dimension.
# Which dimension of a `(N, C)` tensor runs over the classes?
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.bincount(codes, minlength=k)` returns `k` counts even when some codes never occur.
# For the recall, `cm.diagonal()` and `cm.sum(dim=...)` give the two parts; convert to float
# before dividing.
# </details>

# %% role="answer" grade_id="metrics"
def accuracy(logits, targets):
    """Fraction of rows of logits (N, C) whose argmax equals targets (N,), as a Python float."""
    ### BEGIN SOLUTION
    return (logits.argmax(dim=1) == targets).float().mean().item()
    ### END SOLUTION


def confusion_matrix(preds, targets, num_classes):
    """(num_classes, num_classes) int64 counts: entry [t, p] counts samples of true class t predicted as p."""
    ### BEGIN SOLUTION
    codes = targets * num_classes + preds
    counts = torch.bincount(codes, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)
    ### END SOLUTION


def per_class_recall(cm):
    """Recall of each class from a confusion matrix (rows: true class); nan for a class with no samples."""
    ### BEGIN SOLUTION
    cm = cm.to(torch.float32)
    return cm.diagonal() / cm.sum(dim=1)
    ### END SOLUTION


# %% role="test" grade_id="test-metrics-sanity" points=1
_logits = torch.tensor([[2.0, 0.1, 0.3], [0.2, 0.1, 3.0], [0.5, 1.5, 0.2], [0.9, 0.1, 0.0]])
_targets = torch.tensor([0, 2, 2, 1])
_acc = accuracy(_logits, _targets)
checks.expect(type(_acc) is float, f"Your accuracy should return a Python float (use .item()), not {checks.describe(_acc)}.")
checks.expect_close(_acc, 0.5, "The accuracy of the four-sample example",
                    why="It is the fraction of rows whose largest logit sits at the target's class.")
_cm = confusion_matrix(torch.tensor([0, 2, 1, 0]), _targets, 3)
checks.expect_tensor(_cm, "The result of confusion_matrix(preds, targets, 3)", shape=(3, 3), dtype=torch.int64)
checks.expect(int(_cm.sum()) == 4, "The confusion matrix should count every sample once: its entries add up to N.")
_rec = per_class_recall(_cm)
checks.expect_tensor(_rec, "The result of per_class_recall(cm)", shape=(3,), dtype=torch.float32)
print("accuracy:", _acc)
print("confusion matrix:\n", _cm)
print("recall per class:", _rec)


# %% role="test" grade_id="test-accuracy" points=2
# Hidden tests: batches with as many samples as classes, targets on the grader's device, logits
# that require grad.
### BEGIN HIDDEN TESTS
def _square_batch(n, step, targets):
    """Logits where sample i scores highest on class (i + step) % n, so for class j the sample
    scoring highest is (j - step) % n: the argmax over dim 0 is a known, different answer."""
    logits = torch.randn(n, n) * 0.1
    logits[torch.arange(n), (torch.arange(n) + step) % n] += 5.0
    return logits.to(checks.DEVICE).requires_grad_(), torch.tensor(targets, device=checks.DEVICE)


with checks.seeded(0):
    # 7 of 10 right (0.7); over dim 0, samples 0 and 1 would count as right (0.2)
    _a = _square_batch(10, 1, [9, 0, 7, 4, 5, 6, 7, 8, 9, 0])
    # 4 of 8 right (0.5); over dim 0, samples 4, 5 and 6 would count as right (0.375)
    _b = _square_batch(8, 3, [3, 4, 5, 6, 1, 2, 3, 0])
_got = {}
for _key, (_logits, _targets) in {"a": _a, "b": _b}.items():
    _got[_key] = accuracy(_logits, _targets)
    checks.expect(type(_got[_key]) is float,
                  f"Your accuracy should return a Python float (use .item()), not {checks.describe(_got[_key])}.")


def _gives(mistake):
    """The student's accuracy returned what this mistake returns, on both batches (where the two differ
    from the right answers), so the mistake is established, not guessed from one wrong number."""
    return all(abs(_got[k] - mistake(*batch).item()) < 1e-6 for k, batch in {"a": _a, "b": _b}.items())


checks.expect(not _gives(lambda lg, t: (lg.argmax(dim=0) == t).float().mean()),
              "Your accuracy took the argmax over the wrong dimension: for each class, it picked the "
              "sample with the highest score. A sample's prediction is the argmax of its own row, "
              "over the class dimension (shapes cannot warn you when N equals the number of classes).")
checks.expect(not _gives(lambda lg, t: (lg.argmax(dim=1, keepdim=True) == t).float().mean()),
              "Your accuracy compared predictions of shape (N, 1) with targets of shape (N,), which "
              "broadcasts to an (N, N) table of every prediction against every target. Compare two "
              "tensors of shape (N,).")
checks.expect_close(_got["a"], 0.7, "The accuracy of a batch of 10 samples with 10 classes",
                    why="It is the fraction of samples whose row argmax equals the target: count the rows "
                        "whose largest logit (argmax over the class dimension, dim=1) sits at the target, "
                        "as a float, and divide by N.")
checks.expect_close(_got["b"], 0.5, "The accuracy of a batch of 8 samples with 8 classes",
                    why="It is the fraction of samples whose row argmax equals the target.")
with checks.seeded(1):
    _logits = torch.randn(37, 4, device=checks.DEVICE)
    _targets = torch.randint(0, 4, (37,), device=checks.DEVICE)
_want = sum(int(_logits[i].argmax()) == int(_targets[i]) for i in range(37)) / 37
checks.expect_close(accuracy(_logits, _targets), _want, "The accuracy of 37 samples with 4 classes",
                    why="Divide the number of correct predictions by the number of samples, N.")


# On a GPU grader the inputs live on the GPU, where .numpy() refuses them. Without a GPU, the
# test hands accuracy tensors that refuse .numpy() in the same way and turn plain on .cpu().
class _NumpyOnGpu(TypeError):
    pass


class _LikeOnGpu(torch.Tensor):
    def numpy(self, *args, **kwargs):
        raise _NumpyOnGpu("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy "
                          "the tensor to host memory first.")

    def cpu(self, *args, **kwargs):
        return torch.Tensor.cpu(self, *args, **kwargs).as_subclass(torch.Tensor)

    def to(self, *args, **kwargs):
        out = torch.Tensor.to(self, *args, **kwargs)
        return out.as_subclass(torch.Tensor) if out.device.type == "cpu" and "cpu" in repr((args, kwargs)) else out


try:
    _got = accuracy(_logits.as_subclass(_LikeOnGpu), _targets.as_subclass(_LikeOnGpu))
except _NumpyOnGpu:
    checks.expect(False, "Your accuracy calls .numpy() on a tensor that lives where the inputs live. On this "
                         "grader that is the CPU, but on a GPU grader .numpy() refuses a GPU tensor "
                         "(\"can't convert cuda:0 device type tensor to numpy\"). Stay with tensor "
                         "operations and .item(), or move to the CPU first with .cpu().")
checks.expect_close(_got, _want, "The accuracy of 37 samples given as if they lived on a GPU")
### END HIDDEN TESTS

# %% role="test" grade_id="test-confusion" points=2
# Hidden tests compare with counts made one by one, on the grader's device, and check that the
# work does not grow with a Python loop over samples.
### BEGIN HIDDEN TESTS
with checks.seeded(2):
    _C = 4
    _targets = torch.randint(0, _C, (60,), device=checks.DEVICE)
    _preds = torch.where(torch.rand(60, device=checks.DEVICE) < 0.6, _targets,
                         torch.randint(0, _C, (60,), device=checks.DEVICE))
    _preds[_preds == 3] = 2                     # class 3 is never predicted
_want = torch.zeros(_C, _C, dtype=torch.int64)
for _t, _p in zip(_targets.tolist(), _preds.tolist()):
    _want[_t, _p] += 1
try:
    _got = confusion_matrix(_preds, _targets, _C)
except RuntimeError as _err:
    checks.expect(False, "Your confusion_matrix failed when one class is never predicted "
                         f"({str(_err).splitlines()[0]}). The matrix is num_classes x num_classes "
                         "whatever occurs in the data: the counts must cover every possible (true, "
                         "predicted) pair, including pairs that never happen (Hint 2).")
checks.expect_tensor(_got, "The result of confusion_matrix(preds, targets, 4)", shape=(_C, _C), dtype=torch.int64,
                     device=checks.DEVICE, why="Counts are int64, and stay on the device of the inputs.")
_got = _got.cpu()
checks.expect(not (torch.equal(_got, _want.T) and not torch.equal(_got, _want)),
              "The confusion matrix is transposed: by convention row t holds the samples whose TRUE "
              "class is t, and column p those PREDICTED as p.")
checks.expect(not (torch.equal(_got, (_want > 0).long()) and not torch.equal(_got, _want)),
              "Your confusion matrix holds 1 wherever a (true, predicted) pair occurs, however often it "
              "occurs: `cm[targets, preds] += 1` writes each repeated index once, it does not add up "
              "repeats. Count the pairs with an operation that accumulates (see the t * C + p idea "
              "and Hint 2).")
checks.expect(torch.equal(_got, _want),
              "The confusion matrix does not hold the right counts. Entry [t, p] counts the samples "
              "with true class t and predicted class p; every sample counts exactly once.")
_few = torch.tensor([0, 1, 2, 1] * 5, device=checks.DEVICE)
_many = torch.tensor([0, 1, 2, 1] * 500, device=checks.DEVICE)
_, _c_few = checks.count_torch_calls(confusion_matrix, _few, _few.flip(0), 3)
_, _c_many = checks.count_torch_calls(confusion_matrix, _many, _many.flip(0), 3)
checks.expect(_c_many.total <= _c_few.total + 20,
              f"Your confusion_matrix made {_c_few.total} torch calls for 20 samples and {_c_many.total} "
              "for 2000: it loops over the samples in Python. Count all pairs at once with tensor "
              "operations (see the t * C + p idea and Hint 2).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-recall" points=2
# Hidden tests: a class with no samples, a class never predicted, the grader's device.
### BEGIN HIDDEN TESTS
_cm = torch.tensor([[5, 1, 0, 2],
                    [0, 0, 0, 0],
                    [3, 1, 4, 0],
                    [0, 6, 0, 2]], device=checks.DEVICE)
_got = per_class_recall(_cm)
checks.expect_tensor(_got, "The result of per_class_recall(cm)", shape=(4,), dtype=torch.float32, device=checks.DEVICE,
                     why="Recall is a fraction, one per class: convert the counts to float32 before dividing, "
                         "and keep the result on the device of the matrix.")
_got = _got.cpu()
_rows = torch.tensor([5 / 8, float("nan"), 4 / 8, 2 / 8])
_cols = torch.tensor([5 / 8, 0 / 8, 4 / 4, 2 / 4])
checks.expect(not torch.allclose(_got, _cols),
              "Your per_class_recall divides the diagonal by the column sums: that is the precision (of "
              "the samples PREDICTED as c, how many are c). Recall divides by the row sums: of the "
              "samples that truly are c, how many the model found.")
checks.expect(bool(torch.isnan(_got[1])),
              "Class 1 has no samples at all, so its recall is 0/0, undefined: report nan. A 0 would "
              "claim the model failed on samples that do not exist.")
checks.expect(not bool(torch.isnan(_got[[0, 2, 3]]).any()),
              "Your per_class_recall returned nan for a class that has samples.")
checks.expect_close(_got[[0, 2, 3]], _rows[[0, 2, 3]], "The recall of the classes with samples",
                    why="Recall of class c is cm[c, c] divided by the sum of row c.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-evaluate"
# ## 6 · An evaluation loop that changes nothing
#
# An evaluation loop looks like a training loop with the update removed, and that is exactly
# how it goes wrong. Here is what it must do, and why:
# - **eval mode** for the whole loop, and the previous mode of every submodule back at the end,
#   even when the loop fails halfway (Sections 1 and 3: your `eval_mode` does this);
# - **no recording**: the loop runs inside a `with torch.no_grad():` or
#   `with torch.inference_mode():` block (Section 2), so that recording is back on when the
#   evaluation ends. (`torch.set_grad_enabled(False)` called on its own switches recording off
#   for the whole program, training included; and `model.requires_grad_(False)` is not a way
#   to evaluate at all: it freezes the parameters, and they stay frozen for the training that
#   follows.)
# - **no update of any kind**: no `backward()`, no `optimizer.step()`, and no `zero_grad()`
#   either, because evaluation often runs in the middle of training and the gradients in
#   `.grad` belong to the training loop;
# - **every sample counts once**: `loss_fn` returns the *mean* over a batch, and the last
#   batch is usually smaller. Averaging the batch means gives the samples of the small batch
#   more weight; instead, weight each batch's loss by its size and divide by the number of
#   samples. Count the samples as they come: a loader does not always cover its whole
#   dataset (a sampler may pick a subset), so `len(loader.dataset)` can be wrong;
# - **numbers out, not tensors**: `.item()` turns a one-element tensor into a Python float.
#
# The test that sums it up: evaluate twice and get the same numbers, and find the parameters,
# buffers, gradients and optimiser state bit-for-bit as they were.
#
# ### Exercise 6 · Fix a broken snippet
#
# `evaluate_broken` below is what you get by deleting the update from a training loop. Run it:
# the cell calls it twice on a copy of `digits_model` and prints what goes wrong. It has more
# problems than the cell shows. Write the correct `evaluate(model, loader, loss_fn)`:
# - it moves each batch of `(inputs, targets)`, the inputs *and* the targets, to the device of
#   the model's parameters;
# - it returns a dict `{"loss": float, "accuracy": float, "samples": int}`: the mean loss
#   per sample, the fraction of correct predictions, and the number of samples the loader
#   yielded;
# - it follows every rule of the list above.
#
# <details><summary>Hint 1</summary>
#
# Two switches are needed, and both must be undone when the loop ends, however it ends. One
# `with` statement can hold several context managers, separated by commas; your `eval_mode`
# from Exercise 3 is one of them (finish that exercise first if you use it).
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep three running totals as Python numbers: the summed loss (`loss.item() * n` for a batch
# of `n` samples), the number correct, and the number of samples seen. Divide at the end.
# </details>

# %% role="locked" grade_id="evaluate-broken"
def evaluate_broken(model, loader, loss_fn):
    """The broken version: a training loop with the update deleted."""
    total_loss, correct = 0.0, 0
    for inputs, targets in loader:
        logits = model(inputs)
        total_loss = total_loss + loss_fn(logits, targets)
        correct += (logits.argmax(dim=1) == targets).sum().item()
    return {"loss": total_loss / len(loader), "accuracy": correct / len(loader.dataset),
            "samples": len(loader.dataset)}


_demo = copy.deepcopy(digits_model)
_counter = _demo[1].num_batches_tracked.item()
_first = evaluate_broken(_demo, val_loader, loss_fn)
_second = evaluate_broken(_demo, val_loader, loss_fn)
print("accuracy from two calls in a row:", round(_first["accuracy"], 4), round(_second["accuracy"], 4))
print("batch norm's num_batches_tracked:", _counter, "->", _demo[1].num_batches_tracked.item())
print("the loss it returns:", checks.describe(_first["loss"]))


# %% role="answer" grade_id="evaluate"
def evaluate(model, loader, loss_fn):
    """Mean loss per sample, accuracy and sample count of model over loader; changes nothing."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    total_loss, correct, seen = 0.0, 0, 0
    with eval_mode(model), torch.inference_mode():
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)
            n = targets.shape[0]
            total_loss += loss_fn(logits, targets).item() * n
            correct += (logits.argmax(dim=1) == targets).sum().item()
            seen += n
    return {"loss": total_loss / seen, "accuracy": correct / seen, "samples": seen}
    ### END SOLUTION


# %% role="test" grade_id="test-evaluate-sanity" points=1
_r1 = evaluate(digits_model, val_loader, loss_fn)
_r2 = evaluate(digits_model, val_loader, loss_fn)
checks.expect(isinstance(_r1, dict) and set(_r1) == {"loss", "accuracy", "samples"},
              "Your evaluate should return a dict with the keys 'loss', 'accuracy' and 'samples'.")
checks.expect(type(_r1["loss"]) is float and type(_r1["accuracy"]) is float and type(_r1["samples"]) is int,
              f"Your evaluate should return plain Python numbers (floats for loss and accuracy, an int for "
              f"samples), but 'loss' is {checks.describe(_r1['loss'])}. Use .item().")
checks.expect(_r1["samples"] == len(X_val),
              f"The validation loader yields {len(X_val)} samples, but evaluate counted {_r1['samples']}: "
              "every batch counts, the last, smaller one too.")
checks.expect(_r1 == _r2,
              "Two calls of evaluate in a row gave different results: something random or something "
              "that changes ran during evaluation. Which mode is the model in?")
checks.expect(_r1["accuracy"] > 0.85, f"The trained digits_model reaches well over 85% accuracy, but evaluate says {_r1['accuracy']:.3f}.")
print(f"validation: loss {_r1['loss']:.4f}, accuracy {_r1['accuracy']:.4f} on {_r1['samples']} samples")


# %% role="test" grade_id="test-evaluate-state" points=3
# Hidden tests: dropout detected by repeated evaluations; a model in the middle of training
# (Adam state, gradients in .grad, batch-norm statistics, requires_grad flags) snapshot before
# and after; a mixed-mode model and a model in eval mode keep the mode of every submodule, also
# when the loader fails halfway.
### BEGIN HIDDEN TESTS
def _make():
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, 3)).to(checks.DEVICE)


with checks.seeded(1):
    _X, _Y = torch.randn(90, 6), torch.randint(0, 3, (90,))
_loader = DataLoader(TensorDataset(_X, _Y), batch_size=32)
_loss = nn.CrossEntropyLoss()

with checks.seeded(2):
    _m = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3)).to(checks.DEVICE)
    _m.train()
    _dropping = []   # whether dropout was in training mode at each forward pass
    _hook = _m[2].register_forward_pre_hook(lambda module, args: _dropping.append(module.training))
    try:
        _r1, _r2 = evaluate(_m, _loader, _loss), evaluate(_m, _loader, _loss)
    finally:
        _hook.remove()
checks.expect(_r1["loss"] == _r2["loss"] and _r1["accuracy"] == _r2["accuracy"] or not any(_dropping),
              "Evaluating the same model twice on the same data gave different results: dropout was "
              "active, so each evaluation zeroed different random units. Put the model in eval mode "
              "(model.eval()) for the evaluation.")
checks.expect(_r1["loss"] == _r2["loss"] and _r1["accuracy"] == _r2["accuracy"],
              f"Evaluating the same model twice on the same data gave different results ({_r1} then {_r2}), "
              "with dropout switched off: something evaluate keeps or changes from one call to the next "
              "(a total kept outside the function, a mutable default argument, the parameters) leaks "
              "into the result. Start every count from zero inside evaluate and change nothing.")

with checks.seeded(3):
    _m = _make()
    _opt = torch.optim.Adam(_m.parameters(), lr=1e-2)
    _m.train()
    with torch.enable_grad():      # whatever an earlier call of evaluate did to the global switch
        for _xb, _yb in _loader:
            _opt.zero_grad()
            _loss(_m(_xb.to(checks.DEVICE)), _yb.to(checks.DEVICE)).backward()
            _opt.step()
    _before = checks.module_state(_m, _opt)
    _learns = {_n: _p.requires_grad for _n, _p in _m.named_parameters()}
    evaluate(_m, _loader, _loss)
    _after = checks.module_state(_m, _opt)
_changed = checks.changed_state(_before, _after)
_frozen = [_n for _n, _p in _m.named_parameters() if _p.requires_grad != _learns[_n]]
checks.expect(not _frozen,
              f"After evaluate, requires_grad of {len(_frozen)} parameters ({', '.join(_frozen[:2])}, ...) was "
              "no longer what it was: the model is frozen for the training that follows, and its "
              "optimizer would silently stop updating it. requires_grad says what learns; it is not "
              "a switch for evaluation. Leave it alone and run the loop under torch.no_grad() or "
              "torch.inference_mode() instead.")
_buffers = [c for c in _changed if c.startswith("buffers")]
checks.expect(not _buffers,
              f"Your evaluate changed batch norm's buffers ({', '.join(_buffers)}): the model ran in "
              "training mode, so every evaluation batch was mixed into the running statistics and "
              "counted in num_batches_tracked. Evaluation data leaked into the model. Switch to eval "
              "mode while evaluating.")
_grads = [c for c in _changed if c.startswith("grads")]
checks.expect(not _grads,
              f"Your evaluate changed the gradients stored in .grad ({len(_grads)} parameters). Evaluation "
              "runs in the middle of training and the gradients belong to the training loop: no "
              "backward(), no zero_grad() in an evaluation.")
_updated = [c for c in _changed if c.startswith(("parameters", "optimizer"))]
checks.expect(not _updated,
              f"Your evaluate changed {', '.join(_updated[:3])}: an evaluation must never update the "
              "parameters or the optimiser state (no optimizer.step()).")
_modes = [c for c in _changed if c.startswith("training")]
checks.expect(not _modes,
              "After evaluate, the model that was training was left in eval mode: the next epochs "
              "would train without dropout and with frozen batch-norm statistics. Restore the mode "
              "the model had (your eval_mode does this).")

_m = _make()
_m.train()
_m[1].eval()                      # batch norm frozen, the rest training
_before = checks.module_state(_m)
evaluate(_m, _loader, _loss)
_modes = [c.split(": ", 1)[1] for c in checks.changed_state(_before, checks.module_state(_m)) if c.startswith("training")]
_modes = [f"submodule {n} ({type(_m.get_submodule(n)).__name__})" if n != "(the model)" else "the model" for n in _modes]
checks.expect(not _modes,
              f"On a mixed-mode model (batch norm frozen in eval mode, the rest training), evaluate "
              f"changed the mode of {', '.join(_modes)}. Restore the flag of every submodule, not one "
              "flag for the whole model (if you use eval_mode, check that it passes its own tests).")
_m.eval()
evaluate(_m, _loader, _loss)
checks.expect(not any(sub.training for sub in _m.modules()),
              "A model that was in eval mode came out of evaluate in training mode. Restore the mode "
              "you found instead of calling model.train().")


class _Corrupt(torch.utils.data.Dataset):  # the second batch holds a sample that cannot be read
    def __len__(self):
        return 48

    def __getitem__(self, i):
        if i == 20:
            raise ValueError("sample 20 cannot be read")
        return _X[i], _Y[i]


_m = _make()
_m.train()
_m[1].eval()                      # batch norm frozen, the rest training
_before = checks.module_state(_m)
try:
    evaluate(_m, DataLoader(_Corrupt(), batch_size=16), _loss)
except NotImplementedError:
    raise
except Exception:                 # the error itself may come out as it is, or wrapped in another
    pass
_modes = [c.split(": ", 1)[1] for c in checks.changed_state(_before, checks.module_state(_m)) if c.startswith("training")]
checks.expect(not _modes,
              f"When the loader failed halfway through evaluate (a sample of the second batch could not be "
              f"read), the mode of {len(_modes)} of the model's modules was not restored: the training that "
              "follows would run in eval mode. Restore the modes on every way out of the loop, with "
              "try/finally or a with-block (your eval_mode does this).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-evaluate-grad" points=2
# Hidden tests watch the model's outputs during evaluate: gradient recording must be off, and
# on again once evaluate returns.
### BEGIN HIDDEN TESTS
with checks.seeded(4):
    _m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).to(checks.DEVICE)
    _loader = DataLoader(TensorDataset(torch.randn(40, 6), torch.randint(0, 3, (40,))), batch_size=16)
_tracked = []
_hook = _m.register_forward_hook(lambda module, args, out: _tracked.append(out.requires_grad))
try:
    with torch.enable_grad():                 # recording on, as in the middle of training
        _r = evaluate(_m, _loader, nn.CrossEntropyLoss())
        _still_on = torch.is_grad_enabled()
finally:
    _hook.remove()
checks.expect(len(_tracked) > 0, "Your evaluate never called the model.")
checks.expect(_still_on,
              "After evaluate returned, gradient recording was switched off for the whole program: "
              "torch.set_grad_enabled(False) (or no_grad entered by hand) stays in force after the "
              "function ends, so the training steps that follow record nothing and backward() fails. "
              "Run the loop inside a `with torch.no_grad():` or `with torch.inference_mode():` block, "
              "which switches recording back on when it ends.")
checks.expect(not any(_tracked),
              "During evaluate the model's outputs required grad: autograd recorded a graph for "
              "every batch, paying memory and time for a backward pass that never comes. Run the "
              "loop under torch.no_grad() or torch.inference_mode().")
checks.expect(type(_r["loss"]) is float,
              f"The 'loss' from evaluate should be a Python float, not {checks.describe(_r['loss'])}: a tensor "
              "kept across batches holds on to memory (and to every batch's graph if it requires grad). "
              "Use .item().")
### END HIDDEN TESTS

# %% role="test" grade_id="test-evaluate-values" points=3
# Hidden tests compare with the whole set evaluated at once (with a loss_fn of our own), on a
# loader whose last batch is smaller and on a loader whose sampler covers only part of its
# dataset, and watch which device the model's inputs and the targets are on when the model
# lives elsewhere.
### BEGIN HIDDEN TESTS
with checks.seeded(5):
    _m = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                       nn.Linear(16, 3)).to(checks.DEVICE)
    with torch.no_grad():
        for _ in range(5):
            _m(torch.randn(32, 6, device=checks.DEVICE) * 2 + 1)   # non-trivial running statistics
    _X, _Y = torch.randn(103, 6), torch.randint(0, 3, (103,))
_m.train()
_ref = copy.deepcopy(_m).eval()
_loss = nn.CrossEntropyLoss(label_smoothing=0.1)   # evaluate must use the loss_fn it is given


def _reference(rows, loss_fn=_loss):
    # the same batches of 16 as the loader, so that round-off cannot differ
    with torch.no_grad():
        logits = torch.cat([_ref(_X[rows][i:i + 16].to(checks.DEVICE)) for i in range(0, len(rows), 16)])
        targets = _Y[rows].to(checks.DEVICE)
        return loss_fn(logits, targets).item(), (logits.argmax(1) == targets).float().mean().item()


_ds = TensorDataset(_X, _Y)
_want_loss, _want_acc = _reference(list(range(103)))
_probe = (torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 1, 0]))
_probe_before = _loss(*_probe).item()
_r = evaluate(_m, DataLoader(_ds, batch_size=16), _loss)       # 6 batches of 16, then 7
checks.expect(_loss(*_probe).item() == _probe_before,
              "Your evaluate changed the loss function it was given: after the call it no longer computes "
              "what it computed before (was its reduction changed?). The caller goes on training with "
              "that loss function. Leave it as it is: it returns the mean over a batch, so weight each "
              "batch's loss by the batch's size.")
checks.expect(_r["samples"] == 103,
              f"On a loader over 103 samples (the last batch holds 7), evaluate reported {_r['samples']} "
              "samples. Every sample the loader yields must be counted exactly once, the last, smaller "
              "batch included.")
with torch.no_grad():
    _means = [_loss(_ref(_X[i:i + 16].to(checks.DEVICE)), _Y[i:i + 16].to(checks.DEVICE)).item() for i in range(0, 103, 16)]
    _accs = [(_ref(_X[i:i + 16].to(checks.DEVICE)).argmax(1) == _Y[i:i + 16].to(checks.DEVICE)).float().mean().item()
             for i in range(0, 103, 16)]
checks.expect(abs(_r["loss"] - sum(_means) / len(_means)) > 1e-6 or abs(_r["loss"] - _want_loss) < 1e-6,
              "Your evaluate averaged the batch means, so each of the 7 samples of the last batch weighed "
              "as much as 16/7 of a sample. Every sample must count once: weight each batch's mean "
              "loss by its number of samples, and divide the total by the number of samples.")
_batch_avg = [sum(_accs) / len(_accs), sum(_a * 16 for _a in _accs) / 103, sum(_a * 16 for _a in _accs) / 112]
checks.expect(all(abs(_r["accuracy"] - _b) > 1e-6 for _b in _batch_avg) or abs(_r["accuracy"] - _want_acc) < 1e-6,
              "Your evaluate built its accuracy from the accuracies of the batches, so the 7 samples of the "
              "last batch did not count as 7 samples. Count the correct predictions of each batch (a "
              "number, not a fraction), add them up, and divide by the number of samples seen.")
_plain = _reference(list(range(103)), nn.CrossEntropyLoss())[0]
checks.expect(abs(_r["loss"] - _plain) > 1e-5 or abs(_r["loss"] - _want_loss) < 1e-5,
              "Your evaluate computed a cross-entropy of its own instead of calling the loss_fn it was given "
              "(here a cross-entropy with label smoothing). Evaluate with the caller's loss function, the "
              "one the model is trained with, and weight each batch's mean by its number of samples.")
checks.expect_close(_r["loss"], _want_loss, "The loss from evaluate on 103 samples in batches of 16", rtol=1e-4, atol=1e-6,
                    why="It is the mean loss per sample over everything the loader yields, with the model "
                        "in eval mode.")
checks.expect_close(_r["accuracy"], _want_acc, "The accuracy from evaluate on 103 samples in batches of 16", rtol=1e-6,
                    atol=1e-9, why="It is the number of correct predictions divided by the number of samples.")

_rows = list(range(0, 103, 2))                                    # 52 of the 103 samples
_r = evaluate(_m, DataLoader(_ds, batch_size=16, sampler=_rows), _loss)
_want_loss, _want_acc = _reference(_rows)
checks.expect(_r["samples"] == len(_rows),
              f"On a loader whose sampler picks {len(_rows)} of its dataset's 103 samples, evaluate "
              f"reported {_r['samples']} samples. len(loader.dataset) is the dataset, not what the loader "
              "yields: count the samples as the batches come.")
checks.expect_close(_r["accuracy"], _want_acc, "The accuracy from evaluate when the loader covers part of its dataset",
                    rtol=1e-6, atol=1e-9, why="Divide by the number of samples the loader yielded.")
checks.expect_close(_r["loss"], _want_loss, "The loss from evaluate when the loader covers part of its dataset",
                    rtol=1e-4, atol=1e-6, why="Divide by the number of samples the loader yielded.")


class _Seen(BaseException):  # stops evaluate once the first batch has reached the loss
    pass


def _watch(module, args):
    _devices.append(args[0].device.type)
    if args[0].device.type != "meta":
        raise _Seen


def _spy_loss(logits, targets):
    _target_devices.append(targets.device.type)
    raise _Seen


_devices, _target_devices, _failure = [], [], None
_meta = nn.Sequential(nn.Linear(6, 3)).to("meta")  # a model elsewhere than its data, as on a GPU
_handle = _meta.register_forward_pre_hook(_watch)
try:
    evaluate(_meta, DataLoader(_ds, batch_size=16), _spy_loss)
except _Seen:
    pass
except (RuntimeError, NotImplementedError) as _err:
    if "meta" not in str(_err):
        raise
    _failure = str(_err).strip().splitlines()[0]  # a meta tensor met a CPU one, or was read, before the loss
finally:
    _handle.remove()
checks.expect(bool(_devices) or _failure is None,
              "With the model's parameters on another device than the data (the meta device here, standing "
              f"in for a GPU), evaluate failed before the model saw any input ({_failure}). Leave the model "
              "where it is, and move each batch to the device of the model's parameters "
              "(next(model.parameters()).device) before the forward pass.")
checks.expect(bool(_devices) and all(_d == "meta" for _d in _devices),
              f"With the model's parameters on another device than the data (the meta device here, standing "
              f"in for a GPU), evaluate gave the model its inputs on {', '.join(sorted(set(_devices))) or 'no device'}. Move "
              "each batch to the device of the model's parameters (next(model.parameters()).device) before "
              "the forward pass: on a GPU, a model given CPU inputs fails.")
_stray = sorted(set(_target_devices) - {"meta"})
checks.expect(not _stray and not (_failure and "expected device" in _failure),
              "With the model on another device than the data (the meta device here, standing in for a GPU), "
              f"the targets stayed on {', '.join(_stray) or 'the CPU'} while the logits were on the model's device. "
              "Move the targets too: the loss and the comparison with the predictions combine them with "
              "the logits, and on a GPU tensors on two devices cannot meet in one operation.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-predict"
# ## 7 · Predicting for new data
#
# Inference is the model at work: new inputs, no labels, no loss. The same rules hold (eval
# mode, restored afterwards; no recording), plus three of its own:
# - **batches**: the new data may be far larger than what fits through the model at once, so
#   feed it in chunks of at most `batch_size` rows (`inputs.split(batch_size)` makes them,
#   the last one smaller) and put the results back together in order;
# - **devices**: move each chunk to the model's device, never the model to the data's;
# - **plain answers**: the caller wants class ids, not logits. Take the argmax of each row,
#   and bring the ids back to the CPU (as int64), where the code that uses them (printing,
#   NumPy, saving to a file) expects them, and where they no longer hold on to accelerator
#   memory.
#
# ### Exercise 7 · `predict`
#
# Write `predict(model, inputs, batch_size=256)`: `inputs` is an `(N, ...)` tensor of new
# samples, on any device; return the `(N,)` int64 tensor of predicted class ids, on the CPU,
# in the order of the inputs. The model never sees more than `batch_size` rows at once, runs
# in eval mode without recording, and comes back in the mode it was in, even when a forward
# pass fails. Like `evaluate`, it leaves the model exactly as it found it.
#
# <details><summary>Hint 1</summary>
#
# The structure is the same as in `evaluate`, with the same two switches around a loop;
# this time the loop runs over chunks of the input tensor, which `Tensor.split` makes.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Collect the ids of each chunk in a list (each one moved with `.cpu()`), and join them with
# `torch.cat` at the end.
# </details>

# %% role="answer" grade_id="predict"
def predict(model, inputs, batch_size=256):
    """Class ids (N,) int64 on the CPU for the rows of inputs, in batches of at most batch_size."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    ids = []
    with eval_mode(model), torch.inference_mode():
        for chunk in inputs.split(batch_size):
            logits = model(chunk.to(device))
            ids.append(logits.argmax(dim=1).cpu())
    return torch.cat(ids)
    ### END SOLUTION


# %% role="test" grade_id="test-predict-sanity" points=1
_ids = predict(digits_model, X_val[:50], batch_size=16)
checks.expect_tensor(_ids, "The result of predict(digits_model, X_val[:50], batch_size=16)", shape=(50,), dtype=torch.int64,
                     device="cpu", why="predict returns one class id per input row, as int64, on the CPU.")
_acc = (_ids == y_val[:50]).float().mean().item()
checks.expect(_acc > 0.8, f"Only {_acc:.0%} of the predicted digits match the labels; expected well over 80%.")
print("predicted:", _ids[:12].tolist())
print("labels:   ", y_val[:12].tolist())


# %% role="test" grade_id="test-predict-values" points=3
# Hidden tests: as many rows per batch as classes, a last batch that is smaller, many small
# batches, a model on the grader's device with inputs on the CPU, a model on the meta device;
# the batch sizes and devices the model sees are recorded.
### BEGIN HIDDEN TESTS
def _is_argmax(ids, logits):
    """Each id is the position of its row's largest logit (ties within round-off allowed)."""
    picked = logits.gather(1, ids.reshape(-1, 1)).squeeze(1)
    return bool((picked >= logits.max(dim=1).values - 1e-4).all())


with checks.seeded(6):
    _m = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 10)).to(checks.DEVICE)
    _inputs = torch.randn(35, 12)
for _n, _bs in [(30, 10), (35, 8), (35, 4)]:
    _x = _inputs[:_n]
    _sizes = []
    _hook = _m.register_forward_hook(lambda module, args, out: _sizes.append(args[0].shape[0]))
    try:
        _ids = predict(_m, _x, batch_size=_bs)
    finally:
        _hook.remove()
    checks.expect(len(_sizes) > 0 and max(_sizes) <= _bs,
                  f"With batch_size={_bs}, the model was given {max(_sizes, default=0)} rows at once. "
                  "Feed the new data in chunks of at most batch_size rows: an input too large for "
                  "one forward pass must still work. (Tensor.split(n) makes chunks of n rows; "
                  "torch.chunk(x, n) makes n chunks, however large they are.)")
    checks.expect(sum(_sizes) == _n,
                  f"The model saw {sum(_sizes)} rows in total for {_n} inputs: every row must go "
                  "through the model exactly once.")
    checks.expect_tensor(_ids, f"The result of predict on {_n} rows with batch_size={_bs}", shape=(_n,), dtype=torch.int64,
                         device="cpu", why="predict returns one class id per row, as int64, on the CPU.")
    with torch.no_grad():
        _logits = torch.cat([_m(c.to(checks.DEVICE)).cpu() for c in _x.split(_bs)])
        _dim0 = torch.cat([_m(c.to(checks.DEVICE)).argmax(dim=0).cpu() for c in _x.split(_bs)])
    checks.expect(not (_dim0.shape == _ids.shape and torch.equal(_ids, _dim0)),
                  "Your predict took the argmax over the wrong dimension: for each class, the row with the "
                  "highest score. A row's prediction is the argmax over the class dimension of its own "
                  "logits; with batches as large as the number of classes, the shapes cannot warn you.")
    checks.expect(_is_argmax(_ids, _logits),
                  f"The class ids from predict on {_n} rows are not the model's predictions, in the order of "
                  "the rows. Take the argmax of each row's logits and join the chunks in order.")


class _Seen(BaseException):  # stops predict when the model gets its input on the wrong device
    pass


def _watch(module, args):
    _devices.append(args[0].device.type)
    if args[0].device.type != "meta":
        raise _Seen


_devices, _failure = [], None
_meta = nn.Sequential(nn.Linear(12, 10)).to("meta")  # a model elsewhere than its data, as on a GPU
_handle = _meta.register_forward_pre_hook(_watch)
try:
    _out = predict(_meta, _inputs[:6], batch_size=4)
except _Seen:
    _out = None
except NotImplementedError as _err:
    if "meta" not in str(_err):
        raise
    _out = None  # predict was copying the ids (or the model) off the meta device, which holds no data
    _failure = str(_err).strip().splitlines()[0]
finally:
    _handle.remove()
checks.expect(bool(_devices) or _failure is None,
              "With the model's parameters on another device than the inputs (the meta device here, standing "
              f"in for a GPU), predict failed before the model saw any input ({_failure}): it tried to move "
              "the model. Leave the model where it is (it belongs to the caller, and on a GPU it is large) "
              "and move each chunk to the device of the model's parameters.")
checks.expect(_devices and all(_d == "meta" for _d in _devices),
              f"With the model's parameters on another device than the inputs (the meta device here, standing "
              f"in for a GPU), predict gave the model its inputs on {', '.join(sorted(set(_devices))) or 'no device'}. "
              "Move each chunk to the device of the model's parameters before the forward pass.")
checks.expect(not (type(_out) is torch.Tensor and _out.device.type != "cpu"),
              f"With the model on another device (the meta device here, standing in for a GPU), predict returned "
              f"the class ids on {_out.device if type(_out) is torch.Tensor else ''}, not on the CPU. Bring the ids "
              "back with .cpu(): the code that uses them expects them there, and they no longer hold on to "
              "accelerator memory.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-predict-behaviour" points=3
# Hidden tests: dropout detected by repeated predictions, batch-norm buffers, requires_grad
# flags and every submodule's mode checked before and after (a mixed-mode model too, and a
# forward pass that fails), gradient recording watched through the outputs and afterwards.
### BEGIN HIDDEN TESTS
with checks.seeded(7):
    _m = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
                       nn.Linear(32, 10)).to(checks.DEVICE)
    with torch.no_grad():
        for _ in range(5):
            _m(torch.randn(64, 12, device=checks.DEVICE) * 2 - 1)   # non-trivial running statistics
    _x = torch.randn(40, 12)
_m.train()
with torch.no_grad():
    _ref = copy.deepcopy(_m).eval()
    _logits = torch.cat([_ref(c.to(checks.DEVICE)).cpu() for c in _x.split(16)])
_picked = lambda ids: _logits.gather(1, ids.reshape(-1, 1)).squeeze(1)
_before = checks.module_state(_m)
_learns = {_n: _p.requires_grad for _n, _p in _m.named_parameters()}
_tracked = []
_in_training = []   # whether any submodule was in training mode at each forward pass


def _record(module, args, out):  # returns None: a forward hook that returns a value replaces the output
    _tracked.append(out.requires_grad)
    _in_training.append(any(sub.training for sub in module.modules()))


_hook = _m.register_forward_hook(_record)
try:
    with checks.seeded(8), torch.enable_grad():      # recording on, as in the middle of training
        _ids1 = predict(_m, _x, batch_size=16)
        _ids2 = predict(_m, _x, batch_size=16)
        _still_on = torch.is_grad_enabled()
finally:
    _hook.remove()
_changed = checks.changed_state(_before, checks.module_state(_m))
_frozen = [_n for _n, _p in _m.named_parameters() if _p.requires_grad != _learns[_n]]
checks.expect_tensor(_ids1, "The result of predict(model, x)", shape=(40,), dtype=torch.int64, device="cpu",
                     why="predict returns one class id per row, as int64, on the CPU.")
_right = torch.equal(_ids1, _ids2) and bool((_picked(_ids1) >= _logits.max(dim=1).values - 1e-4).all())
checks.expect(_right or not any(_in_training),
              "The class ids from predict change from one call to the next, or differ from the model's "
              "eval-mode predictions: the model ran in training mode, so dropout zeroed random units "
              "and batch norm normalised with each chunk's own statistics. Predict in eval mode.")
checks.expect(_right,
              "The class ids from predict change from one call to the next, or differ from the model's "
              "predictions, although the model ran in eval mode: each id must be the position of the "
              "largest logit of its own row (argmax over the classes), the chunks joined in order.")
checks.expect(not any(c.startswith("buffers") for c in _changed),
              "Your predict changed batch norm's running statistics: in training mode every forward pass "
              "updates them. Predict in eval mode.")
checks.expect(not any(_tracked),
              "During predict the model's outputs required grad: autograd recorded a graph for every "
              "chunk for nothing. Run the forward passes under torch.inference_mode() or torch.no_grad().")
checks.expect(_still_on,
              "After predict returned, gradient recording was switched off for the whole program "
              "(torch.set_grad_enabled(False) stays in force after the function ends), so the training "
              "that follows records nothing. Use a `with torch.inference_mode():` or "
              "`with torch.no_grad():` block, which switches recording back on when it ends.")
checks.expect(not _frozen,
              f"After predict, requires_grad of {len(_frozen)} parameters was no longer what it was: the model "
              "is frozen for any training that follows. requires_grad says what learns; to stop "
              "recording, use torch.inference_mode() or torch.no_grad() and leave the parameters alone.")
checks.expect(not any(c.startswith("training") for c in _changed),
              "Your predict left a training model in eval mode. Restore the mode the model had when "
              "predict was called.")
checks.expect(not _changed, f"Your predict changed {', '.join(_changed[:3])}: inference must leave the model untouched.")

_m.train()
_m[1].eval()                      # batch norm frozen, the rest training
_before = checks.module_state(_m)
predict(_m, _x, batch_size=16)
_modes = [c.split(": ", 1)[1] for c in checks.changed_state(_before, checks.module_state(_m)) if c.startswith("training")]
_modes = [f"submodule {n} ({type(_m.get_submodule(n)).__name__})" if n != "(the model)" else "the model" for n in _modes]
checks.expect(not _modes,
              f"On a mixed-mode model (batch norm frozen in eval mode, the rest training), predict "
              f"changed the mode of {', '.join(_modes)}. Restore the flag of every submodule.")


def _fail_second(module, args, out):  # the second chunk's forward pass fails
    _calls.append(1)
    if len(_calls) == 2:
        raise ValueError("the forward pass of the second chunk failed")


_calls = []
_before = checks.module_state(_m)
_hook = _m.register_forward_hook(_fail_second)
try:
    predict(_m, _x, batch_size=16)
except NotImplementedError:
    raise
except Exception:                 # the error itself may come out as it is, or wrapped in another
    pass
finally:
    _hook.remove()
_modes = [c for c in checks.changed_state(_before, checks.module_state(_m)) if c.startswith("training")]
checks.expect(not _modes,
              f"When a forward pass failed in the middle of predict, the mode of {len(_modes)} of the model's "
              "modules was not restored. Restore the modes on every way out, with try/finally or a "
              "with-block (your eval_mode does this).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - `train()` and `eval()` set a flag on every submodule; dropout and batch norm read it.
#   Evaluating in training mode gives random, batch-dependent numbers and edits the model's
#   buffers.
# - `no_grad` and `inference_mode` stop the recording of the graph; they do not change any
#   layer's mode, just as `eval()` does not stop the recording. Evaluation needs both.
# - Code that evaluates leaves the model as it found it: every submodule's mode, parameters,
#   buffers, gradients and optimiser state, even when it fails halfway.
# - Metrics are averages over samples: an evaluation loader yields each sample once, in
#   order, and a loop weights each batch by its size.
# - Predictions are argmaxes over the class dimension, computed in batches, returned on the
#   CPU.
#
# Next, in **08 · Saving and loading**, you will store what a model has learned (its
# parameters *and* its buffers, such as the running statistics you protected here) and
# resume training exactly where it stopped.
