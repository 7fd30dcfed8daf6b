# %% [markdown] role="prose" grade_id="title"
# # 13 · Generative models: a GAN and a VAE
#
# **Time:** about 2 h of work (3,800 words to read, 8 exercises).
#
# Every model so far answered a question about an input: which digit, which next character.
# A **generative model** answers a different one: *show me more data like this*. It learns a
# distribution from examples and then draws new samples from it, points that were never in the
# training set but look as if they could have been.
#
# This notebook builds the two classic designs from their parts. A **GAN** (generative
# adversarial network) trains a generator against a critic: the generator turns random noise
# into samples, a discriminator learns to tell them from real data, and each improves by
# beating the other. A **VAE** (variational autoencoder) compresses each example into a small
# random code, learns to rebuild the example from it, and keeps the codes close to a simple
# distribution you can sample from. Both fit in a few lines; both go wrong silently, through
# where gradients flow and which parameters each step may touch.
#
# **By the end of this notebook you will be able to:**
# - say where the gradients of a GAN's two losses land, and why the discriminator's step
#   detaches the fakes while the generator's step goes *through* the discriminator;
# - write the discriminator's and the generator's update steps, each with its own optimiser,
#   each leaving the other network exactly as it was;
# - train a GAN on 2-D data and measure what it learned: how many modes it covers, how many of
#   its samples land on the data;
# - sample a VAE's code with the reparameterisation trick, so that gradients reach the
#   encoder through the random draw;
# - write the KL term in closed form, with the right sign, and the VAE's loss (the negative
#   ELBO);
# - train a VAE on handwritten digits to a held-out target, and draw new digits from the prior.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-gan"
# ## 1 · A GAN: two networks, two losses, two optimisers
#
# A GAN has two networks that never see each other's weights:
#
# - the **generator** `G` maps a noise vector `z`, drawn from a standard normal distribution,
#   to a sample: here a point in the plane, `G(z)` of shape `(N, 2)`;
# - the **discriminator** `D` maps a point to one **logit**: large when it believes the point
#   is real, very negative when it believes it was made by `G`.
#
# Training alternates two steps. The **discriminator's step** is plain binary classification:
# real points are class 1, generated points (*fakes*) class 0, with `BCEWithLogits` (05):
#
# `loss_D = BCE(D(real), 1) + BCE(D(G(z)), 0)`
#
# The **generator's step** asks `D` what it thinks of fresh fakes and changes `G` so that `D`
# calls them real:
#
# `loss_G = BCE(D(G(z)), 1)`
#
# The gradient of `loss_G` has to reach `G`'s weights, and the only way there is **through**
# `D`: backward runs through `D`'s layers into `G(z)` and on into `G`. That is the whole trick.
# `G` never sees a real point; it learns what real data looks like from `D`'s gradient.
#
# Three facts of autograd decide whether this works:
#
# 1. `backward()` fills `.grad` for **every** leaf tensor that requires grad on the path from
#    the loss, whoever "owns" it. An optimiser owns nothing but a list of parameters, and
#    `step()` updates those only. So each network gets **its own optimiser**, built on its own
#    parameters, and each step calls only its own.
# 2. In the discriminator's step the fakes are **inputs**, like the real points, so they are
#    made with `G(z).detach()`: without it, `loss_D.backward()` runs on into `G` and leaves
#    gradients in `G`'s `.grad`, which a later generator step may add to its own, and which
#    cost a backward pass through `G` for nothing.
# 3. In the generator's step `D`'s parameters are on the path too, so `loss_G.backward()`
#    fills their `.grad` as well. Freezing `D` for the step, `D.requires_grad_(False)`, then
#    `D.requires_grad_(True)` afterwards, makes backward skip `D`'s weight gradients (the
#    gradient still flows *through* `D`'s layers to the fakes, since they require grad):
#    `D` comes out of the generator's step exactly as it went in.
#
# Why `BCE(D(G(z)), 1)` for the generator and not minus the discriminator's own term,
# `−BCE(D(G(z)), 0)`, which is what "the generator maximises the discriminator's loss" literally
# says? Early in training `D` rejects the fakes easily: their logit `ℓ` is very negative. The
# literal loss is `log(1 − σ(ℓ))`, whose slope `−σ(ℓ)` vanishes there, so `G` gets no signal
# exactly when it needs one. `BCE(D(G(z)), 1) = −log σ(ℓ)` has slope `−(1 − σ(ℓ))`, close to
# `−1` there: the **non-saturating** loss, the one everyone uses.
#
# ### Exercise 1 · Predict, then verify
#
# ```python
# G = nn.Linear(4, 2)                  # a tiny generator: 4 noise numbers -> one 2-D point
# D = nn.Linear(2, 1)                  # a tiny discriminator: one point -> one logit
# opt_g = torch.optim.SGD(G.parameters(), lr=0.1)
# z, real = torch.randn(8, 4), torch.randn(8, 2)
# bce = F.binary_cross_entropy_with_logits
# ```
#
# **Without running anything**, fill in `gan_predictions`. Each question starts from these
# fresh networks, with every `.grad` still `None`.
#
# | key | question | answer |
# |---|---|---|
# | `"a"` | after `bce(D(G(z).detach()), torch.zeros(8, 1)).backward()`, is `G.weight.grad` a tensor? | `True` / `False` |
# | `"b"` | after `bce(D(G(z)), torch.zeros(8, 1)).backward()` (no `detach`), is `G.weight.grad` a tensor? | `True` / `False` |
# | `"c"` | after `bce(D(G(z)), torch.ones(8, 1)).backward()`, is `D.weight.grad` a tensor? | `True` / `False` |
# | `"d"` | after (c) and then `opt_g.step()`, has `D.weight` changed? | `True` / `False` |
# | `"e"` | if `D` returned the logit 0 for every point, what is `bce(D(real), ones) + bce(D(fake), zeros)`? | a float, 3 decimals |
# | `"f"` | and the generator's loss `bce(D(fake), ones)`? | a float, 3 decimals |
# | `"g"` | for a fake whose logit is −10, which generator loss has the steeper slope: the literal `−bce(ℓ, 0)` or `bce(ℓ, 1)`? | `"literal"` / `"non-saturating"` |
#
# <details><summary>Hint 1</summary>
#
# For (a) to (d): draw the graph. Which leaves does each loss reach when you follow the arrows
# back from it? `detach()` cuts an arrow.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For (e) and (f): a logit of 0 is the probability `σ(0) = 0.5`, whatever the label, and the
# binary cross-entropy of a probability `p` for the label it gets is `−log p`.
# </details>

# %% role="answer" grade_id="gan-predictions"
gan_predictions = {
    "a": None,   # True or False
    "b": None,
    "c": None,
    "d": None,
    "e": None,   # a float
    "f": None,
    "g": None,   # "literal" or "non-saturating"
}
### BEGIN SOLUTION
gan_predictions = {
    "a": False,
    "b": True,
    "c": True,
    "d": False,
    "e": 1.386,
    "f": 0.693,
    "g": "non-saturating",
}
### END SOLUTION

# %% role="test" grade_id="test-gan-predictions" points=4
# Hidden tests run the seven scenarios on tiny networks and compare with your predictions.
checks.expect(isinstance(gan_predictions, dict) and set(gan_predictions) == set("abcdefg"),
              "`gan_predictions` should be a dict with exactly the keys 'a' to 'g'.")
for _k in "abcd":
    checks.expect(type(gan_predictions[_k]) is bool,
                  f"gan_predictions[{_k!r}] should be True or False; it is {checks.describe(gan_predictions[_k])}.")
for _k in "ef":
    checks.expect(type(gan_predictions[_k]) in (int, float),
                  f"gan_predictions[{_k!r}] should be a number; it is {checks.describe(gan_predictions[_k])}.")
checks.expect(gan_predictions["g"] in ("literal", "non-saturating"),
              "gan_predictions['g'] should be the string 'literal' or 'non-saturating'.")
### BEGIN HIDDEN TESTS
_bce = F.binary_cross_entropy_with_logits


def _fresh():
    with checks.seeded(0):
        _g, _d = nn.Linear(4, 2), nn.Linear(2, 1)
        return _g, _d, torch.randn(8, 4), torch.randn(8, 2)


