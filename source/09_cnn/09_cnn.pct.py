# %% [markdown] role="prose" grade_id="title"
# # 09 · Convolutional networks
#
# **Time:** about 1 h 45 min of work (3,100 words to read, 6 exercises). Run top to bottom, the
# finished notebook takes about 4 s.
#
# An MLP treats an image as a bag of numbers: shuffle the pixels the same way in every image
# and it learns just as well, because nothing in it knows which pixels are neighbours. A
# **convolution** does know. It slides one small set of weights, a *kernel*, over the image
# and computes the same weighted sum at every position, so a stroke is detected the same way
# wherever it appears, with a handful of parameters instead of one weight per pixel pair.
# Stack a few of these, shrink the image between them, and each later layer looks at a wider
# patch of the original: edges become strokes, strokes become digits.
#
# **By the end of this notebook you will be able to:**
# - compute the output size of a convolution or a pooling layer from its kernel, padding,
#   stride and dilation, before PyTorch does;
# - say what layout PyTorch's image layers expect, `(N, C, H, W)`, and what happens when an
#   image arrives channels-last;
# - work out the receptive field of a stack of layers;
# - build a LeNet-style network whose classifier head adapts to the input size instead of
#   relying on a hard-coded flattened size;
# - augment training images with `torchvision.transforms.v2`, per image and for training only;
# - train the network on real handwritten digits to a validation-accuracy target.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)


# %% [markdown] role="prose" grade_id="md-shapes"
# ## 1 · How big is the output?
#
# `nn.Conv2d(in_channels, out_channels, kernel_size)` holds `out_channels` kernels, each of
# shape `(in_channels, k, k)`. At every position where a kernel fits, it multiplies the patch
# under it element by element, sums, adds a bias: one output number per kernel per position.
# So the output size along one axis is **the number of positions where the kernel fits**.
# Four settings change that count:
#
# - **kernel size `k`**: a kernel of width `k` fits at `size − k + 1` positions;
# - **padding `p`**: adds `p` zeros on *each* side, so the axis grows by `2p` before the
#   kernel slides (`padding=1` with `k=3` keeps the size: "same" padding);
# - **stride `s`**: the kernel jumps `s` positions at a time. The positions are
#   `0, s, 2s, ...` as long as the kernel still fits; a last step that would overhang is
#   *dropped*, so the count is rounded **down**;
# - **dilation `d`**: spreads the kernel's taps `d` apart, so a kernel of `k` taps covers
#   `d·(k − 1) + 1` positions (with `d=1`, just `k`).
#
# Put together, for an input of size `size`:
#
# `out = floor((size + 2p − d·(k − 1) − 1) / s) + 1`
#
# Height and width are computed separately, each with its own settings.
#
# **Pooling** slides a window the same way but takes the maximum (`MaxPool2d`) or the mean
# (`AvgPool2d`) of each patch, separately for each channel, and has no weights. Two of its
# defaults differ from a convolution's: its stride defaults to **the kernel size** (windows
# that do not overlap, so `MaxPool2d(2)` halves the size), and `ceil_mode=True` rounds **up**
# instead of down, keeping a last, partial window. One exception keeps that window honest: a
# window that would start in the right-hand padding, or past the input, is still dropped
# (so with ceil mode, if `(out − 1)·s ≥ size + p`, the last window goes).
#
# Computing sizes by hand is not a ritual. The layer after the last convolution is an
# `nn.Linear` whose `in_features` must equal channels × height × width of what arrives, and
# the error you get when it does not is about matrix shapes, far from its cause.
#
# ### Exercise 1 · Output sizes by formula
#
# Write, with integer arithmetic only (no layers, no tensors):
#
# - `conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1)`: the output size
#   of a convolution along one axis;
# - `pool_output_size(size, kernel_size, stride=None, padding=0, ceil_mode=False)`: the same
#   for a pooling layer, with PyTorch's defaults (`stride=None` means the kernel size) and
#   both rounding modes.
#
# Both return a Python `int`. The hidden tests compare them with PyTorch's own layers over
# many settings.
#
# <details><summary>Hint 1</summary>
#
# Python's `//` on non-negative integers is floor division. For rounding up, `-(-a // b)`
# is the ceiling of `a / b` without any floats.
# </details>
#
# <details><summary>Hint 2</summary>
#
# First work out how many positions the kernel covers (dilation included), then how much room
# is left for it to move in the padded input, then how many jumps of `s` fit in that room,
# and do not forget the first position.
# </details>
#
# <details><summary>Hint 3</summary>
#
# For ceil mode: round up, then drop the last window if it would start at or beyond
# `size + padding` (the input plus its left padding).
# </details>

# %% role="answer" grade_id="output-sizes"
def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    """Output size along one axis of a convolution, as a Python int."""
    ### BEGIN SOLUTION
    span = dilation * (kernel_size - 1) + 1
    return (size + 2 * padding - span) // stride + 1
    ### END SOLUTION


