# %% [markdown] role="prose" grade_id="title"
# # 06 · Dataset and DataLoader: feeding data to a model
#
# **Time:** about 2 h of work (4,200 words to read, 7 exercises). Run top to bottom, the finished
# notebook takes under a second.
#
# A model wants neat batches of tensors, shuffled, of the right dtype. Data arrive in whatever
# form they live in: arrays in memory, thousands of files on disk, sequences of different
# lengths, classes of very different sizes. PyTorch bridges the gap with two objects that have
# one job each: a **Dataset** says what *one* sample is, a **DataLoader** decides *how* samples
# are consumed (in which order, how many at a time, by how many processes).
#
# **By the end of this notebook you will be able to:**
# - write a Dataset that honours the contract: an exact `__len__`, and a `__getitem__` that
#   returns one sample, always as tensors of the same structure, dtype and shape;
# - apply transforms per sample, at access time, so random augmentation stays random;
# - predict what a DataLoader yields: the number of batches, the last batch, the batch shapes,
#   and what shuffling with a seeded generator does across epochs;
# - load files lazily, reading a sample only when it is asked for;
# - write a `collate_fn` that pads variable-length sequences and keeps their true lengths;
# - split data at random and build training and validation loaders that shuffle (or not)
#   for the right reasons, reproducibly;
# - balance imbalanced classes with a `WeightedRandomSampler`.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first.

# %% role="locked" grade_id="setup"
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, WeightedRandomSampler, random_split

from torchcourse import checks

torch.manual_seed(0)
digits = load_digits()  # bundled with scikit-learn: nothing is downloaded
print("PyTorch", torch.__version__)
print("digits.images:", digits.images.shape, digits.images.dtype, "| digits.target:", digits.target.shape,
      digits.target.dtype)


# %% [markdown] role="prose" grade_id="md-dataset"
# ## 1 · A Dataset answers two questions
#
# A (map-style) Dataset is an object that answers two questions, and nothing else:
# - **how many samples are there?** `len(ds)`, through `__len__`;
# - **what is sample `i`?** `ds[i]`, through `__getitem__(i)`, for every `i` from `0` to
#   `len(ds) - 1`.
#
# Think of it as a read-only dictionary from an index to one clean sample. It knows nothing
# about batches, order or processes: the DataLoader (Section 2) asks it for indices and does
# the rest. That boundary is what lets one Dataset serve a shuffled training loop, an ordered
# evaluation loop and a parallel loader without a change.
#
# Everything downstream (the batching code, the model, the loss) is written against what
# `__getitem__` returns, so the contract is strict:
# - **One sample per index.** Not a batch, not a slice: batching is the loader's job. A
#   Dataset that returns ready-made batches gets batched again, and its shuffling can only move
#   whole blocks around.
# - **The same structure every time**: the same tuple layout, the same dtypes, and for
#   fixed-size data the same shape. A sample that differs from its neighbours breaks the batch
#   it lands in, often many steps into training.
# - **Tensors, in the dtypes the model expects.** Inputs in `float32` (the dtype of the layers'
#   weights); class labels as `int64` class indices of shape `()`, so a batch of them is a 1-D
#   tensor of shape `(B,)`, which is what `nn.CrossEntropyLoss` wants. NumPy's default float
#   is `float64`, and `torch.from_numpy` keeps it: convert explicitly.
# - **An exact length.** The loader asks only for indices `0 .. len(ds) - 1`. A length one too
#   short silently skips a sample in every epoch; one too long asks for a sample that does not
#   exist. Indexing past the end raises `IndexError`.
#
# **Transforms** are per-sample functions: scaling, cropping, a random shift or flip for data
# augmentation. The Dataset takes one as an argument and applies it inside `__getitem__`, every
# time a sample is read. That placement matters for random transforms: augmentation works
# because the model sees a *different* variant of each sample in every epoch. A transform
# applied once in `__init__` freezes one random variant forever (and stores a copy of the data).
# Augmentation is for training only: the validation data should be measured as they are.
#
# ### Exercise 1 · A Dataset for handwritten digits
#
# Write `DigitsDataset(images, labels, transform=None)`:
# - `images` is a NumPy array of shape `(N, 8, 8)` with pixel intensities from 0 to 16 (any
#   numeric dtype), `labels` a NumPy array of shape `(N,)` of any integer dtype
#   (`digits.images` and `digits.target` from the setup cell are one such pair);
# - `len(ds)` is `N`;
# - `ds[i]` returns a tuple `(image, label)`: `image` a `float32` tensor of shape `(1, 8, 8)`
#   (one channel, then height and width: the layout convolution layers expect), with the pixels
#   scaled to `[0, 1]` by dividing by 16; `label` an `int64` tensor of shape `()`;
# - when a `transform` is given, `ds[i]` returns `transform(image)` in place of `image`, calling
#   it at every access; the label is not transformed;
# - indexing past the end, `ds[len(ds)]`, raises `IndexError` (indexing a tensor or an array
#   does that for you);
# - the arrays passed in are not modified.
#
# <details><summary>Hint 1</summary>
#
# `torch.as_tensor(array, dtype=torch.float32)` converts a NumPy array and its dtype in one
# step. `torch.from_numpy` alone keeps NumPy's dtype (`float64` here) and shares memory with
# the array, so an in-place `/=` on it would change the caller's data.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `x.unsqueeze(1)` turns a stack of `(N, 8, 8)` images into `(N, 1, 8, 8)`; indexing one image
# of that then gives `(1, 8, 8)`. Indexing a 1-D `int64` tensor with an integer gives a 0-d
# `int64` tensor.
# </details>
#
# <details><summary>Hint 3</summary>
#
# Converting and scaling everything once in `__init__` is fine for a small array held in
# memory. The transform is different: call it in `__getitem__`, on the image you are about to
# return.
# </details>

# %% role="answer" grade_id="digits-dataset"
class DigitsDataset(Dataset):
    """Digits as (float32 image of shape (1, 8, 8) in [0, 1], int64 label of shape ())."""

    def __init__(self, images, labels, transform=None):
        ### BEGIN SOLUTION
        self.images = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 16
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.transform = transform
        ### END SOLUTION

    def __len__(self):
        ### BEGIN SOLUTION
        return len(self.labels)
        ### END SOLUTION

    def __getitem__(self, index):
        ### BEGIN SOLUTION
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]
        ### END SOLUTION


# %% role="test" grade_id="test-digits-sanity" points=1
_ds = DigitsDataset(digits.images, digits.target)
_sample = _ds[0]
checks.expect(type(_sample) is tuple and len(_sample) == 2,
              f"The sample ds[0] should be a tuple (image, label), but it is {checks.describe(_sample)}.")
_image, _label = _sample
if type(_image) is torch.Tensor and _image.dim() == 4:
    checks.expect(False, f"The sample ds[0] holds a batch of images of shape {tuple(_image.shape)}. A Dataset returns "
                         "one sample per index; batching is the DataLoader's job (Section 2).")
checks.expect_tensor(_image, "The image of ds[0]", shape=(1, 8, 8), dtype=torch.float32,
                     why="One sample is one float32 image of shape (channels, height, width) = (1, 8, 8).")
checks.expect_tensor(_label, "The label of ds[0]", shape=(), dtype=torch.int64,
                     why="A class label is an int64 class index of shape ().")
checks.expect_equal(len(_ds), len(digits.target), "The length of DigitsDataset(digits.images, digits.target)",
                    why="__len__ counts samples: one per image.")
print("DigitsDataset looks right so far: digit", int(_label), "with", int((_image > 0).sum()), "lit pixels")

# %% role="test" grade_id="test-digits" points=3
# Hidden tests: every index of a small dataset (values, dtypes, shapes), the end, your inputs left intact (float64 and
# float32 arrays), batching by a DataLoader, and faint images whose pixels never reach 16.
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(0)
_N = 37
_imgs = _rng.integers(0, 17, size=(_N, 8, 8)).astype(np.float64)
_labs = _rng.integers(0, 10, size=_N).astype(np.int32)
_imgs_before, _labs_before = _imgs.copy(), _labs.copy()
_ds = DigitsDataset(_imgs, _labs)
_first = _ds[0]
if type(_first) is tuple and len(_first) == 2 and type(_first[0]) is torch.Tensor and _first[0].dim() == 4:
    checks.expect(False, "The sample ds[0] holds a batch of images. A Dataset returns one sample per index and "
                         "len(ds) counts samples; the DataLoader groups samples into batches.")
checks.expect(len(_ds) == _N,
              f"For {_N} images, len(ds) is {len(_ds)}. __len__ must count every sample exactly: the "
              "DataLoader asks only for indices 0 .. len(ds) - 1, so a length one short silently drops a "
              "sample from every epoch, and one too long asks for a sample that does not exist.")
for _i in range(_N):
    _sample = _ds[_i]
    checks.expect(type(_sample) is tuple and len(_sample) == 2,
                  f"The sample ds[{_i}] should be a tuple (image, label), but it is {checks.describe(_sample)}. Every "
                  "index must return the same structure.")
    _image, _label = _sample
    checks.expect_tensor(_image, f"The image of ds[{_i}]", shape=(1, 8, 8), dtype=torch.float32,
                         why="A Dataset returns tensors, the same shape and dtype for every index: layers "
                             "hold float32 weights, and (1, 8, 8) samples stack into a (B, 1, 8, 8) batch. "
                             "Convert NumPy data explicitly (NumPy's floats are float64).")
    checks.expect_close(_image, torch.as_tensor(_imgs_before[_i], dtype=torch.float32).reshape(1, 8, 8) / 16,
                        f"The image of ds[{_i}]", rtol=1e-5, atol=1e-6,
                        why="It should hold image i's pixels, divided by 16 so they lie in [0, 1].")
    checks.expect_tensor(_label, f"The label of ds[{_i}]", shape=(), dtype=torch.int64,
                         why="Class labels are int64 class indices of shape (), whatever integer dtype the "
                             "labels arrived in: nn.CrossEntropyLoss wants int64, and 0-d labels stack into "
                             "a (B,) batch.")
    checks.expect(int(_label) == int(_labs[_i]),
                  f"The label of ds[{_i}] is not labels[{_i}]. Sample i pairs image i with label i: index both "
                  "with the same i.")
