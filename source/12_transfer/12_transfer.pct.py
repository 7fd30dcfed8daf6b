# %% [markdown] role="prose" grade_id="title"
# # 12 · Transfer learning: reusing a pretrained backbone
#
# **Time:** about 1 h 30 min of work (3,000 words to read, 6 exercises).
#
# Training a network from random weights needs many labelled examples: the early layers must
# discover edges and strokes, the middle ones how strokes combine, and only the last layer
# maps all that to the classes you care about. When labels are scarce, start from a network
# that has already learnt the first two on a related task, with plenty of data, and teach it
# only what is new. That is **transfer learning**: keep the pretrained **backbone** (everything
# up to the last layer), put a new **head** on it for your classes, and fine-tune.
#
# The idea is simple; the details decide whether it helps. Which parameters should still
# learn, and how fast? What happens to the pretrained batch-norm statistics while you
# fine-tune? And did transfer actually beat training from scratch, measured fairly?
#
# **By the end of this notebook you will be able to:**
# - build a `torchvision.models` architecture with `weights=None` and say what its head is;
# - load pretrained weights into it safely, and replace its head with a fresh one for new
#   classes;
# - freeze part of a network by name, and predict which parameters still learn;
# - give the head and the backbone their own learning rates with optimiser parameter groups;
# - keep the batch-norm statistics of frozen layers frozen while fine-tuning (eval mode on
#   those layers);
# - measure the gain of transfer over training from scratch, with the same data and budget.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision import models

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-backbone"
# ## 1 · Backbone, head, and what "frozen" means
#
# `torchvision.models` holds the classic architectures as plain `nn.Module`s. Each builder
# takes a `weights` argument: `models.resnet18(weights=None)` gives the architecture with
# random initial weights; `weights=models.ResNet18_Weights.DEFAULT` would download weights
# pretrained on ImageNet (1.3 million photos) the first time. Nothing is downloaded in this
# course: section 2 pretrains a backbone for you, in the notebook, and saves it to a file,
# which stands in for the download.
#
# A ResNet-18 reads an image through a *stem* (`conv1`, `bn1`, `relu`, `maxpool`), four
# *stages* (`layer1` to `layer4`, each two residual blocks), a global average pooling
# (`avgpool`) and a single linear layer, **`fc`**: the head. Print `model` to see the names;
# they are also the prefixes of its `state_dict` keys (`layer1.0.conv1.weight`, `fc.bias`).
# `model.fc.in_features` is the width of the features the backbone hands to the head.
#
# **Freezing** a parameter means `requires_grad = False`: autograd computes no gradient for
# it, so no optimiser step can change it. Two things are easy to get wrong:
#
# - Freezing applies to the parameters that exist *when you freeze*. A head you create
#   afterwards is a new module with new parameters, which require gradients by default.
# - `requires_grad` says nothing about **buffers**. A batch-norm layer keeps running
#   estimates of the mean and variance of its inputs (`running_mean`, `running_var`), and
#   updates them in every forward pass made in **training mode**, frozen or not, inside
#   `torch.no_grad()` or not. Only **eval mode** (`module.eval()`) stops those updates (and
#   makes the layer normalise with its stored statistics instead of the batch's). Conversely,
#   `eval()` freezes nothing: it changes behaviour, not `requires_grad`.
#
# ### Exercise 1 · Predict, then verify
#
# Each item starts from a fresh `model = models.resnet18(weights=None)`. **Without running
# anything**, fill in `transfer_predictions`:
#
# | key | code | what to predict |
# |---|---|---|
# | `"fc_in_features"` | | `model.fc.in_features` (an int) |
# | `"new_head_params"` | `nn.Linear(model.fc.in_features, 5)` | its number of parameters (an int) |
# | `"freeze_then_new_head"` | `model.requires_grad_(False)`, then `model.fc = nn.Linear(512, 5)` | the number of parameters of `model` that require grad (an int) |
# | `"new_head_then_freeze"` | `model.fc = nn.Linear(512, 5)`, then `model.requires_grad_(False)` | the same count (an int) |
# | `"eval_freezes"` | `model.eval()` | do all of `model`'s parameters now have `requires_grad == False`? (a bool) |
# | `"frozen_train_updates_stats"` | `model.requires_grad_(False)`, `model.train()`, then a forward pass of a batch of images inside `torch.no_grad()` | does `model.bn1.running_mean` change? (a bool) |
# | `"eval_updates_stats"` | `model.eval()`, then the same forward pass | does `model.bn1.running_mean` change? (a bool) |
#
# <details><summary>Hint 1</summary>
#
# A linear layer from `n` inputs to `m` outputs holds an `(m, n)` weight and `m` biases.
# ResNet-18's last stage has 512 channels.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `requires_grad_(False)` walks the parameters the model has at that moment. Running
# statistics are buffers: which switch governs them, `requires_grad`, `no_grad`, or the mode?
# </details>

# %% role="answer" grade_id="transfer-predictions"
transfer_predictions = {
    "fc_in_features": None,            # an int
    "new_head_params": None,           # an int
    "freeze_then_new_head": None,      # an int
    "new_head_then_freeze": None,      # an int
    "eval_freezes": None,              # True or False
    "frozen_train_updates_stats": None,
    "eval_updates_stats": None,
}
### BEGIN SOLUTION
transfer_predictions = {
    "fc_in_features": 512,
    "new_head_params": 2565,
    "freeze_then_new_head": 2565,
    "new_head_then_freeze": 0,
    "eval_freezes": False,
    "frozen_train_updates_stats": True,
    "eval_updates_stats": False,
}
### END SOLUTION

# %% role="test" grade_id="test-transfer-predictions" points=3
# Hidden tests build ResNet-18s, run each item and compare with your predictions.
_keys = {"fc_in_features", "new_head_params", "freeze_then_new_head", "new_head_then_freeze", "eval_freezes",
         "frozen_train_updates_stats", "eval_updates_stats"}
checks.expect(isinstance(transfer_predictions, dict) and set(transfer_predictions) == _keys,
              "`transfer_predictions` should be a dict with exactly the keys " + ", ".join(sorted(_keys)) + ".")
for _k in ("fc_in_features", "new_head_params", "freeze_then_new_head", "new_head_then_freeze"):
    checks.expect(type(transfer_predictions[_k]) is int,
                  f"transfer_predictions[{_k!r}] should be an int; it is {checks.describe(transfer_predictions[_k])}.")
for _k in ("eval_freezes", "frozen_train_updates_stats", "eval_updates_stats"):
    checks.expect(type(transfer_predictions[_k]) is bool,
                  f"transfer_predictions[{_k!r}] should be True or False; it is "
                  f"{checks.describe(transfer_predictions[_k])}.")