_g, _d, _z, _real = _fresh()
_bce(_d(_g(_z).detach()), torch.zeros(8, 1)).backward()
_truth = {"a": _g.weight.grad is not None}
_g, _d, _z, _real = _fresh()
_bce(_d(_g(_z)), torch.zeros(8, 1)).backward()
_truth["b"] = _g.weight.grad is not None
_g, _d, _z, _real = _fresh()
_bce(_d(_g(_z)), torch.ones(8, 1)).backward()
_truth["c"] = _d.weight.grad is not None
_before = _d.weight.detach().clone()
torch.optim.SGD(_g.parameters(), lr=0.1).step()
_truth["d"] = not torch.equal(_before, _d.weight.detach())
_zero = torch.zeros(8, 1)
_truth["e"] = (_bce(_zero, torch.ones(8, 1)) + _bce(_zero, torch.zeros(8, 1))).item()
_truth["f"] = _bce(_zero, torch.ones(8, 1)).item()
_l = torch.tensor(-10.0, requires_grad=True)
_literal = torch.autograd.grad(-_bce(_l, torch.tensor(0.0)), _l)[0].abs().item()
_nonsat = torch.autograd.grad(_bce(_l, torch.tensor(1.0)), _l)[0].abs().item()
_truth["g"] = "literal" if _literal > _nonsat else "non-saturating"
_why = {
    "a": "detach() cuts the graph between the fakes and G: the discriminator's loss reaches D's parameters only, "
         "and G's .grad stays None.",
    "b": "Without detach(), backward follows the graph from the loss through D, into the fakes, and on into G's "
         "parameters, whichever network the loss was meant for.",
    "c": "backward() fills .grad for every leaf on the path from the loss. The generator's loss goes through D, so "
         "D's parameters are on that path unless D is frozen.",
    "d": "An optimiser updates only the parameters it was given. opt_g holds G's parameters; D's .grad was filled "
         "but nothing applied it.",
    "e": "A logit of 0 is the probability 0.5 for either label, and each of the two terms is then -log(0.5) "
         "(Hint 2).",
    "f": "One term of -log(0.5) (Hint 2).",
    "g": "The literal loss is log(1 - sigmoid(l)), whose slope -sigmoid(l) is tiny for a very negative logit; "
         "-log(sigmoid(l)) has slope -(1 - sigmoid(l)), close to -1 there (section 1).",
}
for _k in "abcd":
    checks.expect_equal(gan_predictions[_k], _truth[_k], f"Your prediction ({_k})", why=_why[_k], show=False)
for _k in "ef":
    checks.expect_close(gan_predictions[_k], _truth[_k], f"Your prediction ({_k})", rtol=0, atol=2e-3,
                        why=_why[_k], show=False)
checks.expect_equal(gan_predictions["g"], _truth["g"], "Your prediction (g)", why=_why["g"], show=False)
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-d-step"
# ## 2 · The discriminator's step
#
# One update of `D` is the training step of 05 with two batches: the real points with target
# 1 and a batch of fakes with target 0. The fakes come from the noise `z` the caller hands
# you, generated **detached**: in this step they are data, not a path for gradients.
#
# Make the targets on the device of the logits (`torch.ones_like`, `torch.zeros_like`), not
# on the CPU by default: the same code must run on a GPU.
#
# ### Exercise 2 · `discriminator_step`
#
# Write `discriminator_step(G, D, opt_d, real, z)`: one update of `D` with the optimiser `opt_d`
# (which holds `D`'s parameters), on the loss
# `BCE(D(real), 1) + BCE(D(G(z)), 0)`: the sum of two means, one over the real batch and one
# over the fakes (the two batches may differ in size). Return the loss as a Python float.
# `G` must come out untouched: its parameters *and* their `.grad`.
#
# <details><summary>Hint 1</summary>
#
# The order of 05: `opt_d.zero_grad()`, forward, loss, `backward()`, `opt_d.step()`. Use
# `F.binary_cross_entropy_with_logits` with targets made by `torch.ones_like` and
# `torch.zeros_like` of the logits.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `G(z).detach()`: the fakes as numbers, cut from the graph that made them.
# </details>

# %% role="answer" grade_id="d-step"
def discriminator_step(G, D, opt_d, real, z):
    """One update of D: real points -> 1, detached fakes G(z) -> 0. Returns the loss (float)."""
    ### BEGIN SOLUTION
    opt_d.zero_grad()
    fake = G(z).detach()
    real_logits, fake_logits = D(real), D(fake)
    loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
    loss.backward()
    opt_d.step()
    return loss.item()
    ### END SOLUTION


# %% role="test" grade_id="test-d-step-sanity" points=1
with checks.seeded(0):
    _G = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).to(checks.DEVICE)
    _D = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)).to(checks.DEVICE)
    _real, _z = torch.randn(6, 2, device=checks.DEVICE), torch.randn(6, 3, device=checks.DEVICE)
_loss = discriminator_step(_G, _D, torch.optim.SGD(_D.parameters(), lr=0.1), _real, _z)
checks.expect(type(_loss) is float,
              f"discriminator_step should return the loss as a Python float (loss.item()); it returned "
              f"{checks.describe(_loss)}.")
checks.expect(0.0 < _loss < 5.0,
              f"discriminator_step returned {_loss:.3g}; for an untrained discriminator the loss of section 1 is "
              "close to 2 * log(2) = 1.39.")
print(f"discriminator loss {_loss:.3f}")


# %% role="test" grade_id="test-d-step" points=3
# Hidden tests give the generator's parameters gradients beforehand and check they survive, watch the
# loop's order, compare the loss and the update with a reference (real and fake batches of different
# sizes), and run the step with the default device set to 'meta', where targets made on the default
# device show up.
### BEGIN HIDDEN TESTS
def _nets(seed):
    with checks.seeded(seed):
        _g = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2)).to(checks.DEVICE)
        _d = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).to(checks.DEVICE)
        _r = torch.randn(10, 2, device=checks.DEVICE) + 1.0
        _zz = torch.randn(12, 3, device=checks.DEVICE)
        _sent = [torch.randn_like(_p) for _p in _g.parameters()]
        for _p in _d.parameters():   # an earlier step's gradients, which this step must clear
            _p.grad = torch.randn_like(_p)
    return _g, _d, _r, _zz, _sent


_G, _D, _real, _z, _sentinel = _nets(11)
for _p, _s in zip(_G.parameters(), _sentinel):
    _p.grad = _s.clone()
_G_before = [_p.detach().clone() for _p in _G.parameters()]
_D_ref = copy.deepcopy(_D)
_opt = torch.optim.SGD(_D.parameters(), lr=0.1)
with checks.TrainingSpy(_D, _opt) as _spy:
    _loss = discriminator_step(_G, _D, _opt, _real, _z)
checks.expect(type(_loss) is float,
              f"discriminator_step should return the loss as a Python float; it returned {checks.describe(_loss)}.")
for (_n, _p), _s, _b in zip(_G.named_parameters(), _sentinel, _G_before):
    checks.expect(_p.grad is not None,
                  f"After discriminator_step, the generator's {_n}.grad is None: the step cleared the generator's "
                  "gradients. The discriminator's step must leave G alone: zero only D's gradients, with opt_d.")
    checks.expect(torch.equal(_p.grad, _s),
                  f"discriminator_step changed the generator's {_n}.grad: the discriminator's loss backpropagated "
                  "into G. The fakes are inputs in this step: make them with G(z).detach(), so that backward stops "
                  "at them (Hint 2).")
    checks.expect(torch.equal(_p.detach(), _b),
                  f"discriminator_step changed the generator's parameter {_n}: this step updates D only, with opt_d.")
_spy.check_loop(steps=1, name="`discriminator_step`")
with torch.no_grad():
    _fake = _G(_z)
_rl, _fl = _D_ref(_real), _D_ref(_fake)
_ref = (F.binary_cross_entropy_with_logits(_rl, torch.ones_like(_rl))
        + F.binary_cross_entropy_with_logits(_fl, torch.zeros_like(_fl)))
_swapped = (F.binary_cross_entropy_with_logits(_rl, torch.zeros_like(_rl))
            + F.binary_cross_entropy_with_logits(_fl, torch.ones_like(_fl))).item()
_pooled = F.binary_cross_entropy_with_logits(torch.cat([_rl, _fl]),
                                             torch.cat([torch.ones_like(_rl), torch.zeros_like(_fl)])).item()
checks.expect(not math.isclose(_loss, _swapped, rel_tol=1e-4),
              "discriminator_step's loss uses the targets the wrong way round: real points are class 1, fakes "
              "class 0. With the labels swapped, D learns to call the fakes real.")
checks.expect(not math.isclose(_loss, _pooled, rel_tol=1e-4),
              "discriminator_step's loss is one mean over the real and fake logits put together; the loss asked "
              "for is the sum of two means, one per batch, so that each batch weighs the same whatever its size.")