def pool_output_size(size, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Output size along one axis of a pooling layer (stride defaults to kernel_size), as an int."""
    ### BEGIN SOLUTION
    if stride is None:
        stride = kernel_size
    room = size + 2 * padding - kernel_size
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out
    ### END SOLUTION


# %% role="test" grade_id="test-output-sizes-sanity" points=1
_n = conv_output_size(10, 3)
checks.expect(type(_n) is int,
              f"`conv_output_size` should return a Python int, but it returned {checks.describe(_n)}. "
              "Sizes are whole numbers: use integer arithmetic (//), not /, math.floor of a float, or tensors.")
_m = pool_output_size(10, 2)
checks.expect(type(_m) is int,
              f"`pool_output_size` should return a Python int, but it returned {checks.describe(_m)}.")
print(f"conv_output_size(10, 3) = {_n}, pool_output_size(10, 2) = {_m}")


# %% role="test" grade_id="test-conv-size" points=3
# Hidden tests compare conv_output_size with nn.Conv2d (on the meta device) for many sizes,
# kernels, paddings, strides and dilations, and check that it computes without torch.
### BEGIN HIDDEN TESTS
def _torch_conv_size(size, k, s, p, d):
    _layer = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, device="meta")
    return _layer(torch.empty(1, 1, size, 1 + 2 * d * (k - 1), device="meta")).shape[2]


_groups = [
    ("kernel size only", [(size, k, 1, 0, 1) for size in (5, 8, 13) for k in (1, 2, 3, 5)],
     "Without padding, stride or dilation, a kernel of width k fits at size - k + 1 positions."),
    ("padding", [(size, k, 1, p, 1) for size in (5, 8) for k in (3, 5) for p in (1, 2)],
     "Padding p adds p zeros on each side of the axis, so the padded input is size + 2p long."),
    ("stride", [(size, k, s, p, 1) for size in (7, 8, 13) for k in (2, 3) for s in (2, 3) for p in (0, 1)],
     "With stride s the kernel jumps s positions at a time, and a last step that would overhang the "
     "padded input is dropped: count the jumps with floor division, then add the first position."),
    ("dilation", [(size, k, s, p, d) for size in (9, 13) for k in (2, 3) for s in (1, 2) for p in (0, 2)
                  for d in (2, 3)],
     "Dilation d spreads the kernel's taps d apart, so a kernel of k taps covers d*(k - 1) + 1 positions."),
]
for _what, _cases, _why in _groups:
    for _size, _k, _s, _p, _d in _cases:
        _got, _counter = checks.count_torch_calls(conv_output_size, _size, _k, stride=_s, padding=_p,
                                                  dilation=_d)
        checks.expect(_counter.total == 0,
                      "`conv_output_size` called torch to find the size: it ran a layer or built tensors. The "
                      "point is to know the size before PyTorch does: compute it from the formula of section 1 "
                      "with integer arithmetic.")
        checks.expect(type(_got) is int, f"`conv_output_size` should return an int, but it returned "
                                         f"{checks.describe(_got)}.")
        checks.expect(_got == _torch_conv_size(_size, _k, _s, _p, _d),
                      f"conv_output_size({_size}, kernel_size={_k}, stride={_s}, padding={_p}, dilation={_d}) "
                      f"is {_got}, which is not the size nn.Conv2d produces (this case tests {_what}). {_why}")
### END HIDDEN TESTS

# %% role="test" grade_id="test-pool-size" points=2
# Hidden tests compare pool_output_size with nn.MaxPool2d (on the meta device): default stride,
# explicit strides, padding, and ceil mode.
### BEGIN HIDDEN TESTS
def _torch_pool_size(size, k, s, p, ceil):
    _layer = nn.MaxPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    return _layer(torch.empty(1, 1, size, 2 * k, device="meta")).shape[2]


_groups = [
    ("the default stride", [(size, k, None, 0, False) for size in (6, 7, 8, 9) for k in (2, 3)],
     "A pooling layer's stride defaults to its kernel size (windows that do not overlap), not to 1."),
    ("stride and padding", [(size, k, s, p, False) for size in (7, 8, 10) for k in (2, 3) for s in (1, 2)
                            for p in (0, 1) if 2 * p <= k],
     "With ceil_mode=False pooling counts positions exactly like a convolution: floor, then one more."),
    ("ceil mode", [(size, k, s, p, True) for size in (5, 6, 7, 8, 9) for k in (2, 3) for s in (2, 3)
                   for p in (0, 1) if 2 * p <= k],
     "ceil_mode=True rounds the number of jumps up, keeping a last partial window, except a window that "
     "would start at or past size + padding, which is dropped (see Hint 3)."),
]
for _what, _cases, _why in _groups:
    for _size, _k, _s, _p, _ceil in _cases:
        _got, _counter = checks.count_torch_calls(pool_output_size, _size, _k, stride=_s, padding=_p,
                                                  ceil_mode=_ceil)
        checks.expect(_counter.total == 0,
                      "`pool_output_size` called torch to find the size. Compute it from the formula of "
                      "section 1 with integer arithmetic.")
        checks.expect(type(_got) is int, f"`pool_output_size` should return an int, but it returned "
                                         f"{checks.describe(_got)}.")
        checks.expect(_got == _torch_pool_size(_size, _k, _s, _p, _ceil),
                      f"pool_output_size({_size}, kernel_size={_k}, stride={_s}, padding={_p}, "
                      f"ceil_mode={_ceil}) is {_got}, which is not the size nn.MaxPool2d produces (this case "
                      f"tests {_what}). {_why}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-layout"
# ## 2 · Channels first, and what a layer costs
#
# PyTorch's image layers take a batch as **`(N, C, H, W)`**: images, then channels, then
# rows, then columns. Image files and most image libraries hand you **channels-last**
# `(H, W, C)` instead (an RGB photo is 480 rows of 640 pixels of 3 colours). `nn.Conv2d`
# does not guess: it reads dimension 1 as the channels. Handed `(N, H, W, C)`, it sees `H`
# channels, and the result is an error if `H` differs from `in_channels`, or, worse, a silent
# mix of rows and colours when they happen to agree. Convert once, where the data enters,
# with `permute(0, 3, 1, 2)` (02 showed why `view` or `reshape` cannot do this).
#
# A convolution's weight has shape `(out_channels, in_channels, k, k)`, plus one bias per
# output channel. That count does not depend on the image size: the same kernel is used at
# every position. This *weight sharing* is why a convolution is cheap in parameters and
# expensive in arithmetic.
#
# ### Exercise 2 · Predict, then verify
#
# **Without running anything**, fill in `shape_predictions`: for each layer and input below,
# the output shape as a tuple, or the string `"error"` if PyTorch refuses it. Under
# `"params"`, give the number of parameters (weights and biases) of layer (a).
#
# | key | layer | input shape |
# |---|---|---|
# | `"a"` | `nn.Conv2d(3, 16, kernel_size=5)` | `(8, 3, 32, 32)` |
# | `"b"` | `nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)` | `(8, 3, 32, 32)` |
# | `"c"` | `nn.MaxPool2d(2)` | `(8, 16, 15, 15)` |
# | `"d"` | `nn.Conv2d(3, 8, kernel_size=3, dilation=2)` | `(8, 3, 32, 32)` |
# | `"e"` | `nn.Conv2d(3, 16, kernel_size=3)` | `(8, 32, 32, 3)` (channels-last) |
#
# <details><summary>Hint 1</summary>
#
# The channel count of the output is the layer's `out_channels` for a convolution, and the
# input's channel count for pooling. The batch size never changes.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For (e), which dimension does `Conv2d` read as the channels, and how many channels does this
# layer accept?
# </details>

# %% role="answer" grade_id="shape-predictions"
shape_predictions = {
    "a": None,       # a tuple of four ints, or "error"
    "b": None,
    "c": None,
    "d": None,
    "e": None,
    "params": None,  # an int
}
### BEGIN SOLUTION
shape_predictions = {
    "a": (8, 16, 28, 28),
    "b": (8, 16, 16, 16),
    "c": (8, 16, 7, 7),
    "d": (8, 8, 28, 28),
    "e": "error",
    "params": 1216,
}
### END SOLUTION

# %% role="test" grade_id="test-shape-predictions" points=3
# Hidden tests run the five layers and count the parameters of (a), then compare.
checks.expect(isinstance(shape_predictions, dict)
              and set(shape_predictions) == {"a", "b", "c", "d", "e", "params"},
              "`shape_predictions` should be a dict with exactly the keys 'a', 'b', 'c', 'd', 'e' and 'params'.")
### BEGIN HIDDEN TESTS
_cases = {
    "a": (nn.Conv2d(3, 16, kernel_size=5), (8, 3, 32, 32),
          "Without padding a kernel of 5 loses 4 positions along each axis; the channels become out_channels."),
    "b": (nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1), (8, 3, 32, 32),
          "Padding 1 keeps a 3-wide kernel's output at the input size; stride 2 then keeps every second position."),
    "c": (nn.MaxPool2d(2), (8, 16, 15, 15),
          "MaxPool2d(2) has stride 2 by default and rounds down: an odd last row or column is dropped. "
          "Pooling keeps the channels."),
    "d": (nn.Conv2d(3, 8, kernel_size=3, dilation=2), (8, 3, 32, 32),
          "A dilated kernel covers d*(k - 1) + 1 positions, so it loses more of the border than its k taps suggest."),
    "e": (nn.Conv2d(3, 16, kernel_size=3), (8, 32, 32, 3),
          "Conv2d reads dimension 1 as the channels, whatever you meant (see Hint 2)."),
}
for _key, (_layer, _shape, _why) in _cases.items():
    _layer = _layer.to(checks.DEVICE)
    try:
        _truth = tuple(_layer(torch.zeros(_shape, device=checks.DEVICE)).shape)
    except RuntimeError:
        _truth = "error"
    _said = shape_predictions[_key]
    if isinstance(_said, list):
        _said = tuple(_said)
    checks.expect(_said == "error" or (type(_said) is tuple and all(type(_v) is int for _v in _said)),
                  f"Your prediction for ({_key}) should be a tuple of ints or the string 'error', but it is "
                  f"{checks.describe(_said)}.")
    checks.expect(_said == _truth,
                  f"Your prediction for ({_key}) is not what PyTorch does with a {_shape} input. {_why}")
_said = shape_predictions["params"]
_truth = sum(_p.numel() for _p in nn.Conv2d(3, 16, kernel_size=5).parameters())
checks.expect(type(_said) is int, f"Your parameter count should be an int, but it is {checks.describe(_said)}.")
checks.expect(_said == _truth,
              "Your parameter count for layer (a) is not right. Each of the out_channels kernels has one weight per "
              "input channel per kernel position, and each output channel has one bias; the image size does not "
              "enter (weight sharing).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-receptive"
# ## 3 · What a unit can see: the receptive field
#
# One output number of a 3×3 convolution depends on a 3×3 patch of its input. Put a second
# 3×3 convolution on top and each of *its* outputs depends on a 3×3 patch of the first layer's
# outputs, which together read a 5×5 patch of the image. That patch is the unit's
# **receptive field**: the part of the input that can influence it at all. A unit cannot
# recognise a digit it only sees a corner of, so the receptive field of the last
# convolutional layer says whether the network *can* look at whole shapes.
#
# Along one axis, walk the stack from the input upwards and keep two numbers: the receptive
# field `r` (starting at 1: a pixel sees itself) and the **jump** `j`, the distance in input
# pixels between two neighbouring units of the current layer (starting at 1). A layer with
# kernel `k`, stride `s` and dilation `d` covers `d·(k − 1) + 1` of the current layer's units,
# which lie `j` input pixels apart, so:
#
# - `r` grows by `d·(k − 1)·j`,
# - then `j` is multiplied by `s`.
#
# Strides and pooling are what make receptive fields grow fast: every layer after a stride
# of 2 adds twice as much. Dilation grows them without shrinking the image.
#
# ### Exercise 3 · `receptive_field`
#
# Write `receptive_field(layers)`: `layers` is a list of `(kernel_size, stride, dilation)`
# tuples, from the input upwards (a max-pooling layer is a layer like any other, with
# dilation 1). Return the receptive field along one axis of one unit of the last layer, as an
# int. The hidden test measures receptive fields with autograd: it backpropagates from one
# output unit and sees which input pixels get a non-zero gradient.
#
# <details><summary>Hint 1</summary>
#
# Two 3×3 convolutions, stride 1: 5. Three: 7. A 2×2 pooling with stride 2 then a 3×3
# convolution: 2 + 2·2 = 6.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Update `r` with the jump of the layers *below* the current one, then update the jump. The
# order of the two updates matters.
# </details>

# %% role="answer" grade_id="receptive-field"
def receptive_field(layers):
    """Receptive field along one axis of the last of layers, a list of (kernel_size, stride, dilation)."""
    ### BEGIN SOLUTION
    field, jump = 1, 1
    for kernel_size, stride, dilation in layers:
        field += dilation * (kernel_size - 1) * jump
        jump *= stride
    return field
    ### END SOLUTION


# %% role="test" grade_id="test-receptive-field-sanity" points=1
_r = receptive_field([(3, 1, 1)])
checks.expect(type(_r) is int, f"`receptive_field` should return an int, but it returned {checks.describe(_r)}.")
checks.expect(_r == 3, f"receptive_field([(3, 1, 1)]) is {_r}: one 3-wide kernel sees 3 input pixels.")
print("receptive_field([(3, 1, 1)]) =", _r)


# %% role="test" grade_id="test-receptive-field" points=3
# Hidden tests measure the receptive field of stacks of 1-D convolutions with autograd (the
# input pixels that get a gradient from one output unit) and compare.
### BEGIN HIDDEN TESTS
def _measured_field(layers):
    _stack = nn.Sequential(*[nn.Conv1d(1, 1, _k, stride=_s, dilation=_d, bias=False) for _k, _s, _d in layers])
    with torch.no_grad():
        for _conv in _stack:
            _conv.weight.fill_(1.0)
    _stack = _stack.to(checks.DEVICE)
    _x = torch.ones(1, 1, 400, device=checks.DEVICE, requires_grad=True)
    _stack(_x)[0, 0, 0].backward()
    return int((_x.grad[0, 0] != 0).nonzero().max().item()) + 1


_groups = [
    ("stride 1, no dilation", [[(3, 1, 1)] * 2, [(5, 1, 1), (3, 1, 1), (3, 1, 1)], [(1, 1, 1), (3, 1, 1)]],
     "With stride 1 every layer of kernel k widens the field by k - 1."),
    ("strides", [[(3, 2, 1), (3, 1, 1)], [(2, 2, 1), (3, 1, 1), (2, 2, 1), (3, 1, 1)],
                 [(3, 1, 1), (3, 2, 1), (3, 2, 1), (3, 1, 1)], [(5, 3, 1), (3, 1, 1)]],
     "A stride spreads the units of every later layer apart: the jump j between neighbours is multiplied by s, "
     "and each later layer widens the field by (k - 1) times the jump of the layers below it (see Hint 2)."),
    ("dilation", [[(3, 1, 1), (3, 1, 2), (3, 1, 4)], [(3, 2, 1), (3, 1, 2)]],
     "Dilation d spreads a kernel's taps d units apart: it widens the field by d*(k - 1) times the jump."),
]
for _what, _stacks, _why in _groups:
    for _layers in _stacks:
        _got = receptive_field(list(_layers))
        checks.expect(type(_got) is int,
                      f"`receptive_field` should return an int, but it returned {checks.describe(_got)}.")
        checks.expect(_got == _measured_field(_layers),
                      f"receptive_field({_layers}) is {_got}, which is not the field autograd measures (this "
                      f"stack tests {_what}). {_why}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-lenet"
# ## 4 · A LeNet-style network, and the flattened size
#
# The classic layout of a small image classifier, LeNet's, has two parts:
#
# - **features**: blocks of convolution, non-linearity and pooling. Each block keeps or adds
#   channels and shrinks height and width, trading *where* for *what*;
# - **a classifier head**: flatten each image's feature maps into one vector, then one or two
#   linear layers down to the class logits.
#
# The seam between the two is where networks break. `nn.Linear` needs its `in_features`
# when it is built, and that number is channels × height × width of the last feature maps,
# which depends on the input size. Written as a constant in the code, it works for the input
# size its author had in mind, and for no other. Worse, the usual way of flattening by hand,
# `x.view(-1, 512)`, keeps the *total* number of elements and lets `-1` absorb the rest: if
# each image really has 128 features, a batch of 8 images becomes 2 rows of 512, mixing four
# images into each row. The error, if any, comes later, from the loss, about batch sizes.
#
# Two habits avoid both problems:
#
# - flatten with **`nn.Flatten()`** (or `x.flatten(1)`): it keeps dimension 0, the batch, and
#   flattens everything else, whatever the sizes;
# - **compute** `in_features` from the input size when the model is built, with the formulas
#   of section 1, or by passing one dummy image through the features (under `no_grad`).
#
# ### Exercise 4 · Fix a broken snippet
#
# The next cell holds a LeNet-style network written for 16×16 images. Run it: it fails on the
# 8×8 digits of this notebook. Write `DigitsCNN(in_shape=(1, 8, 8), n_classes=10)` in the answer
# cell: a network of the same style (at least one convolution, then pooling, then a linear
# head) that maps a channels-first batch `(N, *in_shape)` to logits `(N, n_classes)` for
# **any** `in_shape` from 8×8 up, any number of channels, and any batch size, one included.
# No softmax at the end (05 says why). Section 6 trains it, so give it enough capacity: two
# blocks of 16 and 32 channels and a hidden layer of 64 units are plenty.
#
# <details><summary>Hint 1</summary>
#
# Read the broken network's error: which two numbers disagree, and where does each come from?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Your `conv_output_size` and `pool_output_size` give the height and width after the features,
# in `__init__`, before any image is seen. Or run `torch.zeros(1, *in_shape)` through the
# features inside `torch.no_grad()` and count the elements.
# </details>
#
# <details><summary>Hint 3</summary>
#
# `nn.Flatten()` keeps the batch dimension. `x.view(-1, n)`, `x.flatten()` and `x.squeeze()`
# can each move or drop it.
# </details>

# %% role="locked" grade_id="lenet-broken"
class BrokenCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 32 * 4 * 4)
        return self.fc2(F.relu(self.fc1(x)))


_broken = BrokenCNN()
print("16x16 images, batch of 8 ->", tuple(_broken(torch.zeros(8, 1, 16, 16)).shape))
print("8x8 images, batch of 8   ->", tuple(_broken(torch.zeros(8, 1, 8, 8)).shape), "(8 images, 2 rows of logits)")
try:
    F.cross_entropy(_broken(torch.zeros(8, 1, 8, 8)), torch.zeros(8, dtype=torch.int64))
except ValueError as _err:
    print("the loss then raises ValueError:", _err)


# %% role="answer" grade_id="digits-cnn"
class DigitsCNN(nn.Module):
    """A LeNet-style network from (N, *in_shape) images to (N, n_classes) logits."""

    def __init__(self, in_shape=(1, 8, 8), n_classes=10):
        super().__init__()
        ### BEGIN SOLUTION
        channels, height, width = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        for _ in range(2):
            height = pool_output_size(conv_output_size(height, 3, padding=1), 2)
            width = pool_output_size(conv_output_size(width, 3, padding=1), 2)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * height * width, 64), nn.ReLU(), nn.Linear(64, n_classes),
        )
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return self.head(self.features(x))
        ### END SOLUTION


# %% role="test" grade_id="test-digits-cnn-sanity" points=1
with checks.seeded(0):
    _model = DigitsCNN().to(checks.DEVICE)
    _out = _model(torch.rand(5, 1, 8, 8, device=checks.DEVICE))
checks.expect_tensor(_out, "The output of DigitsCNN() for a batch of 5 images of shape (1, 8, 8)", shape=(5, 10),
                     dtype=torch.float32,
                     why="The network maps each channels-first image to 10 logits; the batch dimension must "
                         "survive the flattening (see Hint 3).")
checks.expect(any(isinstance(_m, nn.Conv2d) for _m in _model.modules()),
              "DigitsCNN has no nn.Conv2d: this exercise is about a convolutional network.")
print("DigitsCNN maps (5, 1, 8, 8) to", tuple(_out.shape))

# %% role="test" grade_id="test-digits-cnn" points=3
# Hidden tests build DigitsCNN for other input shapes and channel counts, run batches of
# several sizes (one included), and run it on the meta device.
### BEGIN HIDDEN TESTS
for _in_shape, _classes in [((1, 8, 8), 10), ((1, 12, 12), 10), ((3, 16, 16), 4), ((2, 9, 11), 7)]:
    with checks.seeded(1):
        _model = DigitsCNN(in_shape=_in_shape, n_classes=_classes).to(checks.DEVICE)
    checks.expect(any(isinstance(_m, nn.Conv2d) for _m in _model.modules()),
                  "DigitsCNN has no nn.Conv2d: this exercise is about a convolutional network.")
    for _n in (1, 6):
        try:
            _out = _model(torch.rand(_n, *_in_shape, device=checks.DEVICE))
        except RuntimeError as _err:
            checks.expect(False,
                          f"DigitsCNN(in_shape={_in_shape}, n_classes={_classes}) fails on a batch of {_n} "
                          f"images: {_err}. Three things must adapt to in_shape and to the batch: the head's "
                          "in_features must be computed from in_shape (channels x height x width after the "
                          "features), not written as a constant (Hint 2); the first layer must follow in_shape's "
                          "channel count; and the flattening must keep the batch dimension, even for a single "
                          "image (Hint 3).")
        checks.expect_tensor(_out, f"The output of DigitsCNN(in_shape={_in_shape}, n_classes={_classes}) for a "
                                   f"batch of {_n}", shape=(_n, _classes), dtype=torch.float32,
                             why="Flatten each image separately and keep the batch dimension: nn.Flatten() does, "
                                 "while view(-1, n) with the wrong n, flatten() and squeeze() move or drop it "
                                 "(see Hint 3). The output has one row per image and n_classes columns.")
    _x = torch.rand(3, *_in_shape, device=checks.DEVICE)
    _model.eval()
    with torch.no_grad():
        _full = _model(_x)
        _alone = _model(_x[1:2])
    checks.expect_close(_alone, _full[1:2], f"DigitsCNN's logits for one image run alone", rtol=1e-4, atol=1e-5,
                        why="in eval mode an image's logits must not depend on the other images of its batch. "
                            "If they do, the flattening mixes images: flatten with nn.Flatten(), which keeps "
                            "dimension 0.")
    checks.expect(not torch.allclose(_full.sum(dim=1), torch.ones(3, device=checks.DEVICE), atol=1e-4),
                  "Each row of DigitsCNN's output sums to 1: the network ends with a softmax. Return logits: "
                  "CrossEntropyLoss applies log_softmax itself.")
_meta = DigitsCNN(in_shape=(1, 8, 8)).to("meta")
try:
    _out = _meta(torch.empty(4, 1, 8, 8, device="meta"))
except (RuntimeError, NotImplementedError) as _err:
    checks.expect(False, f"DigitsCNN fails when the model and its input live on the meta device: {_err}. forward "
                         "must create nothing on a fixed device; everything it computes should follow the input "
                         "and the parameters.")
checks.expect(_out.device.type == "meta" and tuple(_out.shape) == (4, 10),
              "DigitsCNN's output on the meta device is not a (4, 10) meta tensor: forward should only use its "
              "input and its layers.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-augment"
# ## 5 · Augmentation: more training images for free
#
# A digit shifted one pixel to the right, or tilted a few degrees, is still the same digit.
# **Data augmentation** shows the model such variations of its training images, drawn afresh
# at random every time an image is used, so it cannot memorise exact pixels and has to learn
# what stays the same. `torchvision.transforms.v2` holds the usual ones; each takes a tensor
# image `(C, H, W)` and returns one of the same shape:
#
# ```python
# v2.RandomAffine(degrees=10, translate=(0.1, 0.1))   # rotate up to ±10°, shift up to 10 %
# v2.RandomHorizontalFlip(p=0.5)                      # mirror left-right, half the time
# v2.Compose([t1, t2])                                # one after the other
# ```
#
# Three rules decide whether augmentation helps or quietly hurts:
#
# - **Only changes that keep the label.** A mirrored cat is a cat; a mirrored 2 is not a
#   digit anyone writes, and a mirrored 5 starts to look like a 2. On 8×8 digits a shift of
#   more than a pixel or two pushes strokes off the image.
# - **Per image, every time.** Applied in the Dataset's `__getitem__`, the transform draws
#   new random parameters for every image at every epoch. Applied once to the whole training
#   tensor up front, it is a fixed distortion, not a fresh variation; applied to a batch
#   tensor `(N, C, H, W)`, a v2 transform draws *one* set of parameters and moves every image
#   of the batch the same way.
# - **Training only.** Validation measures how the model does on real images, the same ones
#   every time. Augmented validation images change the measurement at every run and measure
#   the wrong thing. Validation batches are not shuffled either (06).
#
# The next cell loads the 1,797 scikit-learn digits as channels-first float images
# `(N, 1, 8, 8)` in [0, 1] with `int64` labels, split 1,437 / 360 with a fixed seed, and
# defines `ImageDataset(images, labels, transform=None)`, which applies `transform` to one
# image in `__getitem__`, and `evaluate_accuracy(model, images, labels)`.
#
# ### Exercise 5 · Training-only augmentation
#
# - `make_train_transform()` returns a v2 transform for one `(1, 8, 8)` float digit image
#   that keeps its label: random small shifts and rotations, no flips.
# - `make_loaders(x_train, y_train, x_val, y_val, train_transform, batch_size=64, seed=0)`
#   returns `(train_loader, val_loader)`: training batches drawn in a shuffled order seeded
#   with `seed` and augmented with `train_transform` image by image; validation batches of
#   the real images, all of them, in their order.
#
# <details><summary>Hint 1</summary>
#
# `v2.RandomAffine` with up to about 10 degrees and a translation of about 0.1 (under a pixel
# on an 8×8 image, which rounds to 0 or 1 pixel) is a good start.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Two `ImageDataset`s, one with the transform and one without. `DataLoader(...,
# shuffle=True, generator=torch.Generator().manual_seed(seed))` makes the order repeatable.
# </details>

# %% role="locked" grade_id="digits-data"
from sklearn.datasets import load_digits


def load_digit_images(device, seed=0):
    """Images as (N, 1, 8, 8) float32 in [0, 1] and int64 labels, split 1,437 / 360 with a fixed seed."""
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    train, val = order[:1437], order[1437:]
    return x[train].to(device), y[train].to(device), x[val].to(device), y[val].to(device)


class ImageDataset(Dataset):
    """(image, label) pairs; transform, if given, is applied to each image as it is fetched."""

    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


def evaluate_accuracy(model, images, labels, batch_size=256):
    """The fraction of images whose highest logit is the right class (eval mode, no graph, mode restored)."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size])
            correct += (logits.argmax(dim=1) == labels[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(images)


x_train, y_train, x_val, y_val = load_digit_images(checks.DEVICE)
print(f"training images {tuple(x_train.shape)}, validation images {tuple(x_val.shape)}")


# %% role="answer" grade_id="augment"
def make_train_transform():
    """A label-preserving random transform for one (1, 8, 8) float digit image."""
    ### BEGIN SOLUTION
    return v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
    ### END SOLUTION


def make_loaders(x_train, y_train, x_val, y_val, train_transform, batch_size=64, seed=0):
    """(train_loader, val_loader): shuffled, augmented training batches; plain validation batches in order."""
    ### BEGIN SOLUTION
    train_set = ImageDataset(x_train, y_train, transform=train_transform)
    val_set = ImageDataset(x_val, y_val)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(seed))
    val_loader = DataLoader(val_set, batch_size=batch_size)
    return train_loader, val_loader
    ### END SOLUTION


# %% role="test" grade_id="test-augment-sanity" points=1
_t = make_train_transform()
with checks.seeded(0):
    _img = _t(x_train[0])
checks.expect_tensor(_img, "make_train_transform()(image) for a (1, 8, 8) image", shape=(1, 8, 8),
                     dtype=torch.float32, why="An augmentation returns an image of the same shape and dtype.")
_train_loader, _val_loader = make_loaders(x_train, y_train, x_val, y_val, _t)
_xb, _yb = next(iter(_train_loader))
checks.expect_tensor(_xb, "A training batch's images", shape=(64, 1, 8, 8), dtype=torch.float32,
                     why="Training batches hold batch_size channels-first images.")
checks.expect_tensor(_yb, "A training batch's labels", shape=(64,), dtype=torch.int64)
print("a training batch:", tuple(_xb.shape), "images and", tuple(_yb.shape), "labels")

# %% role="test" grade_id="test-train-transform" points=2
# Hidden tests apply the transform many times to test images: the result must vary from draw to
# draw, keep the shape, and keep the label (no mirroring, no large shifts).
### BEGIN HIDDEN TESTS
_t = make_train_transform()
_img = torch.zeros(1, 8, 8, device=checks.DEVICE)
_img[0, 2:6, 1:3] = 1.0  # a bar on the left-hand side
_cols = torch.arange(8, device=checks.DEVICE, dtype=torch.float32)
_outs = []
with checks.seeded(0):
    for _ in range(40):
        _o = _t(_img)
        checks.expect_tensor(_o, "The transform's output for a (1, 8, 8) image", shape=(1, 8, 8),
                             dtype=torch.float32, why="An augmentation returns an image of the same shape and dtype.")
        _outs.append(_o)
_distinct = len({tuple(_o.flatten().tolist()) for _o in _outs})
checks.expect(_distinct >= 5,
              "make_train_transform() gives (almost) the same image every time: there is no randomness in it. "
              "Augmentation draws a new random variation each time an image is used; use random transforms such "
              "as v2.RandomAffine (see Hint 1).")
for _o in _outs:
    _mass = _o[0].sum()
    checks.expect(_mass > 0.5,
                  "The transform sometimes moves the digit (almost) entirely off the 8x8 image: the label is lost. "
                  "Keep shifts to a pixel or so and rotations small.")
    _centre = (_o[0].sum(dim=0) * _cols).sum() / _mass
    checks.expect(_centre < 3.5,
                  "The transform sometimes mirrors the image or moves a stroke from the left half to the right "
                  "half. A mirrored or heavily shifted digit is no longer the digit its label says: augment only "
                  "with changes that keep the label (no flips, small shifts).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-loaders" points=3
# Hidden tests hand make_loaders a transform that records its calls, then check: augmentation image
# by image on training data only, a seeded shuffle for training, every validation image in order.
### BEGIN HIDDEN TESTS
class _SpyTransform:
    def __init__(self):
        self.shapes = []

    def __call__(self, image):
        self.shapes.append(tuple(image.shape))
        return image + 1.0


with checks.seeded(2):
    _xt = torch.rand(150, 1, 8, 8, device=checks.DEVICE)
    _yt = torch.randint(0, 10, (150,), device=checks.DEVICE)
    _xv = torch.rand(70, 1, 8, 8, device=checks.DEVICE)
    _yv = torch.randint(0, 10, (70,), device=checks.DEVICE)
_spy = _SpyTransform()
_train_loader, _val_loader = make_loaders(_xt, _yt, _xv, _yv, _spy, batch_size=32, seed=5)
checks.expect(len(_spy.shapes) == 0,
              f"make_loaders called the transform while building the loaders, on inputs of shape "
              f"{sorted(set(_spy.shapes))}: the images were transformed once, up front. That is one fixed "
              "distortion, the same at every epoch, not a fresh variation; and on a batch or the whole tensor a v2 "
              "transform draws one set of random parameters for all of it. Apply it per image, in the Dataset's "
              "__getitem__, as each image is fetched.")
_images, _labels = [], []
for _xb, _yb in _val_loader:
    _images.append(_xb)
    _labels.append(_yb)
checks.expect(len(_spy.shapes) == 0,
              "Iterating over the validation loader called the training transform: the validation images are "
              "augmented. Validation measures the model on the real images, the same every time: build the "
              "validation data without the transform.")
_images, _labels = torch.cat(_images), torch.cat(_labels)
checks.expect(tuple(_images.shape) == tuple(_xv.shape),
              f"The validation loader yielded {tuple(_images.shape)[0]} images out of {len(_xv)}: validation must "
              "see every image exactly once (no drop_last).")
checks.expect(torch.equal(_labels, _yv) and torch.equal(_images, _xv),
              "The validation loader does not yield the validation images in their order: do not shuffle (or "
              "transform) validation data. A fixed order makes the measurement repeatable.")
_first = torch.cat([_yb for _, _yb in _train_loader])
checks.expect(len(_spy.shapes) > 0,
              "Iterating over the training loader never called the transform: the training images are not "
              "augmented. Give the transform to the training Dataset, which applies it in __getitem__.")
checks.expect(all(_s == (1, 8, 8) for _s in _spy.shapes),
              f"The transform was called with inputs of shape {sorted(set(_spy.shapes))}, not one (1, 8, 8) image "
              "at a time. Applied to a batch or to the whole tensor, a v2 transform draws one set of random "
              "parameters for all of it; apply it per image, in the Dataset's __getitem__.")
checks.expect(len(_spy.shapes) == len(_xt),
              f"One pass over the training loader called the transform {len(_spy.shapes)} times for {len(_xt)} "
              "images. Each image should be transformed once per epoch, freshly, as it is fetched.")
checks.expect(not torch.equal(_first, _yt),
              "The training loader yields the images in their stored order: shuffle the training data "
              "(shuffle=True), so that batches differ from epoch to epoch.")
_again = torch.cat([_yb for _, _yb in make_loaders(_xt, _yt, _xv, _yv, _spy, batch_size=32, seed=5)[0]])
checks.expect(torch.equal(_first, _again),
              "Two training loaders made with the same seed yield different orders: the shuffle is not seeded. "
              "Give the DataLoader a generator seeded with `seed` (see Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-train"
# ## 6 · Training the network
#
# The loop is the one of 05, with one thing that matters more here: **the module's mode**.
# Dropout (and batch normalisation) behave differently in training and in evaluation, and a
# module remembers the last mode it was put in. `evaluate_accuracy` switches the model to
# `eval()` and back, but whoever calls your training function may hand you a model left in eval
# mode, and then dropout silently stays off for the whole run. A training function sets
# `model.train()` itself, at the start of every epoch.
#
# ### Exercise 6 · `train_cnn`
#
# Write `train_cnn(model, train_loader, epochs)`: train `model` for `epochs` passes over
# `train_loader` with cross-entropy and an optimiser of your choice (create it inside), and
# return the list of the epochs' mean training losses, as floats.
#
# The hidden test builds a fresh `DigitsCNN` from another seed, makes loaders with your
# `make_train_transform` and `make_loaders`, trains for **8 epochs** with `train_cnn`, and asks
# for a **validation accuracy of at least 95%**. Your network should reach about 97% to 98%
# in a few seconds of CPU time.
#
# <details><summary>Hint 1</summary>
#
# `torch.optim.AdamW` with a learning rate around 3e-3 works well here; SGD needs more epochs.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Per batch: zero_grad, forward, loss, backward, step (05). Per epoch: `model.train()` first,
# and the mean of the batches' `loss.item()` at the end.
# </details>

# %% role="answer" grade_id="train-cnn"
def train_cnn(model, train_loader, epochs):
    """Train model for epochs passes over train_loader. Returns the epochs' mean losses (floats)."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(epochs):
        model.train()
        total, batches = 0.0, 0
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        history.append(total / batches)
    return history
    ### END SOLUTION


# %% role="locked" grade_id="train-run"
# Your run: train a DigitsCNN with augmentation and measure it on the validation images.
try:
    torch.manual_seed(0)
    cnn = DigitsCNN().to(checks.DEVICE)
    train_loader, val_loader = make_loaders(x_train, y_train, x_val, y_val, make_train_transform())
    cnn_history = train_cnn(cnn, train_loader, epochs=8)
    print("epoch losses:", [round(v, 3) for v in cnn_history])
    print(f"validation accuracy: {evaluate_accuracy(cnn, x_val, y_val):.1%}")
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-train-cnn-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).to(checks.DEVICE)
    _loader = DataLoader(ImageDataset(x_train[:128], y_train[:128]), batch_size=32)
    _history = train_cnn(_model, _loader, 2)
checks.expect(type(_history) is list and len(_history) == 2 and all(type(_v) is float for _v in _history),
              f"`train_cnn(model, loader, 2)` should return a list of 2 Python floats, one mean loss per epoch; it "
              f"returned {checks.describe(_history)}" + (", holding tensors" if type(_history) is list and any(
                  isinstance(_v, torch.Tensor) for _v in _history) else "") + ". Add up loss.item() (a number "
              "that no longer holds on to the graph), not the loss tensor.")
print("epoch losses:", [round(_v, 3) for _v in _history])

# %% role="test" grade_id="test-train-cnn-loop" points=2
# Hidden tests hand train_cnn a model left in eval mode with dropout, watch the loop and the mode
# during the forward passes, and count the passes over the loader.
### BEGIN HIDDEN TESTS
with checks.seeded(3):
    _model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10)).to(checks.DEVICE)
    _loader = DataLoader(ImageDataset(x_train[:96], y_train[:96]), batch_size=32)
_model.eval()
_modes = []
_hook = _model[1].register_forward_pre_hook(lambda _m, _inp: _modes.append(_m.training))
try:
    with checks.seeded(3), checks.TrainingSpy(_model) as _spy:
        _history = train_cnn(_model, _loader, 3)
finally:
    _hook.remove()
checks.expect(len(_modes) > 0 and all(_modes),
              "train_cnn ran forward passes with the model in eval mode: it was handed a model left in eval mode "
              "and never switched it back, so dropout stayed off for the whole run. Call model.train() at the start "
              "of every epoch.")
_spy.check_loop(steps=3 * len(_loader), name="`train_cnn`")
checks.expect(type(_history) is list and len(_history) == 3 and all(type(_v) is float for _v in _history),
              f"`train_cnn(model, loader, 3)` should return a list of 3 floats; it returned {checks.describe(_history)}.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-digits-cnn-accuracy" points=4
# Hidden tests train a fresh DigitsCNN (another seed) for 8 epochs with your transform, loaders and
# train_cnn, then measure it on the validation images: at least 95% correct.
### BEGIN HIDDEN TESTS
from sklearn.datasets import load_digits as _load_digits

_images, _labels = _load_digits(return_X_y=True)
_x = torch.tensor(_images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
_y = torch.tensor(_labels, dtype=torch.int64)
_order = torch.randperm(len(_x), generator=torch.Generator().manual_seed(0))
_x_tr, _y_tr = _x[_order[:1437]].to(checks.DEVICE), _y[_order[:1437]].to(checks.DEVICE)
_x_va, _y_va = _x[_order[1437:]].to(checks.DEVICE), _y[_order[1437:]].to(checks.DEVICE)
with checks.seeded(1):
    _model = DigitsCNN().to(checks.DEVICE)
    _train_loader, _ = make_loaders(_x_tr, _y_tr, _x_va, _y_va, make_train_transform(), seed=1)
    _history = train_cnn(_model, _train_loader, 8)
checks.expect(type(_history) is list and len(_history) == 8 and all(type(_v) is float for _v in _history),
              f"`train_cnn(model, loader, 8)` should return a list of 8 floats; it returned {checks.describe(_history)}.")
checks.expect(_history[-1] < _history[0],
              "The training loss did not fall over the 8 epochs. Check the loop (05) and the learning rate: flat "
              "means steps too small or no steps, rising means steps too large.")
_model.eval()
with torch.no_grad():
    _acc = (_model(_x_va).argmax(dim=1) == _y_va).float().mean().item()
checks.expect(_acc >= 0.95,
              f"After 8 epochs of train_cnn, DigitsCNN classifies {_acc:.1%} of the validation images correctly; the "
              "target is 95%. Check the loss history, the learning rate (see Hint 1), the network's capacity "
              "(section 4) and the augmentation: transforms too strong to keep the label hurt.")
print(f"validation accuracy {_acc:.1%}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A convolution slides one small kernel over the image: output size
#   `floor((size + 2p − d·(k − 1) − 1) / s) + 1` per axis; pooling the same with its stride
#   defaulting to the kernel, and `ceil_mode` rounding up.
# - PyTorch's image layers read `(N, C, H, W)`; convert channels-last data once, with
#   `permute`, where it enters.
# - The receptive field grows by `d·(k − 1)` times the jump at every layer, and strides
#   multiply the jump.
# - Flatten with `nn.Flatten()`, which keeps the batch, and compute the head's `in_features`
#   from the input size instead of writing it down.
# - Augment per image, with changes that keep the label, on training data only; put the
#   model in `train()` mode in the training loop.
#
# Next, in **[10 · Sequences](../10_sequences/10_sequences.ipynb)**, the data gets a time axis:
# recurrent networks read it one step at a time.