### BEGIN HIDDEN TESTS
def _trainable(_m):
    return sum(_p.numel() for _p in _m.parameters() if _p.requires_grad)


with checks.seeded(0):
    _m = models.resnet18(weights=None)
    _truth = {"fc_in_features": _m.fc.in_features,
              "new_head_params": sum(_p.numel() for _p in nn.Linear(_m.fc.in_features, 5).parameters())}
    _m.requires_grad_(False)
    _m.fc = nn.Linear(512, 5)
    _truth["freeze_then_new_head"] = _trainable(_m)
    _m = models.resnet18(weights=None)
    _m.fc = nn.Linear(512, 5)
    _m.requires_grad_(False)
    _truth["new_head_then_freeze"] = _trainable(_m)
    _m = models.resnet18(weights=None)
    _m.eval()
    _truth["eval_freezes"] = all(not _p.requires_grad for _p in _m.parameters())
    _x = torch.rand(4, 3, 32, 32)
    _m = models.resnet18(weights=None)
    _m.requires_grad_(False)
    _m.train()
    _before = _m.bn1.running_mean.clone()
    with torch.no_grad():
        _m(_x)
    _truth["frozen_train_updates_stats"] = not torch.equal(_before, _m.bn1.running_mean)
    _m = models.resnet18(weights=None)
    _m.eval()
    _before = _m.bn1.running_mean.clone()
    with torch.no_grad():
        _m(_x)
    _truth["eval_updates_stats"] = not torch.equal(_before, _m.bn1.running_mean)
_why = {
    "fc_in_features": "The head reads the backbone's features: as many as the channels of the last stage, after "
                      "global average pooling (see Hint 1).",
    "new_head_params": "A linear layer holds one weight per input per output, plus one bias per output.",
    "freeze_then_new_head": "Freezing applies to the parameters that exist when you freeze; a head created "
                            "afterwards is new and requires gradients.",
    "new_head_then_freeze": "requires_grad_(False) reaches every parameter the model has at that moment, the new "
                            "head's included.",
    "eval_freezes": "eval() changes how layers behave (dropout, batch norm), not whether parameters get gradients.",
    "frozen_train_updates_stats": "Running statistics are buffers, updated by every forward pass in training mode: "
                                  "neither requires_grad=False nor no_grad stops that (see Hint 2).",
    "eval_updates_stats": "In eval mode batch norm uses its stored statistics and leaves them unchanged.",
}
for _k in sorted(_keys):
    checks.expect_equal(transfer_predictions[_k], _truth[_k], f"Your prediction for {_k}", why=_why[_k],
                        show=False)
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-pretrain"
# ## 2 · The backbone of this notebook, pretrained here
#
# The task: classify the handwritten digits **5 to 9** of scikit-learn's digits data set,
# with only **5 labelled images per digit** (25 in all). The remaining 870 or so images of
# 5 to 9 are the validation set. The related task with plenty of labels: the **901 images of
# the digits 0 to 4**. Strokes, loops and corners look the same in both, so a network that
# learnt to tell 0 to 4 apart has features worth reusing for 5 to 9.
#
# The next cell does what a model hub would do for you, offline: it builds the backbone,
# pretrains it on 0 to 4 for three epochs (a few seconds), and saves its `state_dict` to
# `CHECKPOINT`, a file in a scratch folder. The architecture comes from
# `digits_resnet(n_classes)`:
#
# - `models.resnet18(weights=None)`, as torchvision builds it;
# - cut after `layer2`: `layer3` and `layer4` are replaced by `nn.Identity()`. An 8×8 image
#   is down to 1×1 after `layer2` (the stem and `layer2` each halve it, twice and once), so
#   the last two stages would only add 10 million parameters and seconds of CPU time;
# - a head `fc = nn.Linear(128, n_classes)`: `layer2`'s 128 channels, pooled.
#
# The images are gray, and ResNet's first convolution expects 3 colour channels: the
# loaded images repeat the gray channel three times (which is also what you do to feed gray
# images to ImageNet weights). They are standardised with the mean and standard deviation of
# the pretraining images. Labels 5 to 9 are renumbered 0 to 4.

# %% role="locked" grade_id="pretrain"
from sklearn.datasets import load_digits


def digits_resnet(n_classes):
    """torchvision's ResNet-18 (random weights), cut after layer2, with a head for n_classes."""
    model = models.resnet18(weights=None)
    model.layer3 = nn.Identity()
    model.layer4 = nn.Identity()
    model.fc = nn.Linear(128, n_classes)
    return model


def load_digit_tasks(device, shots=5, seed=0):
    """Source task (digits 0-4, all of them) and target task (digits 5-9 renumbered 0-4: `shots`
    labelled images per class for training, the rest for validation), as (N, 3, 8, 8) float32 images."""
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    source = y < 5
    x = (x - x[source].mean()) / x[source].std()
    x = x.repeat(1, 3, 1, 1)
    x_src, y_src = x[source], y[source]
    x_tgt, y_tgt = x[~source], y[~source] - 5
    order = torch.randperm(len(x_tgt), generator=torch.Generator().manual_seed(seed))
    few = torch.cat([order[y_tgt[order] == c][:shots] for c in range(5)])
    rest = torch.ones(len(x_tgt), dtype=torch.bool)
    rest[few] = False
    return [t.to(device) for t in (x_src, y_src, x_tgt[few], y_tgt[few], x_tgt[rest], y_tgt[rest])]