checks.expect_close(_loss, _ref.item(), "The loss discriminator_step returned", rtol=1e-4, atol=1e-5,
                    why="The loss is BCE(D(real), 1) + BCE(D(G(z)), 0) with the logits D returns (no sigmoid "
                        "first: BCEWithLogits applies it), on the z given, computed before the update.")
_ref_opt = torch.optim.SGD(_D_ref.parameters(), lr=0.1)
_ref_opt.zero_grad()
_ref.backward()
_ref_opt.step()
for (_n, _p), _q in zip(_D.named_parameters(), _D_ref.parameters()):
    checks.expect_close(_p.detach(), _q.detach(), f"D's parameter {_n} after discriminator_step", rtol=1e-4,
                        atol=1e-5, why="One step of opt_d on the gradient of that loss, from cleared gradients.")
_G, _D, _real, _z, _ = _nets(12)
_opt = torch.optim.SGD(_D.parameters(), lr=0.1)
try:
    with torch.device("meta"):   # tensors made without a device now land on 'meta'
        discriminator_step(_G, _D, _opt, _real, _z)
except (RuntimeError, NotImplementedError) as _err:
    if isinstance(_err, NotImplementedError) and "Replace this line" in str(_err):
        raise
    checks.expect(False, "discriminator_step made a tensor on the default device instead of the device of the "
                         f"data: with the default device set to 'meta' it failed ({type(_err).__name__}: "
                         f"{str(_err)[:100]}). Make the targets with torch.ones_like / torch.zeros_like of the "
                         "logits, so that they follow the data onto any device.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-g-step"
# ## 3 · The generator's step
#
# One update of `G`: fresh fakes `G(z)`, **not** detached this time (their graph is the way
# back to `G`), scored by `D`, and the non-saturating loss `BCE(D(G(z)), 1)`. Only `opt_g`
# steps.
#
# `D` is on the path, so this is where it must be protected. Freeze it for the step with
# `D.requires_grad_(False)` and unfreeze it with `D.requires_grad_(True)` when the step is
# done. Put the unfreezing in a `finally:` block, so that an error in between cannot leave
# `D` frozen for the rest of training. Freezing is not `torch.no_grad()`: under `no_grad`
# nothing is recorded at all, not even the path *through* `D` that `G`'s gradient needs.
#
# ### Exercise 3 · `generator_step`
#
# Write `generator_step(G, D, opt_g, z)`: one update of `G` with `opt_g` (which holds `G`'s
# parameters) on the non-saturating loss `BCE(D(G(z)), 1)`; return the loss as a Python float.
# `D` must come out exactly as it went in: its parameters, their `.grad`, and their
# `requires_grad` flags.
#
# <details><summary>Hint 1</summary>
#
# `try:` freeze `D`, `opt_g.zero_grad()`, forward through both networks, loss, backward,
# `opt_g.step()`; `finally:` unfreeze `D`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The target is 1 for fakes here: the generator wants `D` to call them real.
# </details>

# %% role="answer" grade_id="g-step"
def generator_step(G, D, opt_g, z):
    """One update of G on BCE(D(G(z)), 1), through a frozen D. Returns the loss (float)."""
    ### BEGIN SOLUTION
    D.requires_grad_(False)
    try:
        opt_g.zero_grad()
        logits = D(G(z))
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        loss.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return loss.item()
    ### END SOLUTION


# %% role="test" grade_id="test-g-step-sanity" points=1
with checks.seeded(0):
    _G = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).to(checks.DEVICE)
    _D = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)).to(checks.DEVICE)
    _z = torch.randn(6, 3, device=checks.DEVICE)
_loss = generator_step(_G, _D, torch.optim.SGD(_G.parameters(), lr=0.1), _z)
checks.expect(type(_loss) is float,
              f"generator_step should return the loss as a Python float (loss.item()); it returned "
              f"{checks.describe(_loss)}.")
checks.expect(all(_p.requires_grad for _p in _D.parameters()),
              "After generator_step, some of D's parameters no longer require grad: D was frozen for the step and "
              "never unfrozen, so it would stop learning. Unfreeze it when the step is done, in a finally: block.")
print(f"generator loss {_loss:.3f}")


# %% role="test" grade_id="test-g-step" points=3
# Hidden tests give D's parameters gradients beforehand and check that D comes out unchanged (values,
# .grad, requires_grad), compare G's update and the loss with a reference, and run the step with the
# default device set to 'meta'.
### BEGIN HIDDEN TESTS
def _nets(seed):
    with checks.seeded(seed):
        _g = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2)).to(checks.DEVICE)
        _d = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).to(checks.DEVICE)
        _zz = torch.randn(12, 3, device=checks.DEVICE)
        _sent = [torch.randn_like(_p) for _p in _d.parameters()]
        for _p in _g.parameters():   # an earlier step's gradients, which this step must clear
            _p.grad = torch.randn_like(_p)
    return _g, _d, _zz, _sent


_G, _D, _z, _sentinel = _nets(13)
for _p, _s in zip(_D.parameters(), _sentinel):
    _p.grad = _s.clone()
_D_before = [_p.detach().clone() for _p in _D.parameters()]
_G_ref = copy.deepcopy(_G)
_opt = torch.optim.SGD(_G.parameters(), lr=0.1)
try:
    with checks.TrainingSpy(_G, _opt) as _spy:
        _loss = generator_step(_G, _D, _opt, _z)
except RuntimeError as _err:
    if "does not require grad" in str(_err):
        checks.expect(False, "generator_step's loss has no graph to backpropagate through ('does not require "
                             "grad'): the fakes were detached, or D ran under torch.no_grad(). The generator learns "
                             "only through D: keep G(z) attached and freeze D with requires_grad_(False) instead of "
                             "no_grad.")
    raise
checks.expect(type(_loss) is float,
              f"generator_step should return the loss as a Python float; it returned {checks.describe(_loss)}.")
checks.expect(all(_p.requires_grad for _p in _D.parameters()),
              "After generator_step, some of D's parameters no longer require grad: D was frozen and never "
              "unfrozen. Unfreeze it when the step is done, in a finally: block.")
for (_n, _p), _s, _b in zip(_D.named_parameters(), _sentinel, _D_before):
    checks.expect(torch.equal(_p.detach(), _b),
                  f"generator_step changed D's parameter {_n}: only opt_g may step here, and it must hold G's "
                  "parameters only.")
    checks.expect(_p.grad is not None,
                  f"After generator_step, D's {_n}.grad is None: the step cleared the discriminator's gradients "
                  "(zero_grad on D or on an optimiser holding D). The generator's step must leave D as it was: clear "
                  "only G's gradients, with opt_g.")
    checks.expect(torch.equal(_p.grad, _s),
                  f"generator_step changed D's {_n}.grad: the generator's loss backpropagated into D's parameters. "
                  "Freeze D for the step with D.requires_grad_(False) (and restore it afterwards): the gradient "
                  "still flows through D's layers to the fakes, but D's own .grad is left alone.")
_changed = any(not torch.equal(_p.detach(), _q.detach()) for _p, _q in zip(_G.parameters(), _G_ref.parameters()))
checks.expect(_changed,
              "generator_step did not change G's parameters: no gradient reached them. The generator learns only "
              "through D's judgement of G(z): do not detach the fakes in this step, and step opt_g.")
_spy.check_loop(steps=1, name="`generator_step`")
_logits = _D(_G_ref(_z))
_ref = F.binary_cross_entropy_with_logits(_logits, torch.ones_like(_logits))
_literal = -F.binary_cross_entropy_with_logits(_logits, torch.zeros_like(_logits)).item()
_wrong_label = F.binary_cross_entropy_with_logits(_logits, torch.zeros_like(_logits)).item()
checks.expect(not math.isclose(_loss, _literal, rel_tol=1e-4),
              "generator_step uses the literal minimax loss, minus the discriminator's BCE(D(G(z)), 0). It saturates: "
              "when D rejects the fakes, its slope vanishes and G learns nothing (section 1). Use the non-saturating "
              "loss BCE(D(G(z)), 1).")
checks.expect(not math.isclose(_loss, _wrong_label, rel_tol=1e-4),
              "generator_step's loss is BCE(D(G(z)), 0): it trains G to make points D calls fake. The generator "
              "wants D to call its fakes real: target 1 (Hint 2).")
checks.expect_close(_loss, _ref.item(), "The loss generator_step returned", rtol=1e-4, atol=1e-5,
                    why="The loss is BCE(D(G(z)), 1) on the logits D returns for G(z), with the z given, computed "
                        "before the update.")