try:
    _ds[_N]
except IndexError:
    pass
except Exception as _err:  # noqa: BLE001
    checks.expect(False, f"Indexing past the end, ds[len(ds)], raised {type(_err).__name__}; it should raise IndexError: the valid "
                         "indices are 0 .. len(ds) - 1, and a plain `for sample in ds` loop stops at the first "
                         "IndexError.")
else:
    checks.expect(False, "Indexing past the end, ds[len(ds)], returned a sample; it should raise IndexError: the valid indices are "
                         "0 .. len(ds) - 1, and a plain `for sample in ds` loop stops at the first IndexError.")
checks.expect(np.array_equal(_imgs, _imgs_before) and np.array_equal(_labs, _labs_before),
              "DigitsDataset changed the arrays it was given. A Dataset reads its source data; scale a "
              "converted copy (torch.from_numpy shares memory with the array, so an in-place /= on it "
              "rewrites the caller's data).")
_total = 0
for _images, _labels in torch.utils.data.DataLoader(_ds, batch_size=8):
    checks.expect_tensor(_images, "A batch of images from DataLoader(ds, batch_size=8)", shape=(None, 1, 8, 8),
                         dtype=torch.float32)
    checks.expect_tensor(_labels, "A batch of labels from DataLoader(ds, batch_size=8)", shape=(None,),
                         dtype=torch.int64)
    _total += len(_labels)
checks.expect(_total == _N,
              f"One epoch over DataLoader(ds, batch_size=8) gave {_total} samples for {_N} images. The loader asks "
              "for every index from 0 to len(ds) - 1 once: len(ds) and ds[i] must count and return single samples.")
_real = DigitsDataset(digits.images, digits.target)
for _i in [0, 5, 1796]:
    _image, _label = _real[_i]
    checks.expect_close(_image, torch.as_tensor(digits.images[_i], dtype=torch.float32)[None] / 16,
                        f"The image of DigitsDataset(digits.images, digits.target)[{_i}]",
                        why="It should hold image i's pixels, divided by 16 so they lie in [0, 1].")
    checks.expect(int(_label) == int(digits.target[_i]),
                  f"The label of DigitsDataset(digits.images, digits.target)[{_i}] is not digits.target[{_i}]. "
                  "Sample i pairs image i with label i.")
_imgs32 = np.random.default_rng(4).integers(0, 17, size=(5, 8, 8)).astype(np.float32)  # already float32:
_imgs32_before = _imgs32.copy()                                                   # no conversion, no copy
_image, _label = DigitsDataset(_imgs32, np.arange(5))[2]
checks.expect(np.array_equal(_imgs32, _imgs32_before),
              "DigitsDataset changed the float32 array it was given. When an array already has the dtype you ask "
              "for, torch.as_tensor and torch.from_numpy make no copy: the tensor shares the array's memory, so "
              "an in-place operation on it (/=, div_) rewrites the caller's data. Scale out of place "
              "(x = x / 16), which makes a new tensor.")
checks.expect_close(_image, torch.as_tensor(_imgs32_before[2])[None] / 16, "The image of ds[2] for float32 images",
                    why="It should hold image i's pixels divided by 16, whatever the dtype of the array.")