def evaluate_accuracy(model, images, labels):
    """The fraction of images whose highest logit is the right class (eval mode, no graph, mode restored)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(images).argmax(dim=1) == labels).sum().item()
    model.train(was_training)
    return correct / len(images)


def pretrain_backbone(path, x_src, y_src, epochs=3, seed=0):
    """Train digits_resnet(5) on the source task and save its state_dict to path."""
    torch.manual_seed(seed)
    model = digits_resnet(5).to(x_src.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x_src), generator=order).split(64):
            batch = batch.to(x_src.device)
            optimizer.zero_grad()
            F.cross_entropy(model(x_src[batch]), y_src[batch]).backward()
            optimizer.step()
    torch.save(model.state_dict(), path)
    return model


scratch = tempfile.TemporaryDirectory()    # removed when the kernel stops
CHECKPOINT = Path(scratch.name) / "digits04_resnet.pt"
x_src, y_src, x_few, y_few, x_val, y_val = load_digit_tasks(checks.DEVICE)
_source_model = pretrain_backbone(CHECKPOINT, x_src, y_src)
print(f"pretrained on {len(x_src)} images of 0-4 (accuracy on them {evaluate_accuracy(_source_model, x_src, y_src):.1%}),"
      f" saved to {CHECKPOINT.name} ({CHECKPOINT.stat().st_size / 1e6:.1f} MB)")
print(f"target task: {len(x_few)} labelled images of 5-9 for training, {len(x_val)} for validation")


# %% [markdown] role="prose" grade_id="md-build"
# ## 3 · A pretrained model with a new head
#
# Pretrained weights come as a `state_dict`, and loading one takes the same care as in 08:
# rebuild the architecture, then load the tensors into it, with `weights_only=True` (a file
# from elsewhere must not run code) and a `map_location` (a file saved on a GPU must load on
# a machine without one).
#
# The order of the steps matters. The checkpoint holds the *old* head, `fc`, trained for the
# old classes. Loading is strict by default: every key must exist, with the same shape, in the
# model you load into. So build the model as it was when it was saved (the old number of
# classes), load, and only *then* replace `fc` with a fresh layer for the new classes. Do the
# replacing first and the load fails on the head's shape; or, worse, when the old and the new
# task happen to have the same number of classes (as here: 5 and 5), it succeeds and quietly
# puts back the old head, which maps the features to the digits 0 to 4, not 5 to 9.
#
# ### Exercise 2 · `build_transfer_model`
#
# Write `build_transfer_model(checkpoint_path, n_classes, device)`: a `digits_resnet` that
# holds every pretrained tensor of the file at `checkpoint_path` (parameters *and* buffers),
# except the head, which is a freshly initialised `nn.Linear(128, n_classes)`. The file was
# saved from a `digits_resnet` whose head may have any number of classes; read it from the
# file. Load safely and portably, and return the model on `device`.
#
# <details><summary>Hint 1</summary>
#
# `state["fc.weight"].shape[0]` is the number of classes the saved head was trained for.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.load(path, map_location="cpu", weights_only=True)`, build, `load_state_dict`, then
# assign a new `nn.Linear` to `model.fc`, then `.to(device)` (last, so that the new head moves
# too).
# </details>

# %% role="answer" grade_id="build-model"
def build_transfer_model(checkpoint_path, n_classes, device):
    """A digits_resnet with the pretrained backbone of checkpoint_path and a fresh head for n_classes, on device."""
    ### BEGIN SOLUTION
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model = digits_resnet(state["fc.weight"].shape[0])
    model.load_state_dict(state)
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model.to(device)
    ### END SOLUTION


# %% role="test" grade_id="test-build-model-sanity" points=1
with checks.seeded(0):
    _model = build_transfer_model(CHECKPOINT, 5, checks.DEVICE)
checks.expect(isinstance(_model, nn.Module), f"build_transfer_model should return an nn.Module; it returned "
                                             f"{checks.describe(_model)}.")
with torch.no_grad():
    _out = _model(x_val[:4])
checks.expect_tensor(_out, "The model's output for 4 images", shape=(4, 5), dtype=torch.float32,
                     why="The new head has one output per class of the new task.")
print("build_transfer_model(CHECKPOINT, 5, DEVICE) maps (4, 3, 8, 8) to", tuple(_out.shape))

# %% role="test" grade_id="test-build-model" points=3
# Hidden tests save checkpoints of their own (random weights and batch-norm statistics, saved as
# if on a GPU, heads of 5 and 7 classes) and check every tensor of the model you build, the new
# head, the device, and that a booby-trapped file runs no code.
### BEGIN HIDDEN TESTS
import contextlib as _contextlib
import io as _io
import os as _os


class _Trap:
    def __reduce__(self):
        return (print, ("@@ code from the file ran @@",))


def _random_checkpoint(_classes):
    _m = digits_resnet(_classes)
    with torch.no_grad():
        for _name, _b in _m.named_buffers():
            if _name.endswith("running_mean"):
                _b.normal_()
            elif _name.endswith("running_var"):
                _b.uniform_(0.5, 2.0)
            else:
                _b.fill_(17)
    return {_k: _v.clone() for _k, _v in _m.state_dict().items()}


with tempfile.TemporaryDirectory() as _tmp, checks.seeded(4):
    for _old, _new in [(5, 5), (7, 3)]:
        _saved = _random_checkpoint(_old)
        _path = _os.path.join(_tmp, f"backbone{_old}.pt")
        checks.save_as_if_on(_saved, _path)
        try:
            _model = build_transfer_model(_path, _new, checks.DEVICE)
        except RuntimeError as _err:
            _text = str(_err)
            checks.expect("cuda" not in _text.lower() and "device" not in _text.lower(),
                          f"build_transfer_model fails on a checkpoint saved on a GPU: {_text.splitlines()[0]} "
                          "Tensors remember the device they were saved from; load with map_location (see Hint 2).")
            checks.expect("size mismatch" not in _text,
                          f"build_transfer_model fails on a checkpoint whose head has {_old} classes, asked for "
                          f"{_new}: {_text.splitlines()[0][:200]} Build the model with the saved head's size, load, "
                          "and only then replace the head (see Hint 1).")
            raise
        checks.expect(isinstance(_model, nn.Module), f"build_transfer_model should return an nn.Module; it "
                                                     f"returned {checks.describe(_model)}.")
        _state = _model.state_dict()
        checks.expect(isinstance(getattr(_model, "fc", None), nn.Linear)
                      and tuple(_model.fc.weight.shape) == (_new, 128),
                      f"For a checkpoint whose head has {_old} classes, build_transfer_model(path, {_new}, device) "
                      f"should have a head nn.Linear(128, {_new}); its fc is not that. The head must have one output "
                      "per class of the new task, whatever the old one had.")
        for _key, _value in _saved.items():
            if _key.startswith("fc."):
                continue
            checks.expect(_key in _state, f"The model has no entry {_key!r}: build it with digits_resnet.")
            checks.expect(_state[_key].device.type == torch.device(checks.DEVICE).type,
                          f"{_key} is on {_state[_key].device}, not on the device asked for ({checks.DEVICE}). Move "
                          "the model with .to(device) after replacing the head, so that everything moves.")
            checks.expect(torch.equal(_state[_key].cpu(), _value),
                          f"{_key} does not hold the checkpoint's value" + (
                              ": the batch-norm statistics were not loaded. They are buffers, part of the state_dict "
                              "like the weights, and the pretrained features depend on them."
                              if "running" in _key or "num_batches" in _key else
                              ": the pretrained weights were not loaded into the backbone (see Hint 2)."))
        checks.expect(not (_old == _new and torch.equal(_model.fc.weight.detach().cpu(), _saved["fc.weight"])),
                      "The model's head holds the checkpoint's old head. The old and new tasks have the same number "
                      "of classes here, so it fits, but it maps the features to the old classes: replace fc with a "
                      "fresh nn.Linear after loading.")
        checks.expect(_model.fc.weight.device.type == torch.device(checks.DEVICE).type,
                      f"The new head is on {_model.fc.weight.device}, not on {checks.DEVICE}: it was created after "
                      "the model was moved. Replace the head first, then call .to(device).")
    # On the meta device (no data), a model moved at the end must be all meta. Building the
    # model with map_location=device is also fine: on meta, that cannot load, and is skipped.
    _path = _os.path.join(_tmp, "backbone_meta.pt")
    torch.save(_random_checkpoint(5), _path)
    try:
        _meta = build_transfer_model(_path, 4, "meta")
    except (RuntimeError, NotImplementedError) as _err:
        if "meta" not in str(_err).lower():
            raise
        _meta = None
    if _meta is not None:
        _where = sorted({_t.device.type for _t in list(_meta.parameters()) + list(_meta.buffers())})
        checks.expect(_where == ["meta"],
                      f"build_transfer_model(path, 4, 'meta') returned a model with tensors on {_where}: the device "
                      "argument is ignored for part of it. Move the whole model, new head included, to device.")
    _bad = _os.path.join(_tmp, "trap.pt")
    torch.save({**_random_checkpoint(5), "note": _Trap()}, _bad)
    _out = _io.StringIO()
    with _contextlib.redirect_stdout(_out):
        try:
            build_transfer_model(_bad, 5, checks.DEVICE)
        except Exception:
            pass
    checks.expect("@@ code from the file ran @@" not in _out.getvalue(),
                  "Loading a booby-trapped file with build_transfer_model ran the code hidden in it: the file was "
                  "unpickled without restrictions. Load with weights_only=True, which rebuilds only tensors and plain "
                  "containers and refuses everything else.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-freeze"
# ## 4 · Freezing by name
#
# Which layers to freeze is a trade-off. Early layers detect generic things (edges, blobs,
# strokes) and transfer well; later layers are more specific to the old task. With very few
# labels, the more you let learn, the more the network can overfit the handful of images;
# with more labels, fine-tuning deeper pays. A common middle ground, and ours: freeze the
# stem and `layer1`, let `layer2` and the new head learn.
#
# Layers are picked by **name**, and names are dotted paths: `layer2` is a stage, `layer2.1`
# its second block, `layer2.1.bn1` a layer inside it. A parameter belongs to the submodule
# `layer2` when its full name starts with `layer2.`, *with the dot*: a network with twelve
# blocks named `block1` to `block12` would otherwise unfreeze `block10`, `block11` and
# `block12` along with `block1`. `model.get_submodule("layer2.1")` finds a submodule by its
# dotted name.
#
# ### Exercise 3 · `freeze_except`
#
# Write `freeze_except(model, trainable)`: `trainable` is a list of submodule names (as
# `model.named_modules()` gives them, dotted paths included). Afterwards, exactly the
# parameters inside those submodules require gradients, and every other parameter of `model`
# does not, whatever their flags were before. Change nothing else (no parameter values, no
# modes). Return nothing.
#
# <details><summary>Hint 1</summary>
#
# Set every parameter's flag, both ways: first all off, then on for the parameters of each
# `model.get_submodule(name)`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# If you prefer to match names: `param_name.startswith(name + ".")`. Without the dot,
# `block1` matches `block10.weight`.
# </details>

# %% role="answer" grade_id="freeze"
def freeze_except(model, trainable):
    """Make exactly the parameters inside the submodules named in trainable require gradients."""
    ### BEGIN SOLUTION
    model.requires_grad_(False)
    for name in trainable:
        model.get_submodule(name).requires_grad_(True)
    ### END SOLUTION


# %% role="test" grade_id="test-freeze-sanity" points=1
with checks.seeded(0):
    _model = digits_resnet(5)
freeze_except(_model, ["fc"])
_on = [_n for _n, _p in _model.named_parameters() if _p.requires_grad]
checks.expect(_on == ["fc.weight", "fc.bias"],
              f"After freeze_except(model, ['fc']), the parameters that require grad are {_on[:6]}"
              f"{' ...' if len(_on) > 6 else ''}; only fc.weight and fc.bias should. Freezing is requires_grad = "
              "False on each parameter (eval() does not freeze).")
print("trainable after freeze_except(model, ['fc']):", _on)

# %% role="test" grade_id="test-freeze" points=3
# Hidden tests freeze networks by dotted names, with names that share a prefix (block1, block10),
# starting from parameters that were frozen or not, and check every flag, value and mode.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

with checks.seeded(1):
    _net = nn.Sequential(_OD([(f"block{_i}", nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
                              for _i in range(1, 13)] + [("head", nn.Linear(4, 2))]))
_cases = [
    (["block1", "head"], "names that share a prefix: block1 must not unfreeze block10, block11 or block12 "
                         "(see Hint 2)"),
    (["block3.0", "block12"], "a dotted name: block3.0 is the linear layer inside block3, not its batch norm"),
    ([], "an empty list: nothing stays trainable"),
]
for _start in (True, False):
    for _names, _what in _cases:
        _net.requires_grad_(_start)
        _net.train()
        _values = {_n: _p.detach().clone() for _n, _p in _net.named_parameters()}
        try:
            freeze_except(_net, list(_names))
        except AttributeError as _err:
            checks.expect(False, f"freeze_except(model, {_names}) raised AttributeError: {_err}. A dotted name is a "
                                 "path to a submodule, not an attribute: model.get_submodule(name) follows it.")
        _want = {_n: any(_n.startswith(_name + ".") for _name in _names) for _n, _ in _net.named_parameters()}
        _wrong_on = [_n for _n, _p in _net.named_parameters() if _p.requires_grad and not _want[_n]]
        _wrong_off = [_n for _n, _p in _net.named_parameters() if not _p.requires_grad and _want[_n]]
        _was = "all trainable" if _start else "all frozen"
        checks.expect(not _wrong_on,
                      f"freeze_except(model, {_names}) on a model whose parameters were {_was} left "
                      f"{_wrong_on[:4]} requiring gradients (this case tests {_what}). Every parameter outside "
                      "the named submodules must be frozen.")
        checks.expect(not _wrong_off,
                      f"freeze_except(model, {_names}) on a model whose parameters were {_was} left "
                      f"{_wrong_off[:4]} frozen (this case tests {_what}). Set the flags both ways: the named "
                      "submodules' parameters must require gradients even if they were frozen before (see Hint 1).")
        checks.expect(all(torch.equal(_p, _values[_n]) for _n, _p in _net.named_parameters()),
                      "freeze_except changed parameter values: freezing only sets requires_grad.")
        checks.expect(all(_m.training for _m in _net.modules()),
                      "freeze_except changed the modules' train/eval mode. Freezing is about requires_grad; the mode "
                      "is a separate switch (section 5), and this function should not touch it.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-groups"
# ## 5 · Two learning rates: parameter groups
#
# The new head starts from random weights and has everything to learn; the pretrained
# layers you let learn are already good and should move only a little, or the first large,
# noisy gradients from the random head wreck what they know. So fine-tuning usually gives the
# backbone a learning rate ten or a hundred times smaller than the head's.
#
# An optimiser takes, instead of one list of parameters, a list of **parameter groups**:
# dictionaries with a `"params"` list and any setting of their own.
#
# ```python
# torch.optim.AdamW([
#     {"params": head_params, "lr": 1e-2},
#     {"params": backbone_params, "lr": 1e-3},
# ])
# ```
#
# Each parameter may appear in one group only (PyTorch refuses duplicates). And hand it only
# the parameters that should learn: an optimiser does not look at `requires_grad`. It updates
# every parameter of its groups whose `.grad` is not `None`, and a frozen parameter can still
# hold a gradient left over from before it was frozen; AdamW's weight decay would then pull it
# towards zero as well.
#
# ### Exercise 4 · `make_optimizer`
#
# Write `make_optimizer(model, head_lr, backbone_lr, head="fc")`: a `torch.optim.AdamW` (its
# other settings at their defaults) with two groups: the trainable parameters of the submodule
# named `head` at `head_lr`, and every other trainable parameter of `model` at `backbone_lr`.
# Frozen parameters belong to no group.
#
# <details><summary>Hint 1</summary>
#
# `model.get_submodule(head).parameters()` are the head's. Compare parameters by identity
# (`id(p)`), not with `==` or `in` on tensors, which compare values element by element.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Filter both lists with `p.requires_grad`.
# </details>

# %% role="answer" grade_id="optimizer"
def make_optimizer(model, head_lr, backbone_lr, head="fc"):
    """AdamW with the trainable head parameters at head_lr and the other trainable ones at backbone_lr."""
    ### BEGIN SOLUTION
    head_params = [p for p in model.get_submodule(head).parameters() if p.requires_grad]
    head_ids = {id(p) for p in head_params}
    backbone_params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    return torch.optim.AdamW([
        {"params": head_params, "lr": head_lr},
        {"params": backbone_params, "lr": backbone_lr},
    ])
    ### END SOLUTION


# %% role="test" grade_id="test-optimizer-sanity" points=1
with checks.seeded(0):
    _model = digits_resnet(5)
_model.requires_grad_(False)
_model.layer2.requires_grad_(True)
_model.fc.requires_grad_(True)
_opt = make_optimizer(_model, 1e-2, 1e-3)
checks.expect(isinstance(_opt, torch.optim.AdamW), f"make_optimizer should return a torch.optim.AdamW; it returned "
                                                   f"{checks.describe(_opt)}.")
print("parameter groups:", [(len(_g["params"]), _g["lr"]) for _g in _opt.param_groups])

# %% role="test" grade_id="test-optimizer" points=3
# Hidden tests give every parameter a gradient (frozen ones too, as if left over), take one step,
# and compare each parameter's update with AdamW's at the learning rate it should have.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

def _check_groups(_model, _head, _head_lr, _backbone_lr, _what):
    _params = dict(_model.named_parameters())
    _head_ids = {id(_p) for _p in _model.get_submodule(_head).parameters()}
    try:
        _opt = make_optimizer(_model, _head_lr, _backbone_lr, head=_head)
    except ValueError as _err:
        checks.expect(False, f"make_optimizer raised ValueError for {_what}: {str(_err).splitlines()[0]} A parameter "
                             "may belong to one group only: leave the head's parameters out of the backbone's group "
                             "(compare by id(p), see Hint 1).")
    except RuntimeError as _err:
        if "ambiguous" not in str(_err) and "must match the size" not in str(_err):
            raise  # only the symptoms of comparing tensors by value are explained here
        checks.expect(False, f"make_optimizer raised RuntimeError for {_what}: {str(_err).splitlines()[0]} Testing "
                             "whether a tensor is `in` a list compares values element by element; to tell whether "
                             "a parameter is one of the head's, compare id(p) (see Hint 1).")
    checks.expect(type(_opt) is torch.optim.AdamW,
                  f"make_optimizer should return a torch.optim.AdamW; it returned {checks.describe(_opt)}.")
    with checks.seeded(5):
        _grads = {_n: torch.randn_like(_p) for _n, _p in _params.items()}
    _before = {_n: _p.detach().clone() for _n, _p in _params.items()}
    for _n, _p in _params.items():
        _p.grad = _grads[_n].clone()  # frozen parameters get one too: a gradient left over from before freezing
    _opt.step()
    for _n, _p in _params.items():
        _moved = not torch.equal(_p.detach(), _before[_n])
        if not _p.requires_grad:
            checks.expect(not _moved,
                          f"For {_what}, the frozen parameter {_n} changed in an optimiser step. It held a gradient "
                          "left over from before it was frozen, and an optimiser updates every parameter of its "
                          "groups that has a .grad: give it only the parameters that require gradients (Hint 2).")
            continue
        checks.expect(_moved, f"For {_what}, the trainable parameter {_n} did not change in an optimiser step: it "
                              "belongs to no parameter group. Every trainable parameter must be in one group.")
        _lr = _head_lr if id(_p) in _head_ids else _backbone_lr
        _ref = _before[_n].clone().requires_grad_(True)
        _ref.grad = _grads[_n].clone()
        torch.optim.AdamW([_ref], lr=_lr).step()
        _part = "head" if id(_p) in _head_ids else "backbone"
        checks.expect(torch.allclose(_p.detach(), _ref.detach(), rtol=1e-4, atol=1e-7),
                      f"For {_what}, the {_part} parameter {_n} did not get AdamW's update at the {_part} learning "
                      f"rate: it {'lies in the ' + _head + ' submodule, so it' if _part == 'head' else ''} should "
                      f"learn at {'head_lr' if _part == 'head' else 'backbone_lr'}. Check which group each parameter "
                      "is in, each group's lr, and that the other AdamW settings are the defaults.")


with checks.seeded(6):
    _model = digits_resnet(5).to(checks.DEVICE)
_model.requires_grad_(False)
_model.layer2.requires_grad_(True)
_model.fc.requires_grad_(True)
_check_groups(_model, "fc", 1e-2, 1e-3, "a digits_resnet with layer2 and fc trainable")
with checks.seeded(7):
    _net = nn.Sequential(_OD([("features", nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))),
                              ("classifier", nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 3)))])).to(checks.DEVICE)
_net.features[0].requires_grad_(False)
_check_groups(_net, "classifier", 3e-2, 5e-4, "a model whose head is called 'classifier', with its first layer frozen")
with checks.seeded(8):
    _net = nn.Sequential(_OD([("body", nn.Linear(6, 5)), ("fc", nn.Linear(5, 3))])).to(checks.DEVICE)
_check_groups(_net, "fc", 1e-3, 1e-2, "a model with nothing frozen and a backbone lr above the head's")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-bn"
# ## 6 · Frozen layers, frozen statistics
#
# A training loop starts each epoch with `model.train()` (05, 09), and that reaches every
# submodule. For a frozen block, training mode does two things you did not ask for. Its
# batch-norm layers normalise each batch with that batch's own mean and variance instead of
# the pretrained statistics, so the features the head trains on differ from those it will get
# in evaluation. And they overwrite their running statistics, a little at every batch, with
# estimates from your few fine-tuning images: the "frozen" block is no longer the pretrained
# one, although none of its parameters changed.
#
# The fix: after `model.train()`, put every batch-norm layer that has nothing to learn back
# in **eval mode**. Its parameters stay frozen, its statistics stay the pretrained ones, and it
# normalises the same way in training and evaluation. Batch-norm layers in the blocks that do
# learn stay in training mode, and so does everything else (dropout in a head, for one).
#
# The next cell holds a fine-tuning loop with the bug: it freezes the stem and `layer1`, and
# yet after a few epochs their batch-norm statistics have moved.
#
# ### Exercise 5 · Fix a broken snippet
#
# - `set_fine_tuning_mode(model)`: put `model` in training mode, except its batch-norm layers
#   (any of `nn.BatchNorm1d`, `2d`, `3d`) none of whose parameters require gradients, which go
#   to eval mode.
# - `fine_tune(model, optimizer, loader, epochs)`: the loop of `fine_tune_broken`, fixed: for
#   each epoch, `set_fine_tuning_mode(model)`, then one optimiser step per batch with
#   cross-entropy. Return the list of the epochs' mean losses, as floats.
#
# <details><summary>Hint 1</summary>
#
# `nn.modules.batchnorm._BatchNorm` is the common base class of the three. Walk
# `model.modules()`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The order matters: `model.train()` sets every submodule's mode, so the frozen layers go to
# eval *after* it, every epoch.
# </details>

# %% role="locked" grade_id="bn-broken"
def fine_tune_broken(model, optimizer, loader, epochs):
    history = []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
        history.append(total / len(loader))
    return history


try:
    torch.manual_seed(0)
    _model = build_transfer_model(CHECKPOINT, 5, checks.DEVICE)
    freeze_except(_model, ["layer2", "fc"])
    _stats = _model.layer1[0].bn1.running_mean.clone()
    _weight = _model.layer1[0].conv1.weight.detach().clone()
    _loader = DataLoader(TensorDataset(x_few, y_few), batch_size=25)
    fine_tune_broken(_model, make_optimizer(_model, 1e-2, 1e-3), _loader, epochs=5)
    print("layer1[0].conv1.weight (frozen) changed:", not torch.equal(_weight, _model.layer1[0].conv1.weight))
    print("layer1[0].bn1.running_mean (in a frozen block) moved by up to",
          f"{(_stats - _model.layer1[0].bn1.running_mean).abs().max().item():.3f}")
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")


# %% role="answer" grade_id="fine-tune"
def set_fine_tuning_mode(model):
    """Training mode, except eval mode for batch-norm layers with no trainable parameter."""
    ### BEGIN SOLUTION
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in module.parameters()):
                module.eval()
    ### END SOLUTION


def fine_tune(model, optimizer, loader, epochs):
    """fine_tune_broken, with frozen batch-norm layers kept in eval mode. Returns the epochs' mean losses."""
    ### BEGIN SOLUTION
    history = []
    for _ in range(epochs):
        set_fine_tuning_mode(model)
        total = 0.0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
        history.append(total / len(loader))
    return history
    ### END SOLUTION