_ref_opt = torch.optim.SGD(_G_ref.parameters(), lr=0.1)
_ref_opt.zero_grad()
_ref.backward()
_ref_opt.step()
for (_n, _p), _q in zip(_G.named_parameters(), _G_ref.parameters()):
    checks.expect_close(_p.detach(), _q.detach(), f"G's parameter {_n} after generator_step", rtol=1e-4, atol=1e-5,
                        why="One step of opt_g on the gradient of BCE(D(G(z)), 1), from cleared gradients.")
_G, _D, _z, _ = _nets(14)
_opt = torch.optim.SGD(_G.parameters(), lr=0.1)
try:
    with torch.device("meta"):   # tensors made without a device now land on 'meta'
        generator_step(_G, _D, _opt, _z)
except (RuntimeError, NotImplementedError) as _err:
    if isinstance(_err, NotImplementedError) and "Replace this line" in str(_err):
        raise
    checks.expect(False, "generator_step made a tensor on the default device instead of the device of the data: "
                         f"with the default device set to 'meta' it failed ({type(_err).__name__}: "
                         f"{str(_err)[:100]}). Make the targets with torch.ones_like of the logits.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-train-gan"
# ## 4 · Training a GAN, and measuring what it learned
#
# The data: points from **8 Gaussian blobs on a circle**, a standard test of GANs because it
# shows their typical failure at a glance. A generator can lower its loss by producing points
# in one blob only, fooling `D` there, until `D` learns that blob is suspicious and the
# generator hops to another: **mode collapse**. A good GAN covers every blob, and puts few
# points between them.
#
# So a loss curve says little here. The two losses chase each other and neither is meant to go
# to zero; a falling generator loss may just mean `D` is weak. We measure the samples instead,
# with two numbers that are cheap and hard to fake:
#
# - **modes covered**: how many blobs receive at least a fifth of their fair share of samples
#   (the share they would get if the generator were perfect);
# - **on-mode fraction**: the fraction of samples within three standard deviations of some
#   blob's centre.
#
# The next cell defines the networks (`make_generator()`, `make_discriminator()`, small MLPs;
# the generator reads `LATENT_DIM` noise numbers), `ring_sampler(...)`, which returns a
# function `sample_real(n)` drawing `n` points `(n, 2)` on `checks.DEVICE`, and
# `gan_quality(G, centres, std)`, which measures a generator with the two numbers above.
#
# ### Exercise 4 · `train_gan`
#
# Write `train_gan(G, D, sample_real, steps, latent_dim=LATENT_DIM)`: create one optimiser for
# each network, then for each of `steps` steps draw one batch of real points with
# `sample_real(batch_size)` and fresh noise `z` (standard normal, `(batch_size, latent_dim)`,
# on the device of the real points), and make one `discriminator_step` and one
# `generator_step`. Return `(d_losses, g_losses)`, two lists of `steps` floats. Choose the
# optimiser, its settings and the batch size.
#
# The hidden test trains a fresh pair of networks (another seed) for **1000 steps** on a ring of
# its own (rotated, so that no position can be written down in advance), and asks for **at
# least 7 of the 8 modes covered** and an **on-mode fraction of at least 0.5**. Our solution
# covers all 8, with 0.65 to 0.85 of its samples on them, in a few seconds.
#
# <details><summary>Hint 1</summary>
#
# `torch.optim.Adam(..., lr=3e-3, betas=(0.5, 0.999))` for both networks works here (1e-3 to
# 2e-4 is usual for larger GANs): a smaller first beta lets the moments follow an opponent that
# keeps changing.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Each optimiser gets its own network's parameters, and each step function gets its own
# optimiser. Batches of 128 points work well. On a CPU, `foreach=True` makes Adam update all
# of a network's small tensors at once, about twice as fast here.
# </details>

# %% role="locked" grade_id="gan-setup"
LATENT_DIM = 8


def make_generator(latent_dim=LATENT_DIM, hidden=64):
    """Noise (N, latent_dim) -> points (N, 2)."""
    return nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 2))


def make_discriminator(hidden=64):
    """Points (N, 2) -> one logit per point (N, 1)."""
    return nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, 1))


def ring_centres(modes=8, radius=2.0, phase=0.0):
    """The (modes, 2) centres of the blobs, evenly spaced on a circle."""
    angles = torch.arange(modes) * (2 * math.pi / modes) + phase
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def ring_sampler(modes=8, radius=2.0, std=0.1, phase=0.0, seed=0):
    """A function sample_real(n): n points (n, 2) on checks.DEVICE from the blobs, from its own generator."""
    generator = torch.Generator().manual_seed(seed)
    centres = ring_centres(modes, radius, phase)

    def sample_real(n):
        which = torch.randint(0, modes, (n,), generator=generator)
        return (centres[which] + std * torch.randn(n, 2, generator=generator)).to(checks.DEVICE)
    return sample_real


def gan_quality(G, centres, std, n=2000, latent_dim=LATENT_DIM, seed=0):
    """(modes covered, on-mode fraction) of n samples of G, for blobs at centres with this std."""
    noise = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed)).to(checks.DEVICE)
    with torch.no_grad():
        points = G(noise).cpu()
    distance, nearest = torch.cdist(points, centres).min(dim=1)
    on_mode = distance < 3 * std
    counts = torch.bincount(nearest[on_mode], minlength=len(centres))
    return int((counts >= 0.2 * n / len(centres)).sum()), on_mode.float().mean().item()


# %% role="answer" grade_id="train-gan"
def train_gan(G, D, sample_real, steps, latent_dim=LATENT_DIM):
    """Train G and D for steps alternating steps. Returns (d_losses, g_losses), lists of floats."""
    ### BEGIN SOLUTION
    opt_d = torch.optim.Adam(D.parameters(), lr=3e-3, betas=(0.5, 0.999), foreach=True)
    opt_g = torch.optim.Adam(G.parameters(), lr=3e-3, betas=(0.5, 0.999), foreach=True)
    d_losses, g_losses = [], []
    for _ in range(steps):
        real = sample_real(128)
        z = torch.randn(len(real), latent_dim, device=real.device)
        d_losses.append(discriminator_step(G, D, opt_d, real, z))
        z = torch.randn(len(real), latent_dim, device=real.device)
        g_losses.append(generator_step(G, D, opt_g, z))
    return d_losses, g_losses
    ### END SOLUTION


# %% role="locked" grade_id="gan-run"
# Your run: train a GAN on the ring and measure its samples.
try:
    torch.manual_seed(0)
    gan_g, gan_d = make_generator().to(checks.DEVICE), make_discriminator().to(checks.DEVICE)
    gan_history = train_gan(gan_g, gan_d, ring_sampler(seed=0), steps=1000)
    covered, on_mode = gan_quality(gan_g, ring_centres(), std=0.1)
    print(f"last losses: D {gan_history[0][-1]:.3f}, G {gan_history[1][-1]:.3f}")
    print(f"modes covered: {covered} of 8; on-mode fraction: {on_mode:.2f}")
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-train-gan-sanity" points=1
with checks.seeded(0):
    _G, _D = make_generator().to(checks.DEVICE), make_discriminator().to(checks.DEVICE)
    _h = train_gan(_G, _D, ring_sampler(seed=1), steps=3)
checks.expect(type(_h) is tuple and len(_h) == 2 and all(type(_l) is list and len(_l) == 3 for _l in _h),
              f"train_gan(G, D, sample_real, steps=3) should return a tuple of two lists of 3 losses; it returned "
              f"{checks.describe(_h)}.")
checks.expect(all(type(_v) is float for _l in _h for _v in _l), "The losses train_gan returns should be Python floats.")
print("train_gan returned", len(_h[0]), "discriminator losses and", len(_h[1]), "generator losses")

# %% role="test" grade_id="test-train-gan" points=4
# Hidden tests train a fresh generator and discriminator (another seed) for 1000 steps on a rotated
# ring with its own sampler, count the batches drawn, and measure 2000 samples: at least 7 of the 8
# modes covered, at least 0.5 of the samples on a mode.
### BEGIN HIDDEN TESTS
_modes, _radius, _std, _phase = 8, 2.0, 0.1, 0.3
_angles = torch.arange(_modes) * (2 * math.pi / _modes) + _phase
_centres = _radius * torch.stack([_angles.cos(), _angles.sin()], dim=1)
_gen = torch.Generator().manual_seed(31)
_calls = []


def _sample_real(n):
    _calls.append(n)
    _which = torch.randint(0, _modes, (n,), generator=_gen)
    return (_centres[_which] + _std * torch.randn(n, 2, generator=_gen)).to(checks.DEVICE)