_faint = np.full((3, 8, 8), 4.0)  # no pixel reaches 16
_faint[1, 2, 3] = 8.0
_image, _label = DigitsDataset(_faint, np.arange(3))[1]
checks.expect_close(_image, torch.as_tensor(_faint[1], dtype=torch.float32)[None] / 16,
                    "The image of ds[1] for faint images (no pixel above 8)",
                    why="Divide by 16, the top of the pixel scale, not by the largest value that happens to be in "
                        "the array or the image: a pixel's value must not depend on the other pixels, or a "
                        "validation set would be scaled differently from the training set.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-digits-transform" points=2
# Hidden tests: a transform that records every call it receives.
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(1)
_imgs = _rng.integers(0, 17, size=(9, 8, 8)).astype(np.float64)
_labs = _rng.integers(0, 10, size=9)
_imgs_before = _imgs.copy()
_calls = []


def _spy(image):
    _calls.append(image)
    return image * 2 + 1


_ds = DigitsDataset(_imgs, _labs, transform=_spy)
checks.expect(len(_calls) == 0,
              f"Creating the dataset already called the transform {len(_calls)} times. Transforms run in "
              "__getitem__, once per access: a random augmentation applied in __init__ is drawn once and "
              "frozen, so every epoch sees the same variant.")
_image, _label = _ds[3]
checks.expect(len(_calls) == 1,
              f"Reading one sample called the transform {len(_calls)} times instead of once. Call it once per access, "
              "in __getitem__, on the one image you are about to return.")
_seen = _calls[0]
_scaled = torch.as_tensor(_imgs_before[3], dtype=torch.float32)[None] / 16
checks.expect_tensor(_seen, "What the transform received", shape=(1, 8, 8), dtype=torch.float32,
                     why="The transform should receive the image as the model would see it, so convert and "
                         "reshape first, then transform.")
checks.expect_close(_seen, _scaled, "What the transform received",
                    why="Scale the pixels to [0, 1] before the transform, so a transform always sees the same "
                        "range of values.")
checks.expect_close(_image, _scaled * 2 + 1, "The image of ds[3] with a transform",
                    why="With a transform, ds[i] should return what the transform returned, in place of the image.")
checks.expect_tensor(_label, "The label of ds[3] with a transform", shape=(), dtype=torch.int64)
checks.expect(int(_label) == int(_labs[3]),
              "With a transform, the label of ds[3] changed. The transform applies to the image only.")
_ds[3]
checks.expect(len(_calls) == 2,
              "Reading the same sample a second time did not call the transform again. Call it at every "
              "access: a random augmentation must draw fresh randomness each time a sample is read.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-loader"
# ## 2 · The DataLoader: order, batches, collation
#
# A DataLoader wraps a Dataset and turns it into an iterable of batches. One pass over it is one
# **epoch**, and each epoch runs three steps:
# 1. a **sampler** produces the order of the indices: `0, 1, ..., N-1` by default, a fresh random
#    permutation of them in every epoch with `shuffle=True`;
# 2. the indices are cut into groups of `batch_size`. The last group keeps whatever is left
#    over, so it may be smaller; `drop_last=True` discards it instead;
# 3. for each group, the loader fetches `dataset[i]` for every index and hands the list of
#    samples to a **collate function**. The default one stacks tensors along a new first
#    dimension, element by element of the sample: samples `(image, label)` become a batch
#    `(images, labels)`. Python numbers become tensors on the way.
#
# So `len(loader)` counts batches, not samples. The DataLoader controls the flow of the data,
# never its content: what a sample is and whether it is correct stays the Dataset's job.
#
# **Shuffle for training, not for evaluation.** Files are often sorted (by class, by date, by
# source). Read in that order, consecutive training steps see near-identical batches and the
# model chases one class after another; a new permutation each epoch gives every step a fair
# mix. Evaluation is the opposite: the metric does not depend on the order, and a fixed order
# makes the results repeatable and lets predictions line up with the samples they belong to.
#
# **Seeded generators.** Shuffling draws random numbers. Without a `generator=`, it draws from
# PyTorch's global generator, which everything else uses too (weight initialisation, dropout),
# so an unrelated change elsewhere reshuffles your data. Give the loader its own
# `torch.Generator().manual_seed(seed)` and the sequence of epoch orders becomes reproducible
# from run to run. It does *not* make the epochs identical: the generator moves on after each
# permutation, so every epoch still gets a new one.
#
# **Workers.** With `num_workers=k`, the loader starts `k` processes that call `__getitem__`
# and collate batches in parallel while your model computes, which pays off when reading or
# decoding a sample is slow. Each worker gets its **own copy of the Dataset object** (a pickled
# copy on macOS and Windows, and on Linux too from Python 3.14, whose default start method is
# no longer `fork`), so a Dataset should hold addresses of its data rather than the data
# (Section 3). Workers change who does the work, not what comes out: the same indices go into
# the same batches, which arrive in the same order. (Random transforms are the exception: each
# worker draws from a random generator of its own, which the loader seeds for it.) Start with
# `num_workers=0` (the default) while debugging: errors
# inside worker processes are harder to read. This notebook uses 0 everywhere; the data are
# tiny. For a real training run it would look like this (not run here):
#
# ```python
# loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=2,
#                     persistent_workers=True, pin_memory=torch.cuda.is_available())
# for images, labels in loader:
#     images, labels = images.to(device), labels.to(device)   # batches arrive on the CPU
# ```
#
# ### Exercise 2 · Predict, then verify
#
# Read this code **without running it** and fill in the dictionary `predictions` in the answer
# cell. A hidden test runs the code and compares.
#
# ```python
# points = TensorDataset(torch.randn(100, 3), torch.arange(100))   # samples (x, y): x of shape (3,), y of shape ()
# loader = DataLoader(points, batch_size=16)
# loader_drop = DataLoader(points, batch_size=16, drop_last=True)
# shuffled = DataLoader(points, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
# ```
#
# <details><summary>Hint 1</summary>
#
# Write 100 as a multiple of 16 plus a remainder. Each full group of 16 is a batch; the
# remainder is one more (smaller) batch, unless `drop_last=True`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The default collate function stacks the `x`s of a batch into one tensor and the `y`s into
# another: stacking `k` tensors of shape `s` gives shape `(k, *s)`.
# </details>
#
# <details><summary>Hint 3</summary>
#
# A shuffling loader draws a permutation at the start of each epoch from its generator. What
# state is the generator in at the start of the second epoch? And what do two generators seeded
# alike have in common?
# </details>

# %% role="answer" grade_id="predictions"
predictions = {
    "len(loader)": None,            # an int: batches per epoch
    "last batch size": None,        # an int: samples in the final batch of `loader`
    "len(loader_drop)": None,       # an int: batches per epoch with drop_last=True
    "batch shapes": None,           # two tuples: (shape of x, shape of y) in the first batch of `loader`
    "epochs repeat": None,          # True or False: do two epochs of `shuffled` visit the samples in the same order?
    "seeded loaders agree": None,   # True or False: do two loaders built like `shuffled` (each with its own
                                    #   generator seeded with 0) give the same order in their first epochs?
    "workers change batches": None, # True or False: would num_workers=2 change the batches of `loader` or their order?
}
### BEGIN SOLUTION
predictions = {
    "len(loader)": 7,
    "last batch size": 4,
    "len(loader_drop)": 6,
    "batch shapes": ((16, 3), (16,)),
    "epochs repeat": False,
    "seeded loaders agree": True,
    "workers change batches": False,
}
### END SOLUTION

# %% role="test" grade_id="test-predictions" points=4
# Hidden tests build the loaders and compare your predictions with what they do.
_keys = {"len(loader)", "last batch size", "len(loader_drop)", "batch shapes", "epochs repeat",
         "seeded loaders agree", "workers change batches"}
checks.expect(type(predictions) is dict and set(predictions) == _keys,
              "Your predictions should be a dict with exactly the keys of the template.")
for _k in ["len(loader)", "last batch size", "len(loader_drop)"]:
    checks.expect(type(predictions[_k]) is int, f"Your predictions[{_k!r}] should be an int.")
for _k in ["epochs repeat", "seeded loaders agree", "workers change batches"]:
    checks.expect(type(predictions[_k]) is bool, f"Your predictions[{_k!r}] should be True or False.")
_shapes = predictions["batch shapes"]
checks.expect(type(_shapes) in (tuple, list) and len(_shapes) == 2
              and all(type(_s) in (tuple, list) and all(type(_v) is int for _v in _s) for _s in _shapes),
              "Your predictions['batch shapes'] should be two shapes, each a tuple of ints: (shape of x, shape of y).")
### BEGIN HIDDEN TESTS
with checks.seeded(0):
    _points = torch.utils.data.TensorDataset(torch.randn(100, 3), torch.arange(100))
_loader = torch.utils.data.DataLoader(_points, batch_size=16)
_batches = list(_loader)
checks.expect(predictions["len(loader)"] == len(_loader),
              "Your prediction for len(loader) is not what PyTorch does. len(loader) counts batches: the 100 "
              "indices are cut into groups of batch_size, and the leftover indices form one more, smaller "
              "batch (see Hint 1).")
checks.expect(predictions["last batch size"] == len(_batches[-1][1]),
              "Your prediction for the last batch size is not what PyTorch does. Without drop_last, the final "
              "batch holds the remainder of the samples, not a full batch_size.")
checks.expect(predictions["len(loader_drop)"] == len(torch.utils.data.DataLoader(_points, batch_size=16, drop_last=True)),
              "Your prediction for len(loader_drop) is not what PyTorch does. drop_last=True discards the "
              "incomplete final batch, so only full batches remain.")
_want = (tuple(_batches[0][0].shape), tuple(_batches[0][1].shape))
checks.expect(tuple(tuple(_s) for _s in _shapes) == _want,
              "Your prediction for the batch shapes is not what PyTorch does. The default collate function "
              "stacks each element of the samples along a new first dimension, the batch dimension (see Hint 2).")


def _epoch(loader):
    return [_y.tolist() for _x, _y in loader]


_shuffled = torch.utils.data.DataLoader(_points, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
_again = torch.utils.data.DataLoader(_points, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
checks.expect(predictions["epochs repeat"] == (_epoch(_shuffled) == _epoch(_shuffled)),
              "Your prediction about two epochs of `shuffled` is not what PyTorch does. A shuffling DataLoader "
              "draws a new permutation at the start of every epoch; a seeded generator makes the sequence of "
              "permutations reproducible, not the epochs identical.")
checks.expect(predictions["seeded loaders agree"] == (_epoch(torch.utils.data.DataLoader(
                  _points, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))) == _epoch(_again)),
              "Your prediction about two loaders seeded alike is not what PyTorch does. Two generators given "
              "the same seed produce the same random numbers, so the permutations they drive are the same: "
              "that is what makes a seeded run reproducible.")
checks.expect(predictions["workers change batches"] is False,
              "Your prediction about workers is not what PyTorch does. Workers change who loads the samples, "
              "not what comes out: the loader hands the same index groups to its workers and returns their "
              "batches in order.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-lazy"
# ## 3 · Lazy loading: read a sample when it is asked for
#
# The digits fit in memory many times over. Real datasets usually do not: a million images,
# hours of audio. A **lazy** Dataset keeps only the *addresses* of its samples (file paths,
# row numbers, offsets) and reads a sample inside `__getitem__`, when the loader asks for it.
# That gives you:
# - constant memory, whatever the size of the data, and a Dataset that is ready at once;
# - cheap worker copies: each worker process gets its own copy of the Dataset object, and a
#   list of paths is small, where a copy of all the data is not;
# - work only for the samples an epoch actually uses (a sampler may use a fraction of them).
#
# An **eager** Dataset reads every file in `__init__`. It works on a small folder, then
# takes minutes to start and all your memory on a large one. In the cell below, the notebook
# writes 30 small "sensor recordings" into a temporary folder, one per text file (the label on
# the first line, the values on the second; recordings have different lengths). Then it shows
# an eager Dataset and counts the files it reads, through a `reader` function that the Dataset
# takes as an argument.

# %% role="locked" grade_id="recordings"
recordings_tmp = tempfile.TemporaryDirectory()  # removed when the notebook's kernel stops
recordings_dir = Path(recordings_tmp.name)


def write_recording(path, values, label):
    """One recording per text file: the label on the first line, the values on the second."""
    Path(path).write_text(f"{int(label)}\n" + " ".join(f"{float(v):.4f}" for v in values) + "\n")


def read_recording(path):
    """The values (a list of floats) and the label (an int) of one recording file."""
    label_line, values_line = Path(path).read_text().splitlines()
    return [float(v) for v in values_line.split()], int(label_line)


_rng = np.random.default_rng(6)
for _i in range(30):
    write_recording(recordings_dir / f"rec_{_i:03d}.txt", _rng.normal(size=int(_rng.integers(3, 13))),
                    _rng.integers(0, 3))


class EagerRecordings(Dataset):
    """It works, but it reads every file as soon as it is created."""

    def __init__(self, folder, reader=read_recording):
        self.samples = [reader(path) for path in sorted(Path(folder).glob("*.txt"))]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        values, label = self.samples[index]
        return torch.tensor(values, dtype=torch.float32), torch.tensor(label, dtype=torch.int64)


reads = []


def counting_reader(path):
    reads.append(Path(path).name)
    return read_recording(path)


eager = EagerRecordings(recordings_dir, reader=counting_reader)
print(f"Creating EagerRecordings read {len(reads)} files before a single sample was asked for.")
print("Sample 0:", eager[0])


# %% [markdown] role="prose" grade_id="md-lazy-exercise"
# ### Exercise 3 · Fix a Dataset that does not scale
#
# `EagerRecordings` is correct but eager. Write the lazy version,
# `RecordingFiles(folder, reader=read_recording)`:
# - `__init__` finds the files whose names end in `.txt` in `folder`, sorted by name (listing a
#   folder reads no file), and keeps their paths and the `reader`; it reads no file;
# - `len(ds)` is the number of those files;
# - `ds[i]` reads file `i` with `self.reader`, one call at every access (nothing read is kept),
#   and returns `(values, label)`: `values` a `float32` tensor of shape `(L,)`, where `L` is that
#   recording's length, and `label` an `int64` tensor of shape `()`; indexing past the end
#   raises `IndexError` (a list of paths does that for you).
#
# The hidden tests give your Dataset a reader that counts its calls, change files on disk after
# the Dataset was created, and look at the size of the Dataset object that a worker would
# receive.
#
# <details><summary>Hint 1</summary>
#
# `sorted(Path(folder).glob("*.txt"))` lists the paths in a fixed order without opening them.
# Keep that list (and the reader) on `self`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `__getitem__` does what `EagerRecordings.__init__` did, for one path only: call the reader on
# `self.paths[index]`, then convert the two results as `EagerRecordings.__getitem__` does.
# </details>

# %% role="answer" grade_id="recording-files"
class RecordingFiles(Dataset):
    """Recordings read lazily: one file per sample, read in __getitem__."""

    def __init__(self, folder, reader=read_recording):
        ### BEGIN SOLUTION
        self.paths = sorted(Path(folder).glob("*.txt"))
        self.reader = reader
        ### END SOLUTION

    def __len__(self):
        ### BEGIN SOLUTION
        return len(self.paths)
        ### END SOLUTION

    def __getitem__(self, index):
        ### BEGIN SOLUTION
        values, label = self.reader(self.paths[index])
        return torch.tensor(values, dtype=torch.float32), torch.tensor(label, dtype=torch.int64)
        ### END SOLUTION


# %% role="test" grade_id="test-recordings-sanity" points=1
_ds = RecordingFiles(recordings_dir)
checks.expect_equal(len(_ds), 30, "The length of RecordingFiles(recordings_dir)",
                    why="There is one sample per .txt file in the folder.")
_sample = _ds[0]
checks.expect(type(_sample) is tuple and len(_sample) == 2,
              f"The sample ds[0] should be a tuple (values, label), but it is {checks.describe(_sample)}.")
checks.expect_tensor(_sample[0], "The values of ds[0]", shape=(None,), dtype=torch.float32,
                     why="One recording is a 1-D float32 tensor of its own length.")
checks.expect_tensor(_sample[1], "The label of ds[0]", shape=(), dtype=torch.int64)
print("RecordingFiles looks right so far: recording 0 has", len(_sample[0]), "values and label", int(_sample[1]))


# %% role="test" grade_id="test-recordings" points=2
# Hidden tests: a folder of our own (with a file that is not a recording), every index, and the end.
### BEGIN HIDDEN TESTS
def _write(path, values, label):
    Path(path).write_text(f"{int(label)}\n" + " ".join(f"{float(v):.4f}" for v in values) + "\n")


def _read(path):
    _label_line, _values_line = Path(path).read_text().splitlines()
    return [float(v) for v in _values_line.split()], int(_label_line)


_rng = np.random.default_rng(2)
_content = {f"r{_i:02d}.txt": (np.round(_rng.normal(size=int(_rng.integers(1, 9))), 4), int(_rng.integers(0, 5)))
            for _i in range(7)}
with tempfile.TemporaryDirectory() as _tmp:
    for _name in sorted(_content, reverse=True):
        _write(Path(_tmp) / _name, *_content[_name])
    (Path(_tmp) / "README.md").write_text("not a recording\n")
    _ds = RecordingFiles(_tmp, reader=_read)
    checks.expect(len(_ds) == 7,
                  f"A folder with 7 .txt recordings (and a README.md) gave len(ds) = {len(_ds)}. __len__ counts "
                  "the samples exactly: one per .txt file, and nothing else in the folder.")
    for _i, _name in enumerate(sorted(_content)):
        _values, _label = _ds[_i]
        checks.expect_tensor(_values, f"The values of ds[{_i}]", shape=(len(_content[_name][0]),), dtype=torch.float32,
                             why="Return the recording as a float32 tensor of its own length: a Dataset returns "
                                 "tensors, in the dtype the model expects.")
        checks.expect_close(_values, torch.as_tensor(_content[_name][0], dtype=torch.float32),
                            f"The values of ds[{_i}]", rtol=1e-5, atol=1e-4,
                            why="The sample ds[i] should hold the values of the i-th .txt file in name order (sort the "
                                "paths: a folder listing comes in no particular order).")
        checks.expect_tensor(_label, f"The label of ds[{_i}]", shape=(), dtype=torch.int64,
                             why="Class labels are int64 tensors of shape ().")
        checks.expect(int(_label) == _content[_name][1],
                      f"The label of ds[{_i}] is not the label of the {_i}-th .txt file in name order.")
    try:
        _ds[7]
    except IndexError:
        pass
    except Exception as _err:  # noqa: BLE001
        checks.expect(False, f"Indexing past the end, ds[len(ds)], raised {type(_err).__name__}; it should raise IndexError, the "
                             "error that tells Python's iteration protocol (and you) that the index is past the "
                             "end: the valid indices are 0 .. len(ds) - 1.")
    else:
        checks.expect(False, "Indexing past the end, ds[len(ds)], returned a sample; it should raise IndexError: the valid indices are "
                             "0 .. len(ds) - 1.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-recordings-lazy" points=3
# Hidden tests count the reads your Dataset makes, change a file after it was created (and after it was read), and
# measure what a worker would receive.
### BEGIN HIDDEN TESTS
import pickle as _pickle


def _write(path, values, label):
    Path(path).write_text(f"{int(label)}\n" + " ".join(f"{float(v):.4f}" for v in values) + "\n")


def _read(path):
    _label_line, _values_line = Path(path).read_text().splitlines()
    return [float(v) for v in _values_line.split()], int(_label_line)


_reads = []


def _counting(path):
    _reads.append(Path(path).name)
    return _read(path)


with tempfile.TemporaryDirectory() as _tmp:
    for _i in range(6):
        _write(Path(_tmp) / f"s{_i}.txt", [float(_i)] * (_i + 2), _i % 2)
    _ds = RecordingFiles(_tmp, reader=_counting)
    checks.expect(len(_reads) == 0,
                  f"Creating the Dataset read {len(_reads)} files. A lazy Dataset keeps only the paths in "
                  "__init__ and reads a file in __getitem__, when that sample is asked for: reading every file "
                  "up front costs memory and start-up time that grow with the data.")
    len(_ds)
    checks.expect(len(_reads) == 0, "Calling len(ds) read files. The length is the number of paths; no file needs opening.")
    _write(Path(_tmp) / "s2.txt", [7.5, -7.5], 1)
    _values, _label = _ds[2]
    checks.expect(len(_reads) == 1,
                  f"Reading ds[2] called the reader it was given {len(_reads)} times instead of once. Read the "
                  "sample's file through self.reader, once, in __getitem__.")
    checks.expect(_reads[0] == "s2.txt",
                  f"Reading ds[2] read {_reads[0]}, not s2.txt, the third .txt file in name order. Sort the paths: "
                  "a folder listing comes in no particular order, and ds[i] must be the same sample on every "
                  "machine.")
    checks.expect_close(_values, torch.tensor([7.5, -7.5]), "The values of ds[2] after s2.txt was rewritten", atol=1e-4,
                        why="The Dataset returned old content: it read the file before the sample was asked "
                            "for. Read it in __getitem__.")
    _reads.clear()
    _ds[4]
    _ds[0]
    checks.expect(_reads == ["s4.txt", "s0.txt"],
                  "Reading ds[4] then ds[0] should read s4.txt, then s0.txt, and nothing else: each access reads "
                  "the file of that one sample, through self.reader.")
    _reads.clear()
    _write(Path(_tmp) / "s2.txt", [1.25, 2.5, -1.0], 0)  # sample 2 changes on disk after it was read
    _values, _label = _ds[2]
    checks.expect(_reads == ["s2.txt"] and tuple(_values.shape) == (3,),
                  "Reading ds[2] a second time did not read its file again: your Dataset keeps the samples it has "
                  "read. Such a cache grows into a copy of the whole dataset during the first epoch (one copy per "
                  "worker process), which is what a lazy Dataset exists to avoid, and it serves stale data once "
                  "a file changes. Read the sample's file at every access; keep only the paths.")
    for _i in range(6):  # big recordings: a copy of the data would weigh far more than the paths
        _write(Path(_tmp) / f"s{_i}.txt", np.linspace(0, 1, 3000), 0)
    _plain_big = RecordingFiles(_tmp)
    try:
        _size = len(_pickle.dumps(_plain_big))
    except Exception as _err:  # noqa: BLE001
        checks.expect(False, f"The Dataset could not be pickled ({type(_err).__name__}). With num_workers > 0, "
                             "each worker receives a copy of the Dataset, pickled on macOS and Windows (and on Linux from "
                             "Python 3.14): keep "
                             "plain data (paths, the reader function) on self.")
    checks.expect(_size < 16_000,
                  f"A pickled RecordingFiles over 6 files weighs {_size} bytes. Each worker process receives a "
                  "copy of the Dataset object, so it should hold the addresses of the data (paths), not the "
                  "data itself.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-collate"
# ## 4 · `collate_fn`: batches of sequences with different lengths
#
# The default collate function stacks the samples of a batch, and stacking needs equal shapes.
# The recordings have different lengths, so a plain DataLoader over them fails (run the cell
# below). There are three ways out:
# - crop every sequence to the shortest: simple, and throws data away;
# - pad every sequence to the longest of the whole dataset, inside the Dataset: wasteful (most
#   batches carry far more padding than they need), and it puts a batch decision in the object
#   that is supposed to know nothing about batches;
# - pad **per batch**, to the longest sequence of that batch, in a custom **`collate_fn`**. The
#   DataLoader calls `collate_fn(samples)` with the list of samples of one batch and yields
#   whatever it returns.
#
# Padding adds values that were never measured. The model must be able to ignore them: a mask
# for an average, `pack_padded_sequence` for a recurrent network (in
# [10 · Sequences](../10_sequences/10_sequences.ipynb)). Both need each sequence's **true
# length**, and after padding it is gone for good: a padding `0.0` and a measured `0.0` look the
# same. So the collate function returns the true lengths next to the
# padded batch.

# %% role="locked" grade_id="collate-broken"
try:
    next(iter(DataLoader(eager, batch_size=4)))
except RuntimeError as err:
    print("The default collate failed:", str(err).splitlines()[0])


# %% [markdown] role="prose" grade_id="md-collate-exercise"
# ### Exercise 4 · A padding `collate_fn`
#
# Write `pad_collate(batch)`. `batch` is a list of samples `(values, label)` as your
# `RecordingFiles` returns them: `values` a 1-D float tensor (lengths differ), `label` an
# `int64` tensor of shape `()`. Return a tuple `(padded, lengths, labels)`, in the order of
# `batch`:
# - `padded`: a tensor of shape `(B, L_max)`, where `B` is the number of samples and `L_max` the
#   longest length **in this batch**; row `i` holds sample `i`'s values followed by zeros. Same
#   dtype and device as the values;
# - `lengths`: an `int64` tensor of shape `(B,)` with the true length of each sequence;
# - `labels`: an `int64` tensor of shape `(B,)`.
#
# Then `DataLoader(RecordingFiles(recordings_dir), batch_size=4, collate_fn=pad_collate)` works.
#
# <details><summary>Hint 1</summary>
#
# Measure the lengths before you pad: `len(values)` for each sample. `values.new_zeros(B, L)`
# creates zeros with the dtype and device of `values`; then copy each sequence into the start
# of its row with a slice.
# </details>
#
# <details><summary>Hint 2</summary>
#
# PyTorch has a helper for the padding itself, `torch.nn.utils.rnn.pad_sequence(seqs,
# batch_first=True)`. It does not return lengths: that part is yours either way.
# </details>

# %% role="answer" grade_id="pad-collate"
def pad_collate(batch):
    """A list of (values, label) samples -> (padded (B, L_max), lengths (B,), labels (B,))."""
    ### BEGIN SOLUTION
    sequences = [values for values, _ in batch]
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
    padded = sequences[0].new_zeros(len(sequences), int(lengths.max()))
    for i, s in enumerate(sequences):
        padded[i, : len(s)] = s
    labels = torch.stack([label for _, label in batch])
    return padded, lengths, labels
    ### END SOLUTION


# %% role="test" grade_id="test-collate-sanity" points=1
_batch = [(torch.tensor([1.0, 2.0]), torch.tensor(0)), (torch.tensor([3.0, 4.0, 5.0, 6.0]), torch.tensor(2)),
          (torch.tensor([7.0]), torch.tensor(1))]
_out = pad_collate(_batch)
checks.expect(type(_out) is tuple and len(_out) == 3,
              f"Your pad_collate should return a tuple (padded, lengths, labels), but it returned {checks.describe(_out)}.")
checks.expect_tensor(_out[0], "The padded batch", shape=(3, 4), dtype=torch.float32,
                     why="Three sequences, the longest of length 4: one row per sequence.")
checks.expect_tensor(_out[1], "The lengths", shape=(3,), dtype=torch.int64)
checks.expect_tensor(_out[2], "The labels", shape=(3,), dtype=torch.int64)
_padded, _lengths, _labels = next(iter(torch.utils.data.DataLoader(eager, batch_size=4, collate_fn=pad_collate)))
print("A batch of recordings:", tuple(_padded.shape), "with true lengths", _lengths.tolist())

# %% role="test" grade_id="test-collate" points=3
# Hidden tests: sequences with real zeros in them, batches of different sizes, float64 values, data on the grader's
# device and on the meta device.
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(3)


def _sequences(lengths):
    out = []
    for _n in lengths:
        _v = torch.as_tensor(_rng.normal(size=_n), dtype=torch.float32)
        if _n >= 2:
            _v[-1] = 0.0  # measured zeros look exactly like padding
            _v[_n // 2] = 0.0
        out.append(_v.to(checks.DEVICE))
    return out


for _lengths in [[3, 7, 2, 5], [4], [6, 6, 6], [1, 9, 4, 4, 2, 8]]:
    _seqs = _sequences(_lengths)
    _labs = [torch.tensor(int(_k), device=checks.DEVICE) for _k in _rng.integers(0, 3, size=len(_lengths))]
    _out = pad_collate(list(zip(_seqs, _labs)))
    checks.expect(type(_out) is tuple and len(_out) == 3, "Your pad_collate should return a tuple (padded, lengths, labels).")
    _padded, _len, _lab = _out
    _B, _L = len(_lengths), max(_lengths)
    checks.expect_tensor(_padded, f"The padded batch for lengths {_lengths}", dtype=torch.float32, device=checks.DEVICE)
    checks.expect(tuple(_padded.shape) == (_B, _L),
                  f"For sequences of lengths {_lengths}, padded has shape {tuple(_padded.shape)}. Pad to the "
                  "longest sequence in this batch: a fixed length wastes compute on short batches and breaks "
                  "on a longer sequence.")
    checks.expect_tensor(_len, f"The returned lengths for true lengths {_lengths}", shape=(_B,), dtype=torch.int64,
                         why="Return the true lengths as an int64 tensor, one per sequence.")
    checks.expect(_len.cpu().tolist() != [int(_t) for _t in _labs] or _lengths == [int(_t) for _t in _labs],
                  f"For sequences of lengths {_lengths}, the second element pad_collate returned holds the labels. "
                  "Return the three tensors in the order (padded, lengths, labels): the code that unpacks the "
                  "batch relies on it.")
    checks.expect(_len.cpu().tolist() == _lengths or sorted(_len.cpu().tolist()) != sorted(_lengths),
                  f"For sequences of lengths {_lengths}, lengths is {_len.cpu().tolist()}: pad_collate changed the "
                  "order of the samples. Keep the order of `batch`, so that row i of padded, lengths[i] and "
                  "labels[i] all belong to sample i of the batch, as the DataLoader's sampler ordered them.")
    checks.expect(_len.cpu().tolist() == _lengths,
                  f"For sequences of lengths {_lengths}, lengths is {_len.cpu().tolist()}. Return the true "
                  "lengths, measured before padding: once padded, a measured 0.0 and a padding 0.0 cannot be "
                  "told apart, so the model could not know where each sequence ends.")
    for _i, _s in enumerate(_seqs):
        checks.expect_close(_padded[_i, : len(_s)], _s, f"Row {_i} of padded, first {len(_s)} entries",
                            why="Each row starts with its own sequence, in the order of the batch, and is "
                                "padded at the end.")
        checks.expect(bool((_padded[_i, len(_s):] == 0).all()),
                      f"Row {_i} of padded is not zero after the end of its sequence. Pad with zeros, after "
                      "the values.")
    checks.expect_tensor(_lab, f"The labels for lengths {_lengths}", shape=(_B,), dtype=torch.int64)
    checks.expect(_lab.cpu().tolist() == [int(_t) for _t in _labs],
                  "The returned labels are not the samples' labels in the order of the batch: labels[i] must be "
                  "the label of sample i of `batch` (stack them in that order).")


_seqs64 = [torch.tensor([1.5, 0.0, 2.5], dtype=torch.float64, device=checks.DEVICE),
           torch.tensor([4.0], dtype=torch.float64, device=checks.DEVICE)]
_out = pad_collate([(_s, torch.tensor(_k, device=checks.DEVICE)) for _k, _s in enumerate(_seqs64)])
checks.expect_tensor(_out[0], "The padded batch for float64 sequences", dtype=torch.float64, device=checks.DEVICE,
                     why="padded must have the dtype and the device of the values. Build it from them "
                         "(values.new_zeros, or pad_sequence): torch.zeros makes float32 on the CPU whatever the "
                         "data, so a batch of GPU data would silently leave the GPU.")
# Tensors on the meta device have a shape and a device but no values: padded must come out on that device.
_meta_why = ("A collate function keeps the batch on the device of its samples: make padded from the values "
             "(values.new_zeros, torch.zeros(..., device=values.device), or pad_sequence). A bare torch.zeros(...) "
             "always allocates on the CPU, so a batch of GPU data would silently leave the GPU. (This test gives "
             "pad_collate tensors on the meta device, which have a shape and a device but no values.)")
_meta_batch = [(torch.empty(_n, device="meta"), torch.tensor(_k)) for _k, _n in enumerate([3, 5, 2])]
try:
    _meta_out = pad_collate(_meta_batch)
except NotImplementedError as _err:  # copying meta values into a tensor elsewhere
    if "copy out of meta" not in str(_err):
        raise
    checks.expect(False, "pad_collate copied the values into a tensor on another device than theirs. " + _meta_why)
except RuntimeError as _err:
    if "expected device" in str(_err) or "same device" in str(_err):
        checks.expect(False, "pad_collate combined the values with a tensor on another device. " + _meta_why)
    _meta_out = None  # it reads a number from a tensor of the values' device (fine on a real device): no verdict
if type(_meta_out) is tuple and len(_meta_out) == 3 and type(_meta_out[0]) is torch.Tensor:
    checks.expect(_meta_out[0].device.type == "meta",
                  f"pad_collate made padded on {_meta_out[0].device.type}, not on the device of the values. " + _meta_why)


class _Seqs(torch.utils.data.Dataset):
    def __init__(self, seqs):
        self.seqs = seqs

    def __len__(self):
        return len(self.seqs)

    def __getitem__(self, i):
        return self.seqs[i], torch.tensor(i % 3)


_seqs = [_s.cpu() for _s in _sequences([int(_n) for _n in _rng.integers(1, 10, size=11)])]
_seen = 0
for _padded, _len, _lab in torch.utils.data.DataLoader(_Seqs(_seqs), batch_size=4, collate_fn=pad_collate):
    checks.expect(_padded.shape[0] == _len.shape[0] == _lab.shape[0],
                  "In a DataLoader, padded, lengths and labels should have one entry per sample of the batch "
                  "(the last batch is smaller).")
    checks.expect(_len.tolist() == [len(_s) for _s in _seqs[_seen:_seen + len(_len)]],
                  "In a DataLoader, the lengths are not the true lengths of the batch's sequences.")
    _seen += len(_len)
checks.expect(_seen == 11,
              f"A DataLoader with pad_collate yielded {_seen} samples of 11. Return one row, one length and one "
              "label for every sample of the batch.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-loaders"
# ## 5 · Splits, and loaders for training and for evaluation
#
# A validation set measures how the model does on data it never trained on, so it must be held
# out, and it must look like the rest of the data. Taking "the last 20 %" fails the second
# condition whenever the data are sorted (by class, by date, by source), which they usually
# are. `random_split(dataset, [n_train, n_val], generator=...)` picks the validation samples at
# random. It returns two `Subset`s: light views that hold a list of indices into the same
# Dataset (no data are copied). Seed it with a generator of its own, so that every run gets
# the *same* split: a split that changes from run to run moves validation samples into
# training the moment you compare runs or resume one.
#
# The two loaders then differ on purpose:
# - **training**: `shuffle=True` with a seeded generator (a new order every epoch, the same
#   sequence of orders every run), and `drop_last=True`, so that every step sees a full batch
#   (a last batch of one or two samples gives a noisy step, and batch normalisation refuses a
#   training batch of a single vector);
# - **evaluation**: no shuffle and no `drop_last`: every validation sample counted exactly once,
#   in a fixed order.
#
# (A `Subset` shares its Dataset's transform. When training needs augmentation and validation
# must not have it, build two Datasets over the same data with different transforms, split the
# *indices* once, and wrap each Dataset in a `Subset` with its own indices.)
#
# `make_loaders_broken` below makes all the classic mistakes at once. The cell runs it on the
# digits sorted by label and prints the symptoms.

# %% role="locked" grade_id="loaders-broken"
def make_loaders_broken(dataset, batch_size, val_fraction, seed):
    n_val = int(len(dataset) * val_fraction)
    n_train = len(dataset) - n_val
    train_set = Subset(dataset, range(n_train))                 # the first rows for training...
    val_set = Subset(dataset, range(n_train, len(dataset)))     # ...and the last ones for validation
    train_loader = DataLoader(train_set, batch_size=batch_size)
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=True, drop_last=True)
    return train_loader, val_loader


_order = np.argsort(digits.target, kind="stable")  # the digits sorted by label, as files often are
sorted_digits = TensorDataset(torch.as_tensor(digits.images[_order], dtype=torch.float32)[:, None] / 16,
                              torch.as_tensor(digits.target[_order]))
_train, _val = make_loaders_broken(sorted_digits, batch_size=64, val_fraction=0.2, seed=0)
_first_epoch1, _first_epoch2 = next(iter(_train))[1], next(iter(_train))[1]
print("labels present in the validation set:", sorted(set(sorted_digits.tensors[1][_val.dataset.indices].tolist())))
print("labels present in the first training batch:", sorted(set(_first_epoch1.tolist())))
print("the first training batch of epoch 2 is the same as in epoch 1:", torch.equal(_first_epoch1, _first_epoch2))
print("validation samples evaluated per epoch:", sum(len(_y) for _x, _y in _val), "of", len(_val.dataset))


# %% [markdown] role="prose" grade_id="md-loaders-exercise"
# ### Exercise 5 · Fix `make_loaders`
#
# Write `make_loaders(dataset, batch_size, val_fraction, seed)` returning
# `(train_loader, val_loader)`:
# - `n_val = int(len(dataset) * val_fraction)` samples for validation, the rest for training,
#   chosen by `random_split` with a generator seeded with `seed`;
# - `train_loader`: batches of `batch_size`, shuffled by a generator of its own seeded with
#   `seed`, incomplete last batch dropped;
# - `val_loader`: batches of `batch_size`, in a fixed order, every validation sample exactly
#   once;
# - `num_workers=0` (the default) for both.
#
# The same arguments must give the same split and the same sequence of training batches, epoch
# after epoch, whatever else used PyTorch's global random generator in between.
#
# <details><summary>Hint 1</summary>
#
# `torch.Generator().manual_seed(seed)` makes a generator. Both `random_split` and `DataLoader`
# take one as `generator=`. Give each its own, both seeded with `seed`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Match each symptom printed above to its cause: where the validation samples come from, which
# loader shuffles, and which one drops samples.
# </details>

# %% role="answer" grade_id="make-loaders"
def make_loaders(dataset, batch_size, val_fraction, seed):
    """A random, seeded train/validation split, and a loader for each."""
    ### BEGIN SOLUTION
    n_val = int(len(dataset) * val_fraction)
    n_train = len(dataset) - n_val
    train_set, val_set = random_split(dataset, [n_train, n_val], generator=torch.Generator().manual_seed(seed))
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(seed))
    val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False)
    return train_loader, val_loader
    ### END SOLUTION


# %% role="test" grade_id="test-loaders-sanity" points=1
_out = make_loaders(torch.utils.data.TensorDataset(torch.arange(50)), batch_size=8, val_fraction=0.2, seed=0)
checks.expect(type(_out) is tuple and len(_out) == 2,
              f"Your make_loaders should return a tuple (train_loader, val_loader), but it returned {checks.describe(_out)}.")
_tl, _vl = _out
checks.expect(type(_tl) is torch.utils.data.DataLoader and type(_vl) is torch.utils.data.DataLoader, "Your make_loaders should return two DataLoaders.")
checks.expect_equal(len(_vl.dataset), 10, "The size of the validation set for 50 samples and val_fraction=0.2",
                    why="n_val = int(len(dataset) * val_fraction).")
checks.expect_equal(len(_tl.dataset), 40, "The size of the training set for 50 samples and val_fraction=0.2",
                    why="The samples that are not in the validation set, and only those, are for training.")
print("make_loaders looks right so far:", len(_tl), "training batches,", len(_vl), "validation batches")


# %% role="test" grade_id="test-loaders-split" points=2
# Hidden tests: which samples land in each set, for equal and for different seeds.
### BEGIN HIDDEN TESTS
class _Idx(torch.utils.data.Dataset):  # sample i is the number i
    def __len__(self):
        return 103

    def __getitem__(self, i):
        return torch.tensor(i)


def _split(seed, global_seed):  # the samples in each loader's dataset
    with checks.seeded(global_seed):  # whatever else used the global generator
        _tl, _vl = make_loaders(_Idx(), batch_size=10, val_fraction=0.25, seed=seed)
    _train = [int(_tl.dataset[_i]) for _i in range(len(_tl.dataset))]
    _val = [int(_vl.dataset[_i]) for _i in range(len(_vl.dataset))]
    return _tl, _vl, _train, _val


_tl, _vl, _train, _val = _split(5, 100)
checks.expect(not set(_train) & set(_val),
              "Some samples are in both the training and the validation set. Every sample belongs to exactly "
              "one of them, or the validation score measures memorisation.")
checks.expect(len(_vl.dataset) == 25 and len(_tl.dataset) == 78,
              f"For 103 samples and val_fraction=0.25 the sets have {len(_tl.dataset)} and {len(_vl.dataset)} "
              "samples; n_val = int(len(dataset) * val_fraction), and the rest is for training.")
checks.expect(sorted(_val) not in (list(range(78, 103)), list(range(25))),
              "The validation set is a block of consecutive samples. Data are often sorted (by class, by "
              "date), so a block is not a fair sample of them: choose the validation samples at random "
              "with random_split.")
checks.expect(sorted(_val) == sorted(_split(5, 200)[3]),
              "Your make_loaders gave two different splits for the same seed (only PyTorch's global generator "
              "differed in between). Seed the split with a generator of its own, so every run validates on "
              "the same samples.")
checks.expect(sorted(_val) != sorted(_split(6, 100)[3]),
              "Your make_loaders gave the same split for seeds 5 and 6: the split should be drawn with a generator "
              "seeded with the seed argument.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-loaders-train" points=3
# Hidden tests compare the training batches over two epochs, across seeds and across runs (with other random numbers
# drawn in between).
### BEGIN HIDDEN TESTS
class _Idx(torch.utils.data.Dataset):  # sample i is the number i
    def __len__(self):
        return 103

    def __getitem__(self, i):
        return torch.tensor(i)


def _two_epochs(seed, global_seed):
    with checks.seeded(global_seed):  # whatever else used the global generator...
        _tl, _vl = make_loaders(_Idx(), batch_size=10, val_fraction=0.25, seed=seed)
        torch.rand(global_seed)  # ...before and after the loaders were made
        return [[[int(_v) for _v in _b] for _b in _tl] for _epoch in range(2)], _tl


def _positions(batches, loader):  # where each sample sits in the training set: the shuffle itself
    _where = {int(loader.dataset[_j]): _j for _j in range(len(loader.dataset))}
    return [_where[_v] for _b in batches for _v in _b]


_epochs, _tl = _two_epochs(5, 100)
_sizes = [len(_b) for _b in _epochs[0]]
checks.expect(all(_n == 10 for _n in _sizes),
              f"The training batches have sizes {_sizes} for 78 training samples and batch_size=10. Drop the "
              "incomplete last batch when training, so every step sees a full batch.")
checks.expect(_epochs[0] != _epochs[1],
              "Two training epochs visited the samples in the same order: the training loader does not "
              "shuffle. Shuffle the training data, so every epoch mixes the samples in a new order.")
_plain = [[int(_v) for _v in _b] for _b in torch.utils.data.DataLoader(_tl.dataset, batch_size=10, drop_last=True)]
checks.expect(_epochs[0] != _plain,
              "The first training epoch visits the samples in the order of the training set: the training "
              "loader does not shuffle.")
_rerun, _tl_rerun = _two_epochs(5, 200)
_members = sorted(int(_tl.dataset[_j]) for _j in range(len(_tl.dataset)))
checks.expect(sorted(int(_tl_rerun.dataset[_j]) for _j in range(len(_tl_rerun.dataset))) == _members,
              "Two calls with the same seed gave different training sets, because PyTorch's global generator "
              "was in a different state: the split is not reproducible. Give random_split a seeded generator "
              "of its own.")
checks.expect(_rerun == _epochs,
              "Two calls with the same seed gave different training batches, because PyTorch's global "
              "generator was in a different state. Give the training loader a seeded generator of its own, "
              "so the sequence of epochs is reproducible. (Seeding the global generator with "
              "torch.manual_seed inside make_loaders is not enough: anything that draws random numbers "
              "between making the loader and iterating over it changes the order.)")
_epochs6, _tl6 = _two_epochs(6, 100)
checks.expect(_positions(_epochs6[0], _tl6) != _positions(_epochs[0], _tl),
              "Seeds 5 and 6 shuffled the training set in the same way: seed the loader's generator with the "
              "seed argument.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-loaders-val" points=2
# Hidden tests read the validation loader twice.
### BEGIN HIDDEN TESTS
class _Idx(torch.utils.data.Dataset):  # sample i is the number i
    def __len__(self):
        return 103

    def __getitem__(self, i):
        return torch.tensor(i)


with checks.seeded(0):
    _tl, _vl = make_loaders(_Idx(), batch_size=10, val_fraction=0.25, seed=5)
    _first = [int(_v) for _b in _vl for _v in _b]
    _second = [int(_v) for _b in _vl for _v in _b]
_subset = [int(_vl.dataset[_i]) for _i in range(len(_vl.dataset))]
checks.expect(sorted(_first) == sorted(_subset),
              f"One pass over the validation loader gave {len(_first)} samples for a validation set of "
              f"{len(_subset)}. Evaluation must see every validation sample exactly once: keep the last, "
              "smaller batch (no drop_last).")
checks.expect(_first == _second and _first == _subset,
              "The validation loader changes the order of the samples. Do not shuffle for evaluation: the "
              "metric does not depend on the order, and a fixed order makes results repeatable and lets "
              "predictions line up with their samples.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-sampler"
# ## 6 · Samplers for imbalanced classes
#
# When one class makes up 90 % of the data, a model scores 90 % accuracy by always predicting
# it. Gradients are dominated by that class, and the rare class shows up in one batch out of
# several. Two remedies: weight the loss (`nn.CrossEntropyLoss(weight=...)`), or change what
# the loader draws. The second is the job of a **sampler**, the object that decides which
# indices an epoch visits (`shuffle=True` is just `RandomSampler`).
#
# `WeightedRandomSampler(weights, num_samples, replacement=True)` draws `num_samples` indices,
# index `i` with a probability proportional to `weights[i]`. So the weights are **per sample**:
# one number for each index of the Dataset. Give each sample the weight `1 / (size of its
# class)`: every class then has the same total weight, and the classes are drawn equally often.
# Drawing **with replacement** is what makes this possible: a class of 10 samples can only be
# drawn 300 times if its samples may repeat.
#
# What it costs: rare samples repeat often (augmentation helps against memorising them), and an
# "epoch" becomes `num_samples` draws rather than one pass over the data. A sampler replaces
# shuffling: pass `sampler=` and leave `shuffle` alone (the DataLoader refuses both). Balance
# the training loader only: evaluate on the real class distribution, the one the model will meet.
#
# ### Exercise 6 · A balanced sampler
#
# Write `balanced_sampler(labels, generator=None)`. `labels` is a 1-D `int64` tensor of class
# ids (on the CPU); the ids need not be consecutive: some ids between 0 and the largest one may
# not occur at all. Return a `WeightedRandomSampler` that draws `len(labels)` indices with
# replacement, every class equally likely, using `generator` for its randomness. Use it as
# `DataLoader(dataset, batch_size=..., sampler=balanced_sampler(labels))`.
#
# <details><summary>Hint 1</summary>
#
# `torch.bincount(labels)` counts how often each class id occurs (position `k` holds the count
# of id `k`, zero for ids that never occur). Indexing those counts with `labels` gives every
# sample the size of its own class.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The weights need not sum to one; the sampler normalises them. They must be floats, one per
# sample.
# </details>

# %% role="answer" grade_id="balanced-sampler"
def balanced_sampler(labels, generator=None):
    """A WeightedRandomSampler drawing len(labels) indices, every class equally likely."""
    ### BEGIN SOLUTION
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)
    ### END SOLUTION


# %% role="test" grade_id="test-sampler-sanity" points=1
_labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2])
_sampler = balanced_sampler(_labels, generator=torch.Generator().manual_seed(0))
checks.expect(len(_sampler) == len(_labels), f"The sampler's length is {len(_sampler)}; it should draw len(labels) indices.")
_drawn = list(_sampler)
checks.expect(len(_drawn) == len(_labels) and all(type(_i) is int and 0 <= _i < len(_labels) for _i in _drawn),
              "Iterating the sampler should give len(labels) indices, ints between 0 and len(labels) - 1.")
print("indices drawn:", _drawn, "-> labels:", _labels[_drawn].tolist())


# %% role="test" grade_id="test-sampler" points=3
# Hidden tests measure class frequencies over many draws (fixed seeds, generous margins), with class ids 0, 1, 2 and then 0, 3, 7,
# and compare the draws of successive epochs.
### BEGIN HIDDEN TESTS
def _imbalanced(ids):
    _perm = torch.randperm(1000, generator=torch.Generator().manual_seed(7))
    return torch.cat([torch.full((800,), ids[0]), torch.full((150,), ids[1]), torch.full((50,), ids[2])])[_perm]


def _draw(labels, seed, global_seed, epochs=1):
    with checks.seeded(global_seed):  # whatever else used the global generator
        _sampler = balanced_sampler(labels, generator=torch.Generator().manual_seed(seed))
        return torch.tensor([int(_i) for _epoch in range(epochs) for _i in _sampler], dtype=torch.int64)


def _shares(labels, drawn, ids):
    _freq = torch.bincount(labels[drawn], minlength=8).double() / len(drawn)
    return {_c: round(float(_freq[_c]), 2) for _c in ids}


_labels = _imbalanced((0, 1, 2))
checks.expect(len(balanced_sampler(_labels)) == 1000, "The sampler's length should be len(labels): draw one index per sample.")
_drawn = _draw(_labels, 0, 1, epochs=3)
checks.expect(len(_drawn) == 3000 and int(_drawn.min()) >= 0 and int(_drawn.max()) < 1000,
              "Three passes over the sampler should give 3000 indices between 0 and len(labels) - 1.")
checks.expect(not torch.equal(_drawn[:1000], _drawn[1000:2000]),
              "Two passes over your sampler drew exactly the same indices. A DataLoader iterates its sampler once "
              "per epoch, and a random sampler draws afresh each time, so every epoch sees a new selection: return "
              "a WeightedRandomSampler (it draws from its generator whenever it is iterated), not indices drawn "
              "once in advance.")
_used = len(set(_drawn.tolist()))
checks.expect(_used > 500 or int(_drawn.max()) >= 3,   # only indices 0, 1, 2: three weights, one per class
              f"Over 3000 draws the sampler used only {_used} different samples out of 1000, all among the "
              "first three indices. The weights are per sample: give one weight to every index (len(labels) of "
              "them), not one per class.")
checks.expect(_used > 500,
              f"Over 3000 draws the sampler used only {_used} different samples out of 1000: a few samples carry "
              "almost all the weight. Give every sample the weight 1 / (size of its class), so that each class "
              "gets the same total weight, shared evenly among its samples.")
_s = _shares(_labels, _drawn, (0, 1, 2))
if all(abs(_s[_c] - _p) < 0.03 for _c, _p in [(0, 0.8), (1, 0.15), (2, 0.05)]):
    checks.expect(False, f"The sampler drew the classes with shares {_s}: the data's own imbalance. Drawing "
                         "len(labels) indices without replacement visits every sample exactly once, whatever the "
                         "weights; draw with replacement, so that a small class can be drawn more often than it "
                         "has samples.")
if _s[0] > 0.85:
    checks.expect(False, f"The sampler drew the classes with shares {_s}: even more imbalanced than the data "
                         "(80 %, 15 %, 5 %). The weights favour the large class: weight each sample by the inverse "
                         "of its class size, so every class gets the same total weight.")
checks.expect(all(0.25 <= _f <= 0.42 for _f in _s.values()),
              f"With classes of 800, 150 and 50 samples, the sampler drew them with shares {_s}; a balanced "
              "sampler draws each class about equally often. Weight each sample by the inverse of its class "
              "size, and draw with replacement, so that a small class can be drawn more often than it has samples.")
checks.expect(torch.equal(_draw(_labels, 0, 2), _drawn[:1000]) and not torch.equal(_draw(_labels, 1, 1), _drawn[:1000]),
              "Samplers given generators seeded alike drew different indices (or generators seeded differently "
              "drew the same ones). Pass the generator to the WeightedRandomSampler, so that its draws are "
              "reproducible.")
_gapped = _imbalanced((0, 3, 7))
try:
    _drawn = _draw(_gapped, 0, 1, epochs=3)
except IndexError:
    checks.expect(False, "Your balanced_sampler raised IndexError for labels whose class ids are 0, 3 and 7. Count the "
                         "samples per class id (torch.bincount), so that counts[label] is the size of that label's "
                         "class even when some ids never occur.")
_s = _shares(_gapped, _drawn, (0, 3, 7))
checks.expect(all(0.25 <= _f <= 0.42 for _f in _s.values()),
              f"With class ids 0, 3 and 7 (800, 150 and 50 samples), the sampler drew them with shares {_s}. "
              "Count the samples per class id, so that every class gets the same total weight.")
with checks.seeded(0):
    _loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(_labels), batch_size=100,
                                          sampler=balanced_sampler(_labels, generator=torch.Generator().manual_seed(3)))
    _counts = torch.bincount(torch.cat([_b for (_b,) in _loader]), minlength=3)
checks.expect(int(_counts.sum()) == 1000 and all(250 <= int(_c) <= 420 for _c in _counts),
              "In a DataLoader, one epoch with your sampler should give 1000 samples with the three classes about "
              "equally represented.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-transforms"
# ## 7 · Transforms: augmenting the training data, and only it
#
# A model that sees every training image in exactly one position and orientation learns that
# position too. **Data augmentation** shows it slightly different versions each time it meets a
# sample: shifted by a pixel, turned by a few degrees, a little brighter. The label does not
# change, so the model learns what does not depend on those details. The versions are drawn
# afresh at every access, which is why a Dataset calls its transform in `__getitem__`: epoch 2
# sees other versions than epoch 1, at no cost in memory.
#
# `torchvision.transforms.v2` holds the usual ones. Each is a module you call on an image
# tensor of shape `(C, H, W)` (or a batch, `(..., C, H, W)`): `v2.RandomAffine(degrees=10,
# translate=(0.1, 0.1))` turns and shifts; `v2.RandomResizedCrop`, `v2.ColorJitter` and
# `v2.RandomErasing` do what they say; `v2.Normalize(mean, std)` is not random at all;
# `v2.Compose([...])` chains them. The random ones draw from PyTorch's global generator, so a
# seed makes a run repeatable.
#
# Augmentation is for **training only**. The validation set measures how the model does on the
# data it will really meet, and that data is not turned or shifted: augmenting it measures
# something else, and a different something on every evaluation. The trap is the one section 5
# mentioned: `random_split` returns `Subset`s of *one* Dataset, and they share its transform.
# The way out is two Datasets over the same arrays, one with the augmentation and one without,
# and one split of the *indices*, used for both.

# %% role="locked" grade_id="augment-demo"
from torchvision.transforms import v2

augment = v2.RandomAffine(degrees=12, translate=(0.125, 0.125))   # up to 12 degrees and one pixel
_plain = DigitsDataset(digits.images[:1], digits.target[:1])[0][0]
torch.manual_seed(0)
_versions = [augment(_plain) for _ in range(3)]
print("an augmented image keeps its shape and dtype:", tuple(_versions[0].shape), _versions[0].dtype)
print("three accesses, three versions: mean absolute change from the original",
      [round((v - _plain).abs().mean().item(), 3) for v in _versions])


# %% [markdown] role="prose" grade_id="md-augmented-splits"
# ### Exercise 7 · Augment the training split only
#
# Write `augmented_splits(images, labels, val_fraction, seed, augment)` returning
# `(train_set, val_set)`, two Datasets built with your `DigitsDataset` over the same arrays:
# - the split: `n_val = int(N * val_fraction)` samples for validation, the rest for training,
#   chosen at random by a generator seeded with `seed` (the same seed gives the same split);
#   every sample in exactly one of the two;
# - `train_set[i]` returns `(augment(image), label)`, a new augmented version at every access;
# - `val_set[i]` returns the plain `(image, label)`: `augment` is never called for it.
#
# <details><summary>Hint 1</summary>
#
# `torch.randperm(N, generator=torch.Generator().manual_seed(seed))` is a random order of the
# indices; its first `n_val` entries can be the validation indices, the rest the training ones.
# (`random_split` over `range(N)` works too.)
# </details>
#
# <details><summary>Hint 2</summary>
#
# `DigitsDataset(images, labels, transform=augment)` and `DigitsDataset(images, labels)` hold
# the same samples; `Subset(dataset, indices)` keeps some of them.
# </details>

# %% role="answer" grade_id="augmented-splits"
def augmented_splits(images, labels, val_fraction, seed, augment):
    """(train_set, val_set): one seeded split of the indices; augment on the training side only."""
    ### BEGIN SOLUTION
    n = len(labels)
    n_val = int(n * val_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    train_set = Subset(DigitsDataset(images, labels, transform=augment), order[n_val:])
    val_set = Subset(DigitsDataset(images, labels), order[:n_val])
    return train_set, val_set
    ### END SOLUTION


# %% role="test" grade_id="test-augmented-splits-sanity" points=1
_train_set, _val_set = augmented_splits(digits.images, digits.target, 0.2, 0, augment)
checks.expect(len(_val_set) == int(len(digits.target) * 0.2) and len(_train_set) + len(_val_set) == len(digits.target),
              f"The split has {len(_train_set)} training and {len(_val_set)} validation samples; for "
              f"{len(digits.target)} samples and val_fraction=0.2, n_val = int(N * 0.2) and the rest train.")
_img, _label = _val_set[0]
checks.expect_tensor(_img, "a validation image", shape=(1, 8, 8), dtype=torch.float32)
print(f"{len(_train_set)} training samples (augmented), {len(_val_set)} validation samples (plain)")


# %% role="test" grade_id="test-augmented-splits" points=3
# Hidden tests give augmented_splits a transform of their own that marks what it touches, and
# identify every sample of both sets.
### BEGIN HIDDEN TESTS
class _Marker:
    """A transform the test controls: adds 100 to the image, and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return image + 100.0


with checks.seeded(4):
    _N = 50
    _images = np.random.default_rng(4).integers(0, 17, size=(_N, 8, 8))
    _labels = np.repeat(np.arange(10), 5)               # sorted by label, as files often are
_key = {tuple((torch.as_tensor(_images[_i], dtype=torch.float32) / 16).flatten().tolist()): _i for _i in range(_N)}


def _identify(dataset, marked):
    out = []
    for _j in range(len(dataset)):
        _img, _lab = dataset[_j]
        _img = _img - 100.0 if marked else _img
        _i = _key.get(tuple(torch.as_tensor(_img).flatten().tolist()))
        checks.expect(_i is not None and int(_lab) == int(_labels[_i]),
                      ("A training sample is not an augmented version of a sample of the data (or its label "
                       "does not match): train_set must apply augment to every image it returns, and only once."
                       if marked else
                       "A validation sample is not a plain sample of the data (or its label does not match): "
                       "validation images must come back as they are, without augment."))
        out.append(_i)
    return out


_mark = _Marker()
_tr, _va = augmented_splits(_images, _labels, 0.3, 7, _mark)
_after_build = _mark.calls
_vals = [(_va[_j][0]) for _j in range(len(_va))]
checks.expect(_mark.calls == _after_build and all(float(_v.max()) <= 1.0 for _v in _vals),
              "Validation samples come back augmented: the validation set applies the training transform. "
              "Subsets of one Dataset share its transform; build a second DigitsDataset without it for "
              "validation (section 7).")
_val_ids = _identify(_va, marked=False)
_calls = _mark.calls
_first = _tr[0][0]
checks.expect(float(_first.min()) >= 99.0,
              "Training samples come back without augmentation: augment was not called when a training "
              "sample was read. Give the training DigitsDataset transform=augment; it calls it in __getitem__.")
checks.expect(_mark.calls > _calls,
              "A training sample came back augmented, but reading it did not call augment: the augmented images "
              "were computed in advance, so every epoch sees the same versions. Augment at every access, in "
              "__getitem__.")
_tr[0]
checks.expect(_mark.calls >= _calls + 2,
              "Reading the same training sample twice called augment only once: the augmented images were "
              "computed in advance, so every epoch sees the same versions. Augment at every access.")
_train_ids = _identify(_tr, marked=True)
checks.expect(len(_val_ids) == int(_N * 0.3) and len(_train_ids) == _N - int(_N * 0.3),
              f"For {_N} samples and val_fraction=0.3 the split should be {_N - int(_N * 0.3)} / {int(_N * 0.3)}; it "
              f"is {len(_train_ids)} / {len(_val_ids)}.")
checks.expect(not (set(_val_ids) & set(_train_ids)) and len(set(_val_ids) | set(_train_ids)) == _N,
              "Some samples are in both sets, or in neither: split the indices once and use that one split for "
              "both Datasets (two random_split calls with different generators give overlapping sets).")
checks.expect(len({int(_labels[_i]) for _i in _val_ids}) >= 5,
              "The validation samples hold only a few of the classes: on data sorted by label, the split took a "
              "block of neighbours. Choose the validation samples at random (Hint 1).")
_again = _identify(augmented_splits(_images, _labels, 0.3, 7, _Marker())[1], marked=False)
checks.expect(_again == _val_ids,
              "Two calls with the same seed gave different splits: seed a generator of your own with seed and "
              "give it to randperm or random_split.")
_other = _identify(augmented_splits(_images, _labels, 0.3, 8, _Marker())[1], marked=False)
checks.expect(_other != _val_ids, "A different seed gave the same split: the split must come from the seed.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A Dataset answers two questions: how many samples, and what sample `i` is. It returns one
#   sample per index, always as tensors of the same structure and dtype, and applies its
#   transform at every access.
# - A DataLoader decides the order (a sampler), the grouping (`batch_size`, `drop_last`) and the
#   assembly (`collate_fn`) of the batches, optionally in worker processes that each hold a copy
#   of the Dataset.
# - Large data are read lazily: the Dataset keeps addresses, `__getitem__` reads.
# - Variable-length samples need a `collate_fn` that pads per batch and keeps the true lengths.
# - Training and evaluation load differently: a random, seeded split; shuffling with a seeded
#   generator and full batches for training; a fixed order and every sample once for
#   evaluation; a weighted sampler when classes are imbalanced.
# - Augmentation (`torchvision.transforms.v2`) draws new versions of the training samples at
#   every access, and never touches the validation set: two Datasets, one split of the indices.
#
# Next, in **07 · Evaluation**, you will use the evaluation loader to measure a model without
# changing it.