# %% role="test" grade_id="test-fine-tune-sanity" points=1
with checks.seeded(0):
    _model = digits_resnet(5)
_model.requires_grad_(False)
_model.layer2.requires_grad_(True)
_model.fc.requires_grad_(True)
_model.eval()
set_fine_tuning_mode(_model)
checks.expect(_model.training and _model.layer2[0].bn1.training and _model.fc.training,
              "After set_fine_tuning_mode, the model and its trainable blocks (layer2, fc) should be in training "
              "mode; start with model.train().")
checks.expect(not _model.bn1.training and not _model.layer1[0].bn1.training,
              "After set_fine_tuning_mode, the batch-norm layers of the frozen stem and layer1 should be in eval "
              "mode, so that their statistics stay the pretrained ones.")
print("bn1 in training mode:", _model.bn1.training, "| layer2[0].bn1 in training mode:", _model.layer2[0].bn1.training)

# %% role="test" grade_id="test-fine-tuning-mode" points=2
# Hidden tests call set_fine_tuning_mode on models with batch norm of all three kinds, frozen and
# trainable, and dropout, starting from eval or training mode, and check the mode of every module.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

with checks.seeded(2):
    _net = nn.Sequential(_OD([
        ("stem", nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())),
        ("mid", nn.Sequential(nn.Conv3d(4, 4, 1), nn.BatchNorm3d(4))),
        ("block", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        ("head", nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.3), nn.Linear(4, 3))),
    ]))