with checks.seeded(3):
    _G = nn.Sequential(nn.Linear(LATENT_DIM, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    _D = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    _G, _D = _G.to(checks.DEVICE), _D.to(checks.DEVICE)
    _d_losses, _g_losses = train_gan(_G, _D, _sample_real, steps=1000)
checks.expect(len(_calls) == 1000,
              f"train_gan drew {len(_calls)} batches of real points in 1000 steps: draw one fresh batch per step, "
              "so that D sees new real data at every update.")
checks.expect(len(_d_losses) == 1000 and len(_g_losses) == 1000,
              "train_gan should return one discriminator loss and one generator loss per step.")
_noise = torch.randn(2000, LATENT_DIM, generator=torch.Generator().manual_seed(5)).to(checks.DEVICE)
with torch.no_grad():
    _points = _G(_noise).float().cpu()
checks.expect(bool(torch.isfinite(_points).all()),
              "After train_gan the generator produces NaN or infinite points: training diverged. Lower the "
              "learning rate (Hint 1).")
_distance, _nearest = torch.cdist(_points, _centres).min(dim=1)
_on_mode = _distance < 3 * _std
_counts = torch.bincount(_nearest[_on_mode], minlength=_modes)
_covered = int((_counts >= 0.2 * 2000 / _modes).sum())
_fraction = _on_mode.float().mean().item()
print(f"modes covered {_covered} of 8, on-mode fraction {_fraction:.2f}")
checks.expect(_covered >= 7,
              f"After 1000 steps of train_gan the generator covers {_covered} of the 8 modes (on-mode fraction "
              f"{_fraction:.2f}); the target is at least 7. Fewer modes is mode collapse, or a generator that barely "
              "trained. Check that each optimiser holds its own network's parameters and is passed to its own step, "
              "that z is fresh standard normal noise every step, and the learning rate (Hint 1).")
checks.expect(_fraction >= 0.5,
              f"After 1000 steps of train_gan only {_fraction:.2f} of the generator's samples lie on a mode (within "
              "3 standard deviations of a centre); the target is 0.5. The generator spreads points between the "
              "blobs: it needs more effective steps, or a learning rate that lets D keep up (Hint 1).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-vae"
# ## 5 · A VAE: a code you can sample, and the reparameterisation trick
#
# An autoencoder squeezes an example `x` through a small code and rebuilds it. Its codes,
# though, land wherever training put them, and a random code decodes to nonsense. A **VAE**
# makes the code space something you can sample from:
#
# - the **encoder** does not return a code but a *distribution* over codes, a normal
#   distribution with a mean `μ` and a diagonal variance `σ²` per example. It returns `μ` and
#   `log σ²` (`logvar`): a log-variance can be any real number, a variance must be positive;
# - a code `z` is **drawn** from that distribution and the **decoder** rebuilds `x` from it;
# - a penalty, the KL term of section 6, keeps every example's distribution close to the
#   **prior** `N(0, I)`. After training, codes drawn from the prior decode into new examples.
#
# The draw is the problem. `torch.normal(mu, std)` returns a sample, but not a differentiable
# function of its parameters: autograd does record the call, and defines its gradient with
# respect to `mu` and `std` as zero. The encoder would get no gradient from the
# reconstruction, silently. The **reparameterisation trick** moves the randomness out of the
# way. Draw the noise on its own, `ε ~ N(0, I)`, which
# depends on no parameter, then compute
#
# `z = μ + σ · ε`,  with `σ = exp(½ · logvar)`
#
# `z` has exactly the distribution `N(μ, σ²)`, and it is now an ordinary differentiable
# expression: `∂z/∂μ = 1` and `∂z/∂logvar = ½ · σ · ε`.
#
# ### Exercise 5 · `reparameterize`
#
# Write `reparameterize(mu, logvar)`: for `mu` and `logvar` of the same shape, return one
# sample `z` of that shape from `N(mu, exp(logvar))`, differentiable with respect to both,
# with fresh noise from torch's random generator at every call, on the device of `mu`.
#
# <details><summary>Hint 1</summary>
#
# `torch.randn_like(mu)` draws standard normal noise of `mu`'s shape, dtype and device.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `logvar` is the log of the *variance*: the standard deviation is its half, exponentiated.
# </details>

# %% role="answer" grade_id="reparameterize"
def reparameterize(mu, logvar):
    """A sample of N(mu, exp(logvar)), as mu + sigma * eps, differentiable in mu and logvar."""
    ### BEGIN SOLUTION
    std = torch.exp(0.5 * logvar)
    return mu + std * torch.randn_like(mu)
    ### END SOLUTION


# %% role="test" grade_id="test-reparameterize-sanity" points=1
_mu = torch.zeros(4, 3, device=checks.DEVICE, requires_grad=True)
_logvar = torch.zeros(4, 3, device=checks.DEVICE, requires_grad=True)
_zs = reparameterize(_mu, _logvar)
checks.expect_tensor(_zs, "reparameterize(mu, logvar) for (4, 3) inputs", shape=(4, 3), dtype=torch.float32,
                     requires_grad=True,
                     why="z has the shape of mu, and it must carry a graph back to mu and logvar: that is the point "
                         "of the trick.")
print("z:", tuple(_zs.shape), "requires_grad =", _zs.requires_grad)

# %% role="test" grade_id="test-reparameterize" points=3
# Hidden tests check the mean and spread of many samples, the gradients that reach mu and logvar,
# fresh noise at every call, that the inputs are left alone, and the device (meta).
### BEGIN HIDDEN TESTS
_mu_v = torch.tensor([1.5, -0.5, 0.0], device=checks.DEVICE)
_lv_v = torch.tensor([-2.0, 0.6, 1.4], device=checks.DEVICE)
with checks.seeded(8):
    _mu = _mu_v.expand(40000, 3).clone().requires_grad_()
    _lv = _lv_v.expand(40000, 3).clone().requires_grad_()
    _z = reparameterize(_mu, _lv)
checks.expect_tensor(_z, "reparameterize's sample for (40000, 3) inputs", shape=(40000, 3), dtype=torch.float32)
checks.expect(torch.equal(_mu.detach()[0], _mu_v) and torch.equal(_lv.detach()[0], _lv_v),
              "reparameterize changed its inputs in place. Compute z as a new tensor.")
_sd_v = torch.exp(0.5 * _lv_v)
checks.expect_close(_z.detach().std(dim=0), _sd_v, "The standard deviation of 40000 samples, per dimension",
                    rtol=0.03, atol=0.0,
                    why="The samples should spread with sigma = exp(0.5 * logvar): logvar is the log of the "
                        "variance, so sigma is not exp(logvar), nor logvar itself (Hint 2). The noise must be "
                        "standard normal (randn, not rand).")
checks.expect_close(_z.detach().mean(dim=0), _mu_v, "The mean of 40000 samples, per dimension", rtol=0.0,
                    atol=0.05, why="The samples should be centred on mu: z = mu + sigma * eps with eps of mean 0.")
checks.expect(_z.requires_grad and _z.grad_fn is not None,
              "reparameterize's sample carries no graph: it was detached, or computed under no_grad. Draw eps on "
              "its own and compute z = mu + sigma * eps, an expression autograd differentiates.")
_gmu, _glv = torch.autograd.grad(_z.sum(), [_mu, _lv], allow_unused=True)
checks.expect(_gmu is not None and _glv is not None,
              "The gradient of z does not reach both mu and logvar: z must be computed from both, as "
              "mu + exp(0.5 * logvar) * eps.")
_eps = ((_z - _mu) / torch.exp(0.5 * _lv)).detach()
checks.expect_close(_gmu, torch.ones_like(_gmu), "The gradient of z.sum() with respect to mu", rtol=1e-4,
                    atol=1e-5, why="dz/dmu is 1: z = mu + sigma * eps. (torch.normal's gradient is zero: it is no "
                                   "substitute for the trick.)")
checks.expect_close(_glv, 0.5 * torch.exp(0.5 * _lv.detach()) * _eps, "The gradient of z.sum() with respect to "
                    "logvar", rtol=1e-3, atol=1e-5,
                    why="dz/dlogvar is 0.5 * sigma * eps for z = mu + exp(0.5 * logvar) * eps, with eps drawn "
                        "independently of the parameters.")
with checks.seeded(9):
    _a = reparameterize(torch.zeros(5, 2, device=checks.DEVICE), torch.zeros(5, 2, device=checks.DEVICE))
    _b = reparameterize(torch.zeros(5, 2, device=checks.DEVICE), torch.zeros(5, 2, device=checks.DEVICE))
checks.expect(not torch.equal(_a, _b),
              "Two calls of reparameterize gave the same sample: the noise is not drawn afresh at every call. Draw "
              "eps with torch.randn_like inside the function.")
try:
    _meta = reparameterize(torch.zeros(5, 2, device="meta"), torch.zeros(5, 2, device="meta"))
except (RuntimeError, NotImplementedError) as _err:
    if isinstance(_err, NotImplementedError) and "Replace this line" in str(_err):
        raise
    checks.expect(False, f"reparameterize failed for inputs on another device (the test used 'meta'): "
                         f"{type(_err).__name__}: {str(_err)[:100]}. Draw the noise on mu's device: "
                         "torch.randn_like(mu) (Hint 1).")
checks.expect_tensor(_meta, "reparameterize's sample for inputs on the meta device", shape=(5, 2), device="meta",
                     why="Draw the noise on mu's device (Hint 1).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-kl"
# ## 6 · The KL term, and its sign
#
# The VAE's loss has two parts. The **reconstruction** term says how well the decoder rebuilds
# `x` from the drawn code. The **KL term** is the Kullback–Leibler divergence between the
# encoder's distribution for `x` and the prior:
#
# `KL(N(μ, σ²) ‖ N(0, 1))`, which for one dimension has the closed form
# `½ · (μ² + σ² − 1 − log σ²)`,
#
# summed over the code's dimensions (they are independent). It is zero exactly when `μ = 0` and
# `σ² = 1`, and **never negative**: it measures how far the encoder's distribution has strayed
# from the prior, and the loss *adds* it, to pull every distribution back towards the prior.
# That pull is what makes prior samples decode into something sensible: the codes of real
# examples fill the region the prior draws from.
#
# Subtract it by mistake and the loss rewards the encoder for moving away from the prior: the
# KL term grows without end, the loss goes negative and keeps falling, and prior samples decode
# to nothing like the data. A loss below zero, for a sum of a cross-entropy and a KL, is the
# alarm bell.
#
# Together the two terms are the negative **ELBO** (evidence lower bound): the ELBO is a lower
# bound on the log-likelihood the model gives `x`, so minimising `reconstruction + KL`
# maximises that bound.
#
# ### Exercise 6 · `kl_divergence`
#
# Write `kl_divergence(mu, logvar)`: for `mu` and `logvar` of shape `(N, latent_dim)`, return the
# `(N,)` KL divergences between `N(mu, exp(logvar))` and `N(0, I)`, one per example, summed over
# the code's dimensions, in closed form.
#
# <details><summary>Hint 1</summary>
#
# With `logvar = log σ²`, `σ²` is `logvar.exp()`, and `log σ²` is `logvar` itself.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Sum over `dim=1`, the code's dimensions; keep one number per example.
# </details>

# %% role="answer" grade_id="kl"
def kl_divergence(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per example: (N, latent_dim) inputs -> (N,)."""
    ### BEGIN SOLUTION
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
    ### END SOLUTION


# %% role="test" grade_id="test-kl-sanity" points=1
_kl = kl_divergence(torch.zeros(3, 2, device=checks.DEVICE), torch.zeros(3, 2, device=checks.DEVICE))
checks.expect_tensor(_kl, "kl_divergence for (3, 2) inputs", shape=(3,),
                     why="One KL divergence per example, summed over the code's dimensions (Hint 2).")
checks.expect(bool((_kl.abs() < 1e-6).all()),
              "kl_divergence(0, 0) is not 0: an encoder that returns the prior itself (mu = 0, logvar = 0, so "
              "sigma = 1) is at KL divergence 0 from it.")
print("kl_divergence at the prior:", _kl.tolist())

# %% role="test" grade_id="test-kl" points=2
# Hidden tests compare with torch.distributions on random inputs of other sizes, and check that the
# divergence is never negative and grows as the distribution moves away from the prior.
### BEGIN HIDDEN TESTS
with checks.seeded(10):
    _mu = 1.5 * torch.randn(7, 5, device=checks.DEVICE)
    _lv = 1.5 * torch.randn(7, 5, device=checks.DEVICE)
_got = kl_divergence(_mu, _lv)
checks.expect_tensor(_got, "kl_divergence for (7, 5) inputs", shape=(7,),
                     why="One divergence per example: sum over the code's dimensions, not over the batch, and "
                         "do not average them (Hint 2).")
checks.expect(bool((_got >= -1e-5).all()),
              "kl_divergence returned negative values. A KL divergence is never negative: check the sign of "
              "every term of 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2).")
_want = torch.distributions.kl_divergence(
    torch.distributions.Normal(_mu, torch.exp(0.5 * _lv)),
    torch.distributions.Normal(torch.zeros_like(_mu), torch.ones_like(_lv))).sum(dim=1)
checks.expect_close(_got, _want, "kl_divergence for random mu and logvar", rtol=1e-4, atol=1e-5,
                    why="The closed form per dimension is 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2), with "
                        "sigma^2 = exp(logvar) and log sigma^2 = logvar (Hint 1), summed over the code's "
                        "dimensions.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-vae-loss"
# ## 7 · The VAE's loss
#
# The next cell loads the scikit-learn digits as flat vectors of 64 pixels in `[0, 1]`
# (`x_train`, 1,437 images; `x_val`, 360), and defines the model, `VAE(in_dim=64,
# latent_dim=4, hidden=128)`: `model.encode(x)` returns `(mu, logvar)`, each
# `(N, latent_dim)`, and `model.decode(z)` returns **logits**, one per pixel, `(N, 64)`.
#
# The reconstruction term treats each pixel's intensity as the probability of a black pixel
# and scores the decoder's logits with binary cross-entropy (`BCEWithLogits` takes targets in
# `[0, 1]`, not only 0 and 1), **summed over the 64 pixels**: one number per image, in the
# same units as the KL term, which is summed over the code. The loss of a batch is the mean,
# over the images, of reconstruction plus KL. Averaging the reconstruction over pixels instead
# divides it by 64 while the KL keeps its full weight: the KL term then wins, every code
# collapses onto the prior, and the decoder learns to draw the average digit.
#
# ### Exercise 7 · Fix a broken snippet
#
# `vae_loss_broken` below has **three** bugs, each of them named in a section of this
# notebook. Run the cell: the loss goes negative and keeps falling, the alarm bell of
# section 6. Then write `vae_loss(model, x)`, the fixed version:
# the mean over the batch of (reconstruction summed over pixels + KL), with `z` drawn by your
# `reparameterize` and the KL from your `kl_divergence`. Return the loss tensor (with its
# graph: the training loop calls `backward()` on it).
#
# <details><summary>Hint 1</summary>
#
# Look at how the code is drawn (section 5), the sign of the KL term (section 6), and how the
# reconstruction is reduced over the pixels (this section).
# </details>
#
# <details><summary>Hint 2</summary>
#
# `F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)` gives one
# reconstruction term per image.
# </details>

# %% role="locked" grade_id="vae-setup"
from sklearn.datasets import load_digits


class VAE(nn.Module):
    """An MLP encoder x -> (mu, logvar) and an MLP decoder z -> pixel logits."""

    def __init__(self, in_dim=64, latent_dim=4, hidden=128):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, in_dim))

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        return self.decoder(z)


def load_digit_vectors(device, seed=0):
    """Digits as (N, 64) float32 pixels in [0, 1], split 1,437 / 360 with a fixed seed."""
    images, _ = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32) / 16.0
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[order[:1437]].to(device), x[order[1437:]].to(device)


x_train, x_val = load_digit_vectors(checks.DEVICE)


def vae_loss_broken(model, x):
    mu, logvar = model.encode(x)
    with torch.no_grad():
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    logits = model.decode(z)
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(dim=1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)
    return (reconstruction - kl).mean()


torch.manual_seed(0)
_demo = VAE().to(checks.DEVICE)
_demo_opt = torch.optim.Adam(_demo.parameters(), lr=3e-3)
for _step in range(60):
    _demo_opt.zero_grad()
    _demo_loss = vae_loss_broken(_demo, x_train[:256])
    _demo_loss.backward()
    _demo_opt.step()
    if _step % 20 == 0 or _step == 59:
        print(f"step {_step:2d}: broken loss {_demo_loss.item():9.2f}")
print(f"digits: x_train {tuple(x_train.shape)}, x_val {tuple(x_val.shape)}")


# %% role="answer" grade_id="vae-loss"
def vae_loss(model, x):
    """The negative ELBO: mean over the batch of (BCE summed over pixels + KL). A tensor with its graph."""
    ### BEGIN SOLUTION
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar)
    logits = model.decode(z)
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
    return (reconstruction + kl_divergence(mu, logvar)).mean()
    ### END SOLUTION


# %% role="test" grade_id="test-vae-loss-sanity" points=1
with checks.seeded(0):
    _m = VAE().to(checks.DEVICE)
    _l = vae_loss(_m, x_train[:16])
checks.expect_tensor(_l, "vae_loss(model, 16 images)", shape=(), requires_grad=True,
                     why="Return the loss as a 0-dimensional tensor that still carries its graph, so that the "
                         "training loop can call backward() on it.")
checks.expect(_l.item() > 0,
              f"vae_loss is {_l.item():.3g}: negative. A binary cross-entropy plus a KL divergence cannot be "
              "negative; check the sign of the KL term (section 6).")
print(f"vae_loss on 16 images of an untrained VAE: {_l.item():.2f}")


# %% role="test" grade_id="test-vae-loss" points=3
# Hidden tests run vae_loss on a VAE of other sizes that records the codes it decodes, rebuild the
# loss from those codes, and compare the value and the gradients of the encoder and the decoder.
### BEGIN HIDDEN TESTS
class _SpyVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.latent_dim = 3
        self.encoder = nn.Sequential(nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 6))
        self.decoder = nn.Sequential(nn.Linear(3, 12), nn.Tanh(), nn.Linear(12, 10))
        self.codes, self.stats = [], []

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        self.stats.append((mu, logvar))
        return mu, logvar

    def decode(self, z):
        self.codes.append(z)
        return self.decoder(z)


with checks.seeded(12):
    _m = _SpyVAE().to(checks.DEVICE)
    _x = torch.rand(40, 10, device=checks.DEVICE)
    _loss = vae_loss(_m, _x)
checks.expect_tensor(_loss, "vae_loss for a batch of 40", shape=(), why="Return the mean loss as a 0-d tensor.")
checks.expect(len(_m.stats) == 1 and len(_m.codes) == 1,
              f"vae_loss called encode {len(_m.stats)} and decode {len(_m.codes)} times; one of each per call.")
(_mu, _lv), _z = _m.stats[0], _m.codes[0]
checks.expect_tensor(_z, "The code vae_loss decoded", shape=(40, 3),
                     why="Decode one code per image, drawn from the encoder's distribution.")
checks.expect(_z.requires_grad and _z.grad_fn is not None,
              "The code that vae_loss decoded carries no graph back to the encoder: it was drawn under no_grad, "
              "or detached. Then the reconstruction term sends no gradient to the encoder, "
              "which learns from the KL term alone. Draw it with your reparameterize (section 5).")
_eps = ((_z - _mu) / torch.exp(0.5 * _lv)).detach()
checks.expect(0.6 < _eps.std().item() < 1.5 and _eps.mean().abs().item() < 0.4,
              "The codes vae_loss decoded were not drawn from the encoder's distribution: (z - mu) / sigma should "
              "look like standard normal noise, and it does not (no noise, or noise of the wrong size). Draw "
              "z = mu + sigma * eps with eps ~ N(0, I): your reparameterize.")
_z_ref = _mu + torch.exp(0.5 * _lv) * _eps
_rec = F.binary_cross_entropy_with_logits(_m.decoder(_z_ref), _x, reduction="none")
_kl = 0.5 * (_mu.pow(2) + _lv.exp() - 1 - _lv).sum(dim=1)
_ref = (_rec.sum(dim=1) + _kl).mean()
_candidates = {
    "the KL term is subtracted instead of added: the loss then rewards the encoder for moving away from the prior "
    "(section 6).": (_rec.sum(dim=1) - _kl).mean(),
    "the reconstruction term is averaged over the pixels instead of summed: the KL term then outweighs it 64 to 1 "
    "on digits, and the codes collapse onto the prior (section 7).": (_rec.mean(dim=1) + _kl).mean(),
    "the loss is summed over the batch instead of averaged: its size, and the step, then grow with the batch.":
        (_rec.sum(dim=1) + _kl).sum(),
}
for _what, _value in _candidates.items():
    checks.expect(not math.isclose(_loss.item(), _value.item(), rel_tol=1e-4), "vae_loss's value shows that " + _what)
checks.expect_close(_loss, _ref, "vae_loss's value", rtol=1e-4, atol=1e-5,
                    why="The loss is the mean over the batch of the binary cross-entropy of the decoder's logits "
                        "against x, summed over the pixels, plus the KL divergence of the encoder's distribution "
                        "from the prior.")
_params = list(_m.parameters())
_got_grads = torch.autograd.grad(_loss, _params, retain_graph=True, allow_unused=True)
_ref_grads = torch.autograd.grad(_ref, _params, allow_unused=True)
for (_n, _), _g, _r in zip(_m.named_parameters(), _got_grads, _ref_grads):
    checks.expect(_g is not None, f"vae_loss sends no gradient to {_n}.")
    checks.expect_close(_g, _r, f"The gradient of vae_loss with respect to {_n}", rtol=1e-3, atol=1e-5,
                        why="The reconstruction must reach the encoder through the code: z = mu + sigma * eps, with "
                            "only eps outside the graph (section 5).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-train-vae"
# ## 8 · Training the VAE, and drawing new digits
#
# Training is the loop of 05 with `vae_loss`. How good is the result? The negative ELBO on the
# **held-out** images, in nats per image, is the number to watch: it bounds how surprised the
# model is by digits it never saw. Two yardsticks on these digits: a model that ignores the
# image and predicts every pixel by its average intensity scores **27.2 nats**, and the
# binary cross-entropy cannot go below **13.6**, the entropy of the grey pixels themselves
# (an intensity of 0.5 is a coin toss however well you predict it). A VAE whose codes carry
# nothing (KL at 0, the collapse of section 7) is the first model. The gap looks small, but
# every nat is a factor of e in probability, per image.
#
# Generating is the part that needs no encoder: draw codes from the **prior** `N(0, I)`,
# decode them, and turn the logits into pixel intensities with a sigmoid. Generating is not
# training, so it runs without a graph (`torch.no_grad()`), and it draws from a generator
# you pass ([10](../10_sequences/10_sequences.ipynb), section 7) when you want it repeatable.
#
# ### Exercise 8 · `train_vae` and `sample_vae`
#
# - `train_vae(model, x_train, epochs, batch_size=64)`: train `model` on `x_train` with
#   `vae_loss` and an optimiser of your choice, one step per batch of `batch_size` images, for
#   `epochs` passes over the shuffled data; return the list of the epochs' mean losses, as floats.
# - `sample_vae(model, n, generator=None)`: `n` new images, `(n, in_dim)` intensities in
#   `[0, 1]`, decoded from codes `(n, model.latent_dim)` drawn from the prior with `generator`,
#   on the model's device, without a graph.
#
# The hidden test trains a fresh `VAE` (another seed) with `train_vae` for **25 epochs** and
# asks for a held-out negative ELBO **below 25.5 nats**. Our solution reaches about 24.5, with
# a KL term near 3 nats: codes of a few bits, enough to tell the digits apart.
#
# <details><summary>Hint 1</summary>
#
# Adam with a learning rate around 3e-3 works well. `torch.randperm(len(x_train),
# device=x_train.device)` shuffles the order.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The model's device: `next(model.parameters()).device`. `torch.randn(shape, generator=...,
# device=...)` draws with a generator; `torch.sigmoid` turns logits into intensities.
# </details>

# %% role="answer" grade_id="train-vae"
def train_vae(model, x_train, epochs, batch_size=64):
    """Train model with vae_loss, one step per batch. Returns the epochs' mean losses (floats)."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), device=x_train.device)
        total, batches = 0.0, 0
        for start in range(0, len(x_train), batch_size):
            optimizer.zero_grad()
            loss = vae_loss(model, x_train[order[start:start + batch_size]])
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        history.append(total / batches)
    return history
    ### END SOLUTION


def sample_vae(model, n, generator=None):
    """n images (n, in_dim) in [0, 1], decoded from prior codes drawn with generator; no graph."""
    ### BEGIN SOLUTION
    device = next(model.parameters()).device
    with torch.no_grad():
        z = torch.randn(n, model.latent_dim, generator=generator, device=device)
        return torch.sigmoid(model.decode(z))
    ### END SOLUTION


# %% role="locked" grade_id="vae-run"
# Your run: train a VAE, measure it on the held-out digits, and draw three new ones.
def negative_elbo(model, x, draws=8, seed=0):
    """Held-out negative ELBO in nats per image, averaged over draws codes per image (no graph)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        sigma = torch.exp(0.5 * logvar)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1 - logvar).sum(dim=1)
        rec = 0.0
        for _ in range(draws):
            z = mu + sigma * torch.randn(mu.shape, generator=generator).to(mu.device)
            rec = rec + F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(dim=1)
        return (rec / draws + kl).mean().item()


try:
    torch.manual_seed(0)
    vae = VAE().to(checks.DEVICE)
    vae_history = train_vae(vae, x_train, epochs=25)
    print("epoch losses:", [round(v, 1) for v in vae_history[::5]], "...", round(vae_history[-1], 1))
    print(f"held-out negative ELBO: {negative_elbo(vae, x_val):.2f} nats per image (pixel averages: 27.2)")
    _shades = " .:-=+*#%@"
    _new = sample_vae(vae, 3, torch.Generator(device=checks.DEVICE).manual_seed(0)).cpu().view(3, 8, 8)
    for _row in range(8):
        print("   ".join("".join(_shades[min(9, int(v * 10))] * 2 for v in _img[_row]) for _img in _new))
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-train-vae-sanity" points=1
with checks.seeded(0):
    _m = VAE().to(checks.DEVICE)
    _h = train_vae(_m, x_train[:128], epochs=2)
    _s = sample_vae(_m, 5)
checks.expect(type(_h) is list and len(_h) == 2 and all(type(_v) is float for _v in _h),
              f"train_vae(model, x, epochs=2) should return a list of 2 floats, one mean loss per epoch; it returned "
              f"{checks.describe(_h)}.")
checks.expect_tensor(_s, "sample_vae(model, 5)", shape=(5, 64), dtype=torch.float32,
                     why="One row of 64 pixel intensities per new image.")
print("epoch losses:", [round(_v, 1) for _v in _h], "| samples:", tuple(_s.shape))

# %% role="test" grade_id="test-sample-vae" points=2
# Hidden tests decode through a VAE of other sizes that records its codes: their shape and spread
# (the prior), the sigmoid, no graph, the generator (repeatable, global RNG untouched), the device (meta).
### BEGIN HIDDEN TESTS
class _CodeSpy(nn.Module):
    def __init__(self):
        super().__init__()
        self.latent_dim = 3
        self.decoder = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 10))
        self.codes = []

    def encode(self, x):
        raise AssertionError("sample_vae called encode: samples from the prior need no image, only the decoder.")

    def decode(self, z):
        self.codes.append(z)
        return 4 * self.decoder(z)


with checks.seeded(14):
    _m = _CodeSpy().to(checks.DEVICE)
_gen = torch.Generator(device=checks.DEVICE).manual_seed(3)
_rng = torch.get_rng_state()
_s = sample_vae(_m, 6000, _gen)
checks.expect(torch.equal(_rng, torch.get_rng_state()),
              "sample_vae used torch's global random state although it was given a generator: draw the codes with "
              "the generator (torch.randn(..., generator=generator)).")
checks.expect_tensor(_s, "sample_vae(model, 6000, generator) for a model with 10 outputs", shape=(6000, 10),
                     dtype=torch.float32, requires_grad=False,
                     why="Generating is not training: decode under torch.no_grad(), so no graph is kept.")
checks.expect(len(_m.codes) >= 1, "sample_vae never called model.decode.")
_z = _m.codes[-1]
checks.expect_tensor(_z, "The codes sample_vae decoded", shape=(6000, 3),
                     why="Draw one code of model.latent_dim numbers per image.")
checks.expect_close(_z.float().std(dim=0), torch.ones(3, device=checks.DEVICE), "The spread of the codes",
                    rtol=0.05, atol=0, why="Codes come from the prior N(0, I): standard deviation 1, randn not rand.")
checks.expect_close(_z.float().mean(dim=0), torch.zeros(3, device=checks.DEVICE), "The mean of the codes",
                    rtol=0, atol=0.06, why="Codes come from the prior N(0, I): standard normal noise (randn).")
with torch.no_grad():
    _want = torch.sigmoid(_m.decoder(_z) * 4)
checks.expect(bool((_s >= 0).all() and (_s <= 1).all()),
              "sample_vae returned values outside [0, 1]: the decoder returns logits. Turn them into intensities "
              "with torch.sigmoid.")
checks.expect_close(_s, _want, "sample_vae's images", rtol=1e-4, atol=1e-5,
                    why="The images are the sigmoid of the decoder's logits for the drawn codes.")
_again = sample_vae(_m, 6000, torch.Generator(device=checks.DEVICE).manual_seed(3))
checks.expect(torch.equal(_again, _s),
              "Two generators seeded alike gave different samples: sample_vae does not draw from the generator it "
              "is given.")
try:
    _meta = sample_vae(_CodeSpy().to("meta"), 4)
except (RuntimeError, NotImplementedError) as _err:
    if isinstance(_err, NotImplementedError) and "Replace this line" in str(_err):
        raise
    checks.expect(False, "sample_vae failed for a model on another device (the test used 'meta'): "
                         f"{type(_err).__name__}: {str(_err)[:100]}. Draw the codes on the model's device (Hint 2).")
checks.expect_tensor(_meta, "sample_vae for a model on the meta device", shape=(4, 10), device="meta",
                     why="Draw the codes on the model's device (Hint 2).")
### END HIDDEN TESTS

# %% role="test" grade_id="test-train-vae" points=4
# Hidden tests train a fresh VAE (another seed) for 25 epochs with train_vae, count the steps, and
# measure the negative ELBO on the held-out digits: below 25.5 nats per image.
### BEGIN HIDDEN TESTS
class _TestVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.latent_dim = 4
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8))
        self.decoder = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 64))
        self.encodes = 0

    def encode(self, x):
        self.encodes += 1
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        return self.decoder(z)


_images, _ = load_digits(return_X_y=True)
_x = torch.tensor(_images, dtype=torch.float32) / 16.0
_order = torch.randperm(len(_x), generator=torch.Generator().manual_seed(0))
_x_tr, _x_va = _x[_order[:1437]].to(checks.DEVICE), _x[_order[1437:]].to(checks.DEVICE)
with checks.seeded(4):
    _m = _TestVAE().to(checks.DEVICE)
    _h = train_vae(_m, _x_tr, epochs=25)
_steps = _m.encodes
checks.expect(_steps <= 25 * math.ceil(1437 / 64),
              f"train_vae encoded {_steps} batches in 25 epochs of 1437 images in batches of 64; at most "
              f"{25 * math.ceil(1437 / 64)} (one step per batch).")
checks.expect(type(_h) is list and len(_h) == 25 and all(type(_v) is float for _v in _h),
              f"train_vae should return 25 floats, one mean loss per epoch; it returned {checks.describe(_h)}.")
_gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    _mu, _lv = _m.encode(_x_va)
    _sd = torch.exp(0.5 * _lv)
    _kl = 0.5 * (_mu.pow(2) + _sd.pow(2) - 1 - _lv).sum(dim=1)
    _rec = 0.0
    for _ in range(8):
        _z = _mu + _sd * torch.randn(_mu.shape, generator=_gen).to(_mu.device)
        _rec = _rec + F.binary_cross_entropy_with_logits(_m.decode(_z), _x_va, reduction="none").sum(dim=1)
    _nelbo = (_rec / 8 + _kl).mean().item()
    _kl_mean = _kl.mean().item()
print(f"held-out negative ELBO {_nelbo:.2f} nats per image (KL {_kl_mean:.2f})")
checks.expect(math.isfinite(_nelbo), "After train_vae the model's held-out ELBO is not finite: training diverged.")
checks.expect(_nelbo < 25.5,
              f"After 25 epochs of train_vae the negative ELBO on held-out digits is {_nelbo:.2f} nats per image, with "
              f"a mean KL term of {_kl_mean:.2f}; the target is below 25.5 (the average-pixel model scores 27.2). A "
              "KL term near 0 means the codes carry nothing and the decoder draws the average digit; a very large "
              "one, that the encoder is not pulled towards the prior. Check the loss (sections 5 to 7) and the "
              "learning rate (Hint 1): watch the epoch losses fall.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A GAN trains two networks with two optimisers, each holding its own network's
#   parameters. The discriminator's step scores real points as 1 and **detached** fakes as 0;
#   the generator's step scores fresh fakes as 1 **through** a frozen discriminator, so the
#   gradient reaches the generator and the discriminator comes out untouched.
# - The non-saturating loss `BCE(D(G(z)), 1)` keeps the generator's gradient alive when the
#   discriminator wins easily.
# - A GAN is judged by its samples, not its losses: modes covered, samples on the data.
# - A VAE's encoder returns a distribution; the reparameterisation trick,
#   `z = μ + exp(½ logvar) · ε`, draws from it so that gradients reach the encoder.
# - The KL term `½ Σ (μ² + σ² − 1 − log σ²)` is never negative and is *added*; the
#   reconstruction is summed over the pixels, in the same units.
# - New data comes from decoding codes drawn from the prior, without a graph.
#
# Next, in **[14 · Performance](../14_performance/14_performance.ipynb)**, the same training loops run faster: mixed precision,
# compilation, and timing them honestly.