for _frozen in (["stem", "mid"], ["stem", "block", "head.0", "head.1"], []):
    for _start_training in (False, True):
        _net.requires_grad_(True)
        for _name in _frozen:
            _net.get_submodule(_name).requires_grad_(False)
        _flags = {_n: _p.requires_grad for _n, _p in _net.named_parameters()}
        _net.train(_start_training)
        set_fine_tuning_mode(_net)
        for _name, _mod in _net.named_modules():
            _is_bn = isinstance(_mod, nn.modules.batchnorm._BatchNorm)
            _frozen_bn = _is_bn and not any(_p.requires_grad for _p in _mod.parameters())
            _label = _name or "the model itself"
            if _frozen_bn:
                checks.expect(not _mod.training,
                              f"With {_frozen} frozen, the batch-norm layer {_label} ({type(_mod).__name__}) has "
                              "nothing to learn, yet set_fine_tuning_mode left it in training mode: its running "
                              "statistics would drift. Put every frozen batch-norm layer, of any kind, in eval mode "
                              "after model.train() (see Hint 1).")
            else:
                checks.expect(_mod.training,
                              f"With {_frozen} frozen, set_fine_tuning_mode left {_label} ({type(_mod).__name__}) in "
                              "eval mode" + (", although its parameters learn. Only batch-norm layers with nothing "
                                             "to learn go to eval mode." if _is_bn else
                                             ". Everything but the frozen batch-norm layers trains: call "
                                             "model.train() first, and switch only those layers to eval."))
        checks.expect({_n: _p.requires_grad for _n, _p in _net.named_parameters()} == _flags,
                      "set_fine_tuning_mode changed requires_grad flags. It sets modes only; which parameters learn "
                      "is decided before (freeze_except).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-fine-tune" points=3
# Hidden tests run fine_tune on a partly frozen model handed over in eval mode, watch the loop and
# the modes during the forward passes, and compare every buffer before and after.
### BEGIN HIDDEN TESTS
from collections import OrderedDict as _OD

with checks.seeded(3):
    _net = nn.Sequential(_OD([
        ("stem", nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())),
        ("block", nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())),
        ("fc", nn.Sequential(nn.Dropout(0.3), nn.Linear(6, 5))),
    ])).to(checks.DEVICE)
    _loader = DataLoader(TensorDataset(x_few[:24], y_few[:24]), batch_size=8)
_net.stem.requires_grad_(False)
_opt = torch.optim.AdamW([_p for _p in _net.parameters() if _p.requires_grad], lr=1e-2)
_net.eval()
_buffers = {_n: _b.clone() for _n, _b in _net.named_buffers()}
_modes = []
_hooks = [_net.stem[1].register_forward_pre_hook(lambda _m, _i: _modes.append(("stem", _m.training))),
          _net.block[1].register_forward_pre_hook(lambda _m, _i: _modes.append(("block", _m.training))),
          _net.fc[0].register_forward_pre_hook(lambda _m, _i: _modes.append(("dropout", _m.training)))]
try:
    with checks.seeded(3), checks.TrainingSpy(_net, _opt) as _spy:
        _history = fine_tune(_net, _opt, _loader, 3)
finally:
    for _h in _hooks:
        _h.remove()
checks.expect(len(_modes) > 0, "fine_tune ran no forward pass through the model.")
checks.expect(all(_t for _w, _t in _modes if _w == "dropout"),
              "fine_tune ran forward passes with the head's dropout in eval mode: the model was handed over in eval "
              "mode and not switched to training mode. Call set_fine_tuning_mode(model) at the start of every "
              "epoch.")
checks.expect(all(_t for _w, _t in _modes if _w == "block"),
              "fine_tune ran forward passes with a trainable block's batch norm in eval mode: only batch-norm layers "
              "with nothing to learn belong in eval mode.")
checks.expect(not any(_t for _w, _t in _modes if _w == "stem"),
              "fine_tune ran forward passes with a frozen block's batch norm in training mode, so it normalised with "
              "batch statistics and updated its running statistics. model.train() sets every submodule's mode: put "
              "the frozen batch-norm layers in eval mode after it, at the start of every epoch (see Hint 2).")
_spy.check_loop(steps=3 * len(_loader), name="`fine_tune`")
for _n, _b in _net.named_buffers():
    _same = torch.equal(_b, _buffers[_n])
    if _n.startswith("stem."):
        checks.expect(_same, f"fine_tune changed the buffer {_n} of a frozen block: its batch-norm statistics "
                             "drifted towards the fine-tuning batches. Keep frozen batch-norm layers in eval mode.")
    else:
        checks.expect(not _same, f"fine_tune left the buffer {_n} of a trainable block unchanged: that batch-norm "
                                 "layer never ran in training mode. Its statistics should follow the new data.")
checks.expect(type(_history) is list and len(_history) == 3 and all(type(_v) is float for _v in _history),
              f"`fine_tune(model, optimizer, loader, 3)` should return a list of 3 Python floats, one mean loss per "
              f"epoch; it returned {checks.describe(_history)}. Add up loss.item(), not the loss tensor.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-compare"
# ## 7 · Did it help? Measuring against training from scratch
#
# A fine-tuned model that reaches 80% says little on its own. The question transfer learning
# answers is: *compared with what?* The honest baseline is the same architecture trained from
# random weights on the same labelled images, for the same number of steps, measured on the
# same validation images. Only the starting point (and what is frozen) may differ. Anything
# else (more epochs for one, another split for the other) measures the difference you
# introduced, not the pretraining.
#
# ### Exercise 6 · `compare_with_scratch`
#
# Write `compare_with_scratch(checkpoint_path, loader, epochs, device)`. It trains two models
# on the batches of `loader`, each for `epochs` epochs with your `fine_tune`, and returns them
# as a dict `{"fine_tuned": ..., "scratch": ...}`:
#
# - `"fine_tuned"`: `build_transfer_model(checkpoint_path, 5, device)`, with only `layer2`
#   and `fc` trainable, and `make_optimizer` at a head learning rate of `1e-2` and a backbone
#   learning rate of `1e-3`;
# - `"scratch"`: a `digits_resnet(5)` from random weights on `device`, nothing frozen, and
#   `make_optimizer` at `1e-2` for its head and `1e-3` for the rest too.
#
# The locked cell after it measures both on the validation images. The hidden test runs your
# function on another draw of the 25 labelled images and asks the fine-tuned model for at
# least **70%** validation accuracy; it should get about 80%.
#
# <details><summary>Hint 1</summary>
#
# Four calls for the first model: build, freeze, optimiser, fine-tune. Three for the second.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The scratch model must not touch the checkpoint: no loading, nothing frozen.
# </details>

# %% role="answer" grade_id="compare"
def compare_with_scratch(checkpoint_path, loader, epochs, device):
    """Fine-tune the pretrained model and train one from scratch, on the same data for the same epochs."""
    ### BEGIN SOLUTION
    fine_tuned = build_transfer_model(checkpoint_path, 5, device)
    freeze_except(fine_tuned, ["layer2", "fc"])
    fine_tune(fine_tuned, make_optimizer(fine_tuned, 1e-2, 1e-3), loader, epochs)
    scratch_model = digits_resnet(5).to(device)
    fine_tune(scratch_model, make_optimizer(scratch_model, 1e-2, 1e-3), loader, epochs)
    return {"fine_tuned": fine_tuned, "scratch": scratch_model}
    ### END SOLUTION


# %% role="locked" grade_id="compare-run"
# Your run: the gain of transfer over training from scratch, on the 25 labelled images.
try:
    torch.manual_seed(0)
    _loader = DataLoader(TensorDataset(x_few, y_few), batch_size=25, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    results = compare_with_scratch(CHECKPOINT, _loader, epochs=20, device=checks.DEVICE)
    _acc = {_k: evaluate_accuracy(_m, x_val, y_val) for _k, _m in results.items()}
    print(f"validation accuracy, fine-tuned: {_acc['fine_tuned']:.1%} | from scratch: {_acc['scratch']:.1%}"
          f" | gain: {100 * (_acc['fine_tuned'] - _acc['scratch']):+.1f} points")
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-compare-sanity" points=1
with checks.seeded(0):
    _loader = DataLoader(TensorDataset(x_few, y_few), batch_size=25)
    _result = compare_with_scratch(CHECKPOINT, _loader, 1, checks.DEVICE)
checks.expect(isinstance(_result, dict) and set(_result) == {"fine_tuned", "scratch"}
              and all(isinstance(_v, nn.Module) for _v in _result.values()),
              f"compare_with_scratch should return a dict with the keys 'fine_tuned' and 'scratch', each an "
              f"nn.Module; it returned {checks.describe(_result)}.")
print({_k: type(_v).__name__ for _k, _v in _result.items()})

# %% role="test" grade_id="test-compare" points=3
# Hidden tests count the optimiser steps each model gets and check where each started: the
# fine-tuned model from the checkpoint with its stem and layer1 untouched, the other from scratch.
### BEGIN HIDDEN TESTS
from torch.optim.optimizer import register_optimizer_step_post_hook as _register_step_hook

_steps = []
_handle = _register_step_hook(
    lambda _o, _a, _k: _steps.append({id(_p) for _g in _o.param_groups for _p in _g["params"]}))
try:
    with checks.seeded(5):
        _loader = DataLoader(TensorDataset(x_few, y_few), batch_size=10)
        _result = compare_with_scratch(CHECKPOINT, _loader, 2, checks.DEVICE)
finally:
    _handle.remove()
_saved = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
_fine, _scratch = _result["fine_tuned"], _result["scratch"]
for _key, _model in (("fine_tuned", _fine), ("scratch", _scratch)):
    _ids = {id(_p) for _p in _model.parameters()}
    _n = sum(1 for _s in _steps if _s & _ids)
    checks.expect(_n == 2 * len(_loader),
                  f"The {_key} model got {_n} optimiser steps; with 2 epochs of a loader of {len(_loader)} batches it "
                  f"should get {2 * len(_loader)}. A fair comparison trains both for the same epochs on the same data.")
_fine_state = _fine.state_dict()
for _key, _value in _saved.items():
    if _key.startswith(("conv1.", "bn1.", "layer1.")):
        checks.expect(torch.equal(_fine_state[_key].cpu(), _value),
                      f"The fine-tuned model's {_key} is not the checkpoint's after training. The fine-tuned model "
                      "starts from the checkpoint (build_transfer_model) and keeps the stem and layer1 frozen, weights "
                      "and batch-norm statistics alike (freeze_except with layer2 and fc, then fine_tune).")
checks.expect(not torch.equal(_fine_state["layer2.0.conv1.weight"].cpu(), _saved["layer2.0.conv1.weight"]),
              "The fine-tuned model's layer2 did not change in training: it should be trainable, at the backbone "
              "learning rate.")
_scratch_state = _scratch.state_dict()
_same = [_k for _k in ("conv1.weight", "layer1.0.conv1.weight", "layer2.0.conv1.weight")
         if torch.nn.functional.cosine_similarity(_scratch_state[_k].flatten().cpu(), _saved[_k].flatten(), dim=0) > 0.5]
checks.expect(not _same,
              f"The scratch model's {_same[0] if _same else ''} is close to the checkpoint's: it started from the "
              "pretrained weights. The baseline must start from random weights, or it measures nothing (Hint 2).")
_frozen = [_n for _n, _p in _scratch.named_parameters() if not _p.requires_grad]
checks.expect(not _frozen, f"The scratch model has frozen parameters ({_frozen[:3]}): from random weights, every "
                           "layer has to learn.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-transfer-accuracy" points=4
# Hidden tests draw another 25 labelled images, run compare_with_scratch for 20 epochs, and measure
# the fine-tuned model on the remaining images: at least 70% correct.
### BEGIN HIDDEN TESTS
_tasks = load_digit_tasks(checks.DEVICE, shots=5, seed=1)
_x_tr, _y_tr, _x_va, _y_va = _tasks[2:]
with checks.seeded(1):
    _loader = DataLoader(TensorDataset(_x_tr, _y_tr), batch_size=25, shuffle=True,
                         generator=torch.Generator().manual_seed(1))
    _result = compare_with_scratch(CHECKPOINT, _loader, 20, checks.DEVICE)
_fine = _result["fine_tuned"]
_fine.eval()
with torch.no_grad():
    _acc = (_fine(_x_va).argmax(dim=1) == _y_va).float().mean().item()
checks.expect(_acc >= 0.70,
              f"After 20 epochs of fine-tuning on 25 labelled images, the fine-tuned model classifies {_acc:.1%} of "
              "the validation images correctly; the target is 70%. Check that the backbone is loaded, the right "
              "layers are frozen, each group has its learning rate, and the frozen batch norm stays in eval mode.")
print(f"fine-tuned validation accuracy {_acc:.1%}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-measured"
# ### What the measurement says
#
# In our runs (three draws of the 25 labelled images, 20 epochs), the fine-tuned model reached
# 77% to 83% and the model trained from scratch 60% to 68%: about 16 points gained. Measure at
# more than one budget, though. Given 60 epochs instead of 20, the model from scratch reached
# 81% to 87% and passed the fine-tuned one (78% to 84%); with 10 or 20 labelled images per
# digit, it matched or beat it at 20 epochs. Five pretraining digits taught features that make the
# first steps count, not features the new digits could not learn from their own images. The
# gain of transfer depends on how much more the backbone has seen than the new task offers:
# a backbone pretrained on ImageNet's million photos and fine-tuned on a few hundred typically keeps its
# lead far longer than ours. A single number, at a single budget, would have told only half
# of this.

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - `models.<arch>(weights=None)` builds an architecture with random weights; pretrained
#   weights are a `state_dict` to load, safely (`weights_only=True`) and portably
#   (`map_location`).
# - Load into the model as it was saved, *then* replace the head: a head that fits by shape
#   may still belong to the old task.
# - Freezing is `requires_grad = False`, applied to the parameters that exist at the time;
#   pick submodules by their dotted names, with the dot.
# - Parameter groups give the head and the backbone their own learning rates; give the
#   optimiser only what should learn, since it does not look at `requires_grad`.
# - `model.train()` reaches frozen blocks too: put their batch-norm layers back in eval mode,
#   every epoch, or their statistics drift.
# - Measure transfer against a model trained from scratch on the same data, for the same
#   budget, and at more than one budget: here transfer won by 16 points at 20 epochs and
#   lost its lead at 60.
#
# Next, in **[13 · Generative models](../13_generative/13_generative.ipynb)**, networks learn to produce data instead of labels.
