# %% [markdown] role="prose" grade_id="title"
# # 11 · Attention
#
# **Time:** about 2 h 15 min of work (4,100 words to read, 9 exercises). Run top to bottom, the
# finished notebook takes about 32 s.
#
# A recurrent network (10) passes information along a sequence one step at a time: what step
# 40 knows about step 1 has been squeezed through 39 updates of one hidden state. **Attention**
# drops the relay. Every position asks a question, a *query*; every position offers a *key*
# saying what it holds and a *value*, the content itself. Each query is compared with every key,
# the comparisons become weights that sum to 1, and the answer is the weighted average of the
# values. Step 40 reads step 1 directly, all positions are computed at once, and the same few
# lines of tensor code do it for any length.
#
# Stack attention with a small per-position network, add residual connections and layer
# normalisation, and you have the **transformer block**, the unit that today's language,
# vision and speech models repeat dozens of times. This notebook builds one from the matrix
# products up and trains a tiny one.
#
# **By the end of this notebook you will be able to:**
# - write scaled dot-product attention from scratch, masks included, and match PyTorch's
#   `F.scaled_dot_product_attention`;
# - build causal and padding masks that broadcast to the right dimensions, and prove that no
#   information leaks from the future or from the padding;
# - split a model's features into heads and merge them back without mixing tokens, and
#   write multi-head self-attention that agrees with `nn.MultiheadAttention`;
# - explain why attention needs positional encodings, and compute the sinusoidal ones;
# - assemble a pre-norm transformer block with residual connections, and train a tiny
#   transformer to reverse sequences.
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

# %% [markdown] role="prose" grade_id="md-attention"
# ## 1 · Scaled dot-product attention
#
# Take `Lq` queries and `Lk` keys, all vectors of the same size `d`, and `Lk` values of size
# `dv`, one per key. Attention computes three things:
#
# 1. **scores**: how well each query matches each key, as a dot product. For all pairs at
#    once that is one matrix product, `q @ kᵀ`, of shape `(Lq, Lk)`: row `i` holds query `i`'s
#    score against every key;
# 2. **weights**: a softmax over each row, *across the keys*, so that every query's weights
#    are positive and sum to 1;
# 3. **output**: `weights @ v`, shape `(Lq, dv)`: for every query, the weighted average of the
#    values.
#
# The scores are divided by `√d` before the softmax. Why: if the entries of `q` and `k` are
# roughly independent with variance 1, a dot product of `d` of their products has variance `d`.
# With `d = 64` the scores spread over ±8 or more, the softmax puts almost all the weight on one
# key, and its gradient all but vanishes. Dividing by `√d` brings the variance back to 1,
# whatever the size of the vectors. `d` is the size of the **query and key vectors** (the last
# dimension of `q`), not the number of keys.
#
# Real tensors carry more dimensions in front: a batch, and later heads, `(N, H, Lq, d)`.
# Matrix products broadcast over the leading dimensions (02), so the same code works if the
# transpose swaps **only the last two dimensions** of `k`: `k.transpose(-2, -1)`.
#
# A **mask** says which keys each query may look at: a boolean tensor that broadcasts to the
# scores' shape, `True` where the query *may* attend. (This is the convention of
# `F.scaled_dot_product_attention`; `nn.MultiheadAttention` uses the opposite one, so read the
# documentation of whatever you call.) A masked key must get a weight of exactly 0, and the
# other weights must still sum to 1. Setting its *score* to `-inf` before the softmax does
# both: `exp(-inf) = 0`. A score of 0 is still a score, and zeroing the *weights* after the
# softmax leaves rows that no longer sum to 1.
#
# ### Exercise 1 · `attention`
#
# Write `attention(q, k, v, mask=None)`, returning `(output, weights)`: `q` is `(..., Lq, d)`,
# `k` is `(..., Lk, d)`, `v` is `(..., Lk, dv)`, with any number of leading dimensions;
# `weights` is `(..., Lq, Lk)` and `output` is `(..., Lq, dv)`. `mask`, if given, is a boolean
# tensor that broadcasts to the weights' shape, `True` where attending is allowed. Build it
# from matrix products and a softmax: the hidden tests compare it with
# `F.scaled_dot_product_attention`, and check that it does not call it.
#
# <details><summary>Hint 1</summary>
#
# `scores = q @ k.transpose(-2, -1)`, divided by the square root of `q.shape[-1]`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The softmax runs over the keys: the last dimension of the scores. For the mask,
# `scores.masked_fill(~mask, float("-inf"))` before the softmax.
# </details>

# %% role="answer" grade_id="attention"
def attention(q, k, v, mask=None):
    """Scaled dot-product attention. Returns (output (..., Lq, dv), weights (..., Lq, Lk))."""
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
    ### END SOLUTION


# %% role="test" grade_id="test-attention-sanity" points=1
with checks.seeded(0):
    _q = torch.randn(2, 3, 4, device=checks.DEVICE)
    _k = torch.randn(2, 5, 4, device=checks.DEVICE)
    _v = torch.randn(2, 5, 6, device=checks.DEVICE)
_res = attention(_q, _k, _v)
checks.expect(type(_res) is tuple and len(_res) == 2,
              f"attention() should return a tuple (output, weights); it returned {checks.describe(_res)}.")
checks.expect_tensor(_res[0], "The output of attention() for q (2, 3, 4), k (2, 5, 4), v (2, 5, 6)", shape=(2, 3, 6),
                     why="One value-sized vector per query.")
checks.expect_tensor(_res[1], "The weights of attention() for q (2, 3, 4), k (2, 5, 4)", shape=(2, 3, 5),
                     why="One weight per (query, key) pair.")
print("output", tuple(_res[0].shape), "weights", tuple(_res[1].shape))


# %% role="test" grade_id="test-attention" points=3
# Hidden tests compare attention with F.scaled_dot_product_attention on random inputs with no,
# one and two leading dimensions, several sizes d, and check that it does not call it.
### BEGIN HIDDEN TESTS
def _weights_ref(q, k, scale):
    return torch.softmax(q @ k.transpose(-2, -1) * scale, dim=-1)


for _qs, _ks, _vs in [((7, 8), (4, 8), (4, 3)), ((2, 3, 4), (2, 5, 4), (2, 5, 6)),
                      ((2, 3, 6, 16), (2, 3, 9, 16), (2, 3, 9, 5))]:
    with checks.seeded(len(_qs)):
        _q = torch.randn(_qs, device=checks.DEVICE)
        _k = torch.randn(_ks, device=checks.DEVICE)
        _v = torch.randn(_vs, device=checks.DEVICE)
    _what = f"q {_qs}, k {_ks}, v {_vs}"
    try:
        _res, _counter = checks.count_torch_calls(attention, _q, _k, _v)
    except (RuntimeError, IndexError) as _err:
        checks.expect(False, f"attention() failed for {_what}: {str(_err)[:160]}. It must work for any number "
                             "of leading (batch, head) dimensions, or none: swap only the last two dimensions of "
                             "k (Hint 1), and let the matrix products broadcast over the rest.")
    checks.expect(_counter.calls.get("scaled_dot_product_attention", 0) == 0,
                  "attention() calls F.scaled_dot_product_attention: this exercise is to build it yourself, from "
                  "a matrix product, a scale and a softmax.")
    checks.expect(type(_res) is tuple and len(_res) == 2,
                  f"attention() should return a tuple (output, weights); it returned {checks.describe(_res)}.")
    _out, _w = _res
    checks.expect_tensor(_w, f"The weights for {_what}", shape=_qs[:-1] + (_ks[-2],),
                         why="There is one weight per (query, key) pair: scores = q @ k.transpose(-2, -1), which "
                             "keeps the leading dimensions and swaps only the last two.")
    checks.expect_tensor(_out, f"The output for {_what}", shape=_qs[:-1] + (_vs[-1],),
                         why="The output is weights @ v: one value-sized vector per query.")
    checks.expect(torch.allclose(_w.detach().sum(-1), torch.ones((), device=checks.DEVICE), atol=1e-5),
                  f"For {_what}, the weights of a query do not sum to 1 over the keys. The softmax must run over "
                  "the last dimension of the scores, the keys, so that each query shares out a weight of 1 "
                  "(Hint 2).")
    _d = _qs[-1]
    _w = _w.detach()
    if not torch.allclose(_w, _weights_ref(_q, _k, 1 / math.sqrt(_d)), rtol=1e-4, atol=1e-5):
        checks.expect(not torch.allclose(_w, _weights_ref(_q, _k, 1.0), rtol=1e-4, atol=1e-5),
                      f"For {_what}, the weights are softmax(q @ kᵀ) without the scale: divide the scores by √d, "
                      "where d is the size of the query and key vectors, or large d makes the softmax saturate.")
        checks.expect(not torch.allclose(_w, _weights_ref(_q, _k, 1 / _d), rtol=1e-4, atol=1e-5),
                      f"For {_what}, the weights are softmax(q @ kᵀ / d): the scores are divided by d. Divide by "
                      "√d, which brings a dot product of d unit-variance terms back to variance 1.")
        checks.expect(False, f"For {_what}, the weights are not softmax(q @ kᵀ / √d) over the keys, with d = "
                             f"q.shape[-1] = {_d} (the size of the query and key vectors, not the number of keys).")
    checks.expect_close(_out, F.scaled_dot_product_attention(_q, _k, _v), f"The output for {_what}", rtol=1e-4,
                        atol=1e-5,
                        why="The weights are right but the output is not weights @ v: each query's output is the "
                            "weighted average of the values.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-attention-mask" points=2
# Hidden tests compare masked attention with F.scaled_dot_product_attention for a mask per
# (query, key) pair and a mask per key that broadcasts over heads and queries.
### BEGIN HIDDEN TESTS
with checks.seeded(5):
    _q = torch.randn(2, 3, 4, 8, device=checks.DEVICE)
    _k = torch.randn(2, 3, 6, 8, device=checks.DEVICE)
    _v = torch.randn(2, 3, 6, 5, device=checks.DEVICE)
    _pair_mask = torch.rand(4, 6, device=checks.DEVICE) < 0.5
    _pair_mask[:, 2] = True  # every query may attend to at least one key
    _key_mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6], device=checks.DEVICE)[:, None, None, :]
for _name, _mask in [("a (4, 6) mask of allowed (query, key) pairs", _pair_mask),
                     ("a (2, 1, 1, 6) mask of allowed keys", _key_mask)]:
    _mask_copy = _mask.clone()
    _out, _w = attention(_q, _k, _v, _mask)
    checks.expect(torch.equal(_mask, _mask_copy), f"attention() changed the mask it was given ({_name}). Build a "
                                                  "new tensor (masked_fill, not masked_fill_).")
    checks.expect_tensor(_w, f"The weights with {_name}", shape=(2, 3, 4, 6))
    _allowed = _mask.expand(2, 3, 4, 6)
    _w = _w.detach()
    checks.expect(not bool((torch.nan_to_num(_w[_allowed]) == 0).all()),
                  f"With {_name}, the weights are zero exactly where the mask is True: the mask is read the wrong "
                  "way round. True means the query may attend to that key (the convention of "
                  "F.scaled_dot_product_attention).")
    checks.expect(bool((_w[~_allowed] == 0).all()),
                  f"With {_name}, keys where the mask is False got a non-zero weight. Masking must give them a "
                  "weight of exactly 0: set their scores to -inf before the softmax (a score of 0 is still a "
                  "score).")
    checks.expect(torch.allclose(_w.sum(-1), torch.ones((), device=checks.DEVICE), atol=1e-5),
                  f"With {_name}, the masked keys have weight 0 but each query's weights no longer sum to 1: the "
                  "weights were zeroed after the softmax. Mask the scores (with -inf) before the softmax, so that "
                  "the remaining keys share the whole weight.")
    checks.expect_close(_out, F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_mask),
                        f"The output of attention() with {_name}", rtol=1e-4, atol=1e-5,
                        why="Masked attention must agree with F.scaled_dot_product_attention given the same mask.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-predict"
# ## 2 · What attention does: predict, then verify
#
# Attention is a weighted average whose weights come from the data. Three of its properties
# are worth knowing by heart, because the rest of the notebook relies on them:
#
# - **Scale sharpens.** The weights are a softmax of the scores, so multiplying all the scores
#   by a number larger than 1 widens the gaps between them.
# - **Equal scores, equal weights.** If every key scores the same against a query, the softmax
#   spreads the weight evenly, and the output is the plain mean of the values.
# - **Attention does not know where a key is.** A key's weight depends on the key's *content*,
#   and nothing else. Keep reading after this exercise for what that means for word order.
#
# ### Exercise 2 · Predict, then verify
#
# **Without running anything**, fill in `predictions`:
#
# | key | question | answer |
# |---|---|---|
# | `"weights shape"` | `attention(q, k, v)` with `q` `(2, 4, 5, 8)`, `k` `(2, 4, 7, 8)`, `v` `(2, 4, 7, 3)`: the shape of `weights` | a tuple of ints |
# | `"output shape"` | the same call: the shape of `output` | a tuple of ints |
# | `"equal keys"` | `v` is `[[1.], [2.], [3.], [6.]]` (4 keys, `dv = 1`) and all four keys are the same vector: the output for any query | a float |
# | `"first causal output"` | the same `v`, any keys, and a *causal* mask (query `i` may attend to keys `0..i` only): the output of query 0 | a float |
# | `"double q and k"` | multiply `q` and `k` by 2: the weights become `"sharper"`, `"flatter"`, or stay `"unchanged"`? | a string |
# | `"shuffle keys and values"` | reorder the keys and the values with the *same* permutation (key `j` stays paired with value `j`), no mask: the output is `"unchanged"`, `"permuted"` (the same rows in another order) or `"changed"`? | a string |
#
# <details><summary>Hint 1</summary>
#
# The leading dimensions are carried through. The weights pair every query with every key; the
# output gives every query one value-sized vector.
# </details>
#
# <details><summary>Hint 2</summary>
#
# By how much does each score change when both `q` and `k` are doubled? For the shuffle: write
# the output of one query as a sum over the keys, and ask whether the order of the terms of a
# sum matters.
# </details>

# %% role="answer" grade_id="predictions"
predictions = {
    "weights shape": None,             # a tuple of ints
    "output shape": None,              # a tuple of ints
    "equal keys": None,                # a float
    "first causal output": None,       # a float
    "double q and k": None,            # "sharper", "flatter" or "unchanged"
    "shuffle keys and values": None,   # "unchanged", "permuted" or "changed"
}
### BEGIN SOLUTION
predictions = {
    "weights shape": (2, 4, 5, 7),
    "output shape": (2, 4, 5, 3),
    "equal keys": 3.0,
    "first causal output": 1.0,
    "double q and k": "sharper",
    "shuffle keys and values": "unchanged",
}
### END SOLUTION

# %% role="test" grade_id="test-predictions" points=3
# Hidden tests run each operation with F.scaled_dot_product_attention and compare with your predictions.
_keys = {"weights shape", "output shape", "equal keys", "first causal output", "double q and k",
         "shuffle keys and values"}
checks.expect(isinstance(predictions, dict) and set(predictions) == _keys,
              "`predictions` should be a dict with exactly the keys " + ", ".join(repr(_k) for _k in sorted(_keys))
              + ".")
### BEGIN HIDDEN TESTS
def _said(key, kinds):
    _v = predictions[key]
    if type(_v) is list:
        _v = tuple(_v)
    checks.expect(any(type(_v) is _t for _t in kinds),
                  f"predictions[{key!r}] should be {' or '.join(_t.__name__ for _t in kinds)}; it is "
                  f"{checks.describe(_v)}.")
    return _v


with checks.seeded(11):
    _q = torch.randn(2, 4, 5, 8, device=checks.DEVICE)
    _k = torch.randn(2, 4, 7, 8, device=checks.DEVICE)
    _v = torch.randn(2, 4, 7, 3, device=checks.DEVICE)
def _weights_of(q, k):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)


_w = _weights_of(_q, _k)
checks.expect_equal(_said("weights shape", (tuple,)), tuple(_w.shape), "Your prediction for the weights' shape",
                    why="The weights keep the leading dimensions and pair each of the Lq queries with each of "
                        "the Lk keys (Hint 1).", show=False)
checks.expect_equal(_said("output shape", (tuple,)), tuple(F.scaled_dot_product_attention(_q, _k, _v).shape),
                    "Your prediction for the output's shape",
                    why="The output gives each query one vector of the values' size (Hint 1).", show=False)
_vals = torch.tensor([[1.0], [2.0], [3.0], [6.0]], device=checks.DEVICE)
with checks.seeded(12):
    _q1 = torch.randn(3, 5, device=checks.DEVICE)
    _k1 = torch.randn(1, 5, device=checks.DEVICE).expand(4, 5)
    _k2 = torch.randn(4, 5, device=checks.DEVICE)
    _q2 = torch.randn(4, 5, device=checks.DEVICE)
_truth = F.scaled_dot_product_attention(_q1, _k1, _vals)[0, 0].item()
checks.expect(abs(float(_said("equal keys", (float, int))) - _truth) < 1e-4,
              "Your prediction for equal keys is not the output. When every key gives the same score, the softmax "
              "gives every key the same weight: the output is the plain mean of the values.")
_causal = torch.ones(4, 4, dtype=torch.bool, device=checks.DEVICE).tril()
_truth = F.scaled_dot_product_attention(_q2, _k2, _vals,
                                        attn_mask=_causal)[0, 0].item()
checks.expect(abs(float(_said("first causal output", (float, int))) - _truth) < 1e-4,
              "Your prediction for query 0 under a causal mask is not the output. Query 0 may attend to key 0 "
              "only: a softmax over a single score gives it weight 1.")


def _entropy(w):
    return -(w * w.clamp_min(1e-30).log()).sum(-1).mean().item()


_h1 = _entropy(_weights_of(_q, _k))
_h2 = _entropy(_weights_of(2 * _q, 2 * _k))
_truth = "sharper" if _h2 < _h1 - 1e-3 else "flatter" if _h2 > _h1 + 1e-3 else "unchanged"
checks.expect(_said("double q and k", (str,)) == _truth,
              "Your prediction for doubling q and k is not what happens to the weights. Each score is a dot "
              "product of a query and a key: scaling both scales the score by the product of the two factors, "
              "and larger gaps between scores make the softmax less even (Hint 2).")
_perm = torch.tensor([3, 0, 6, 1, 5, 2, 4], device=checks.DEVICE)
_base = F.scaled_dot_product_attention(_q, _k, _v)
_shuf = F.scaled_dot_product_attention(_q, _k[..., _perm, :], _v[..., _perm, :])
_truth = "unchanged" if torch.allclose(_shuf, _base, atol=1e-5) else "changed"
checks.expect(_said("shuffle keys and values", (str,)) == _truth,
              "Your prediction for shuffling the (key, value) pairs is not what happens. Each query's output is a "
              "weighted sum over the pairs, each weight depends only on the key's content, and the output has one "
              "row per query, not per key (Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-masks"
# ## 3 · Masks: no peeking at the future, no reading the padding
#
# The last prediction has a consequence: attention by itself treats its keys as a *set*.
# Sections 6 and 7 deal with word order. This section deals with the two keys a query must
# not read at all.
#
# **The future.** A model that generates text one token at a time predicts token `i + 1` from
# tokens `0..i`. Trained on whole sentences at once, it must not be allowed to look at token
# `i + 1` while predicting it, or it learns to copy instead of to predict, and fails the
# moment it meets text it has not seen. The **causal mask** lets query `i` attend to keys
# `0..i`: the lower triangle of an `(L, L)` matrix, diagonal included. Lower, because rows are
# queries and columns are keys; diagonal included, because a position may read itself.
#
# **The padding.** A batch of sequences of different lengths is padded to a rectangle (06, 10).
# The padded positions are not data, and no query may attend to them: the **padding mask** is
# `True` at each sequence's real tokens. It is a mask over *keys*, the last dimension of the
# scores `(N, H, Lq, Lk)`, so it must broadcast over heads and queries: shape `(N, 1, 1, L)`.
# Shaped `(N, L)`, broadcasting aligns it with the *last two* dimensions and treats the batch
# as queries (or fails); shaped `(N, 1, L, 1)` it masks queries instead of keys.
#
# The two combine with `&`: `causal_mask(L) & padding_mask(lengths, L)` broadcasts to
# `(N, 1, L, L)`. Like every tensor a function builds, masks belong on the device of the data
# they will meet.
#
# How do you *know* a mask works? Not by looking at it: by **changing the input where it must
# not matter and checking that nothing moves**. Change token 5; if the output at position 2
# moves, the future leaked. The hidden tests do exactly that, and so does the next cell.
#
# ### Exercise 3 · Fix a broken snippet
#
# The next cell builds a causal mask that is wrong, and shows how a leak is found. Run it. Then
# write:
#
# - `causal_mask(size, device=None)`: the `(size, size)` boolean causal mask on `device`;
# - `padding_mask(lengths, size)`: for a 1-D `int64` tensor of true lengths `(N,)`, the
#   `(N, 1, 1, size)` boolean mask, `True` at the real tokens, on `lengths`' device.
#
# <details><summary>Hint 1</summary>
#
# Row `i` of the mask is query `i`; which columns, which keys, may it read? Compare with what
# `torch.triu` and `torch.tril` keep.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For the padding mask, compare `torch.arange(size)` (on `lengths`' device) with the lengths,
# broadcasting a row of positions against a column of lengths, then add the two size-1
# dimensions with `[:, None, None, :]`.
# </details>

# %% role="locked" grade_id="masks-broken"
def causal_mask_broken(size):
    return torch.ones(size, size, dtype=torch.bool).triu()


_x = torch.randn(1, 6, 4)
_changed = _x.clone()
_changed[0, 5] += 1.0  # change the last token only
_before = F.scaled_dot_product_attention(_x, _x, _x, attn_mask=causal_mask_broken(6))
_after = F.scaled_dot_product_attention(_changed, _changed, _changed, attn_mask=causal_mask_broken(6))
print(causal_mask_broken(4).int())
print("positions whose output moved when only token 5 changed:",
      ((_after - _before).abs().amax(-1) > 1e-6).nonzero()[:, 1].tolist())


# %% role="answer" grade_id="masks"
def causal_mask(size, device=None):
    """(size, size) bool: True where query i may attend to key j, that is j <= i."""
    ### BEGIN SOLUTION
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()
    ### END SOLUTION


def padding_mask(lengths, size):
    """(N, 1, 1, size) bool: True at the real tokens of each sequence, on lengths' device."""
    ### BEGIN SOLUTION
    positions = torch.arange(size, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]
    ### END SOLUTION


# %% role="test" grade_id="test-masks-sanity" points=1
_m = causal_mask(4)
checks.expect_tensor(_m, "causal_mask(4)", shape=(4, 4), dtype=torch.bool,
                     why="A mask is a boolean tensor with one entry per (query, key) pair.")
_p = padding_mask(torch.tensor([3, 1]), 4)
checks.expect_tensor(_p, "padding_mask(torch.tensor([3, 1]), 4)", shape=(2, 1, 1, 4), dtype=torch.bool,
                     why="One row per sequence over the keys, with two size-1 dimensions to broadcast over heads "
                         "and queries.")
print(_m.int())
print(_p.int().squeeze())


# %% role="test" grade_id="test-causal-mask" points=3
# Hidden tests change one token at a time and check with F.scaled_dot_product_attention that no
# earlier position moves and every later position does; they also check the device argument.
### BEGIN HIDDEN TESTS
for _size in (1, 3, 7):
    _m = causal_mask(_size, device=checks.DEVICE)
    checks.expect_tensor(_m, f"causal_mask({_size}, device)", shape=(_size, _size), dtype=torch.bool,
                         device=checks.DEVICE,
                         why="One boolean per (query, key) pair, on the device you were given.")
_m = causal_mask(7, device=checks.DEVICE)
checks.expect_tensor(_m, "causal_mask(7, device)", shape=(7, 7), dtype=torch.bool)
with checks.seeded(3):
    _q = torch.randn(2, 2, 7, 4, device=checks.DEVICE)
    _k = torch.randn(2, 2, 7, 4, device=checks.DEVICE)
    _v = torch.randn(2, 2, 7, 4, device=checks.DEVICE)
    _bump = torch.randn(2, 2, 4, device=checks.DEVICE)
_base = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_m)
_moved_by = []
for _t in range(7):
    _k2, _v2 = _k.clone(), _v.clone()
    _k2[..., _t, :] += _bump
    _v2[..., _t, :] += _bump
    _moved_by.append(((F.scaled_dot_product_attention(_q, _k2, _v2, attn_mask=_m) - _base).abs()
                      .amax(dim=(0, 1, 3)) > 1e-5).tolist())
for _t, _moved in enumerate(_moved_by):
    _leaks = [_i for _i in range(_t) if _moved[_i]]
    checks.expect(not _leaks,
                  f"With causal_mask(7), changing token {_t} moved the outputs at earlier positions {_leaks}: the "
                  "future leaks into the past. Query i may attend only to keys 0..i: the lower triangle of the "
                  "mask, rows being queries and columns keys (Hint 1).")
for _t, _moved in enumerate(_moved_by):
    _blind = [_i for _i in range(_t, 7) if not _moved[_i]]
    checks.expect(not _blind,
                  f"With causal_mask(7), changing token {_t} did not move the outputs at positions {_blind}, "
                  f"which may read token {_t} (it is in their past, or it is themselves). Query i may attend to "
                  "every key 0..i, the diagonal included.")
_meta_why = "Make the mask where it will be used: pass device to the function that creates it."
try:
    _mm = causal_mask(5, device="meta")
except (RuntimeError, TypeError) as _err:
    checks.expect(False, f"causal_mask(5, device='meta') failed: {type(_err).__name__}: {str(_err)[:120]}. "
                  + _meta_why)
checks.expect_tensor(_mm, "causal_mask(5, device='meta')", shape=(5, 5), device="meta", why=_meta_why)
checks.expect_tensor(causal_mask(2), "causal_mask(2) with no device", device="cpu",
                     why="device=None means the default device, the CPU.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-padding-mask" points=2
# Hidden tests change padded and real tokens of a padded batch and check with
# F.scaled_dot_product_attention that only the real ones matter; they also check the device.
### BEGIN HIDDEN TESTS
_lengths = torch.tensor([5, 2, 7, 1], device=checks.DEVICE)
_m = padding_mask(_lengths, 7)
checks.expect_tensor(_m, "padding_mask(lengths of 4 sequences, 7)", shape=(4, 1, 1, 7), dtype=torch.bool,
                     device=checks.DEVICE,
                     why="The padding mask masks keys, the last dimension of the scores (N, H, Lq, Lk): one row "
                         "per sequence, with two size-1 dimensions so that it broadcasts over heads and queries, "
                         "on lengths' device.")
with checks.seeded(4):
    _q = torch.randn(4, 2, 7, 4, device=checks.DEVICE)
    _k = torch.randn(4, 2, 7, 4, device=checks.DEVICE)
    _v = torch.randn(4, 2, 7, 4, device=checks.DEVICE)
    _noise = torch.randn(4, 2, 7, 4, device=checks.DEVICE)
_base = F.scaled_dot_product_attention(_q, _k, _v, attn_mask=_m)
for _n, _len in enumerate(_lengths.tolist()):
    for _j in range(7):
        _k2, _v2 = _k.clone(), _v.clone()
        _k2[_n, :, _j] += _noise[_n, :, _j]
        _v2[_n, :, _j] += _noise[_n, :, _j]
        _moved = bool(((F.scaled_dot_product_attention(_q, _k2, _v2, attn_mask=_m) - _base).abs() > 1e-5).any())
        if _j >= _len:
            checks.expect(not _moved,
                          f"Sequence {_n} has {_len} real tokens, and changing its padded token {_j} moved the "
                          "outputs: padding leaks into the results. The mask must be False at positions >= the "
                          "length, for every query and every head.")
        else:
            checks.expect(_moved,
                          f"Sequence {_n} has {_len} real tokens, and changing its real token {_j} moved nothing: "
                          "the mask hides real tokens. It must be True at positions 0..length - 1.")
_meta_why = "Make the mask on lengths' device: create the positions there."
try:
    _mm = padding_mask(_lengths.to("meta"), 7)
except (RuntimeError, TypeError) as _err:
    checks.expect(False, f"padding_mask failed for lengths on the meta device: {type(_err).__name__}: "
                         f"{str(_err)[:120]}. " + _meta_why)
checks.expect_tensor(_mm, "padding_mask(lengths on the meta device, 7)", device="meta", why=_meta_why)
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-heads"
# ## 4 · Many heads
#
# One attention computes one set of weights per query: one way of deciding what is relevant.
# A token may need several at once (the subject of its verb, the word before it, the opening
# bracket it must close). **Multi-head attention** runs `H` attentions side by side, each on
# its own slice of the features: with `d_model = 12` and `H = 3`, head 0 uses features
# `0..3`, head 1 features `4..7`, head 2 features `8..11`, each with its own scale
# `1/√d_head`, `d_head = d_model / H`. The cost is the same as one big head.
#
# In tensors: `(N, L, d_model)` becomes `(N, H, L, d_head)`, so that the heads become one more
# leading dimension that `attention` broadcasts over. Two reshapes do it, and both have a
# trap that runs without an error:
#
# - **split**: `x.view(N, H, L, d_head)` has the right shape and the wrong content: memory
#   holds token 0's features, then token 1's, so the first `L · d_head` numbers are not "head
#   0 of every token" but "all the features of the first `L / H` tokens". Split the *last*
#   dimension, where the features are: `(N, L, H, d_head)`, then swap `L` and `H`.
# - **merge**: the same in reverse. Swap `H` and `L` back *before* flattening the heads into
#   the features. After a `transpose` the tensor is no longer contiguous, and `view` refuses
#   it (02): `reshape` copies when it must.
#
# ### Exercise 4 · `split_heads` and `merge_heads`
#
# - `split_heads(x, n_heads)`: `(N, L, d_model)` → `(N, n_heads, L, d_model // n_heads)`, head
#   `h` holding features `h·d_head` to `(h + 1)·d_head − 1` of every token;
# - `merge_heads(x)`: `(N, n_heads, L, d_head)` → `(N, L, n_heads · d_head)`, the inverse.
#
# <details><summary>Hint 1</summary>
#
# `x.reshape(N, L, n_heads, d_head).transpose(1, 2)`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# For the merge, `transpose(1, 2)` first, then `reshape` (not `view`).
# </details>

# %% role="answer" grade_id="heads"
def split_heads(x, n_heads):
    """(N, L, d_model) -> (N, n_heads, L, d_head): head h holds features h*d_head to (h+1)*d_head - 1."""
    ### BEGIN SOLUTION
    n, length, d_model = x.shape
    return x.reshape(n, length, n_heads, d_model // n_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x):
    """(N, n_heads, L, d_head) -> (N, L, n_heads * d_head), the inverse of split_heads."""
    ### BEGIN SOLUTION
    n, n_heads, length, d_head = x.shape
    return x.transpose(1, 2).reshape(n, length, n_heads * d_head)
    ### END SOLUTION


# %% role="test" grade_id="test-heads-sanity" points=1
_x = torch.randn(2, 5, 12, device=checks.DEVICE)
_s = split_heads(_x, 3)
checks.expect_tensor(_s, "split_heads(x of shape (2, 5, 12), 3)", shape=(2, 3, 5, 4),
                     why="(N, L, d_model) becomes (N, n_heads, L, d_model // n_heads).")
_m = merge_heads(_s)
checks.expect_tensor(_m, "merge_heads of that", shape=(2, 5, 12), why="merge_heads undoes split_heads.")
print("split", tuple(_s.shape), "merged", tuple(_m.shape))

# %% role="test" grade_id="test-heads" points=2
# Hidden tests check which features each head holds, the round trip, and merge_heads on its own,
# for several numbers of heads.
### BEGIN HIDDEN TESTS
with checks.seeded(6):
    _x = torch.randn(3, 5, 12, device=checks.DEVICE)
for _h in (1, 2, 3, 6):
    _dh = 12 // _h
    _s = split_heads(_x, _h)
    checks.expect_tensor(_s, f"split_heads(x (3, 5, 12), {_h})", shape=(3, _h, 5, _dh))
    for _i in range(_h):
        checks.expect_close(_s[:, _i], _x[..., _i * _dh:(_i + 1) * _dh],
                            f"Head {_i} of split_heads(x, {_h})", rtol=0, atol=0,
                            why="Head h must hold features h*d_head to (h+1)*d_head - 1 of every token. The "
                                "features are the last dimension: split it into (n_heads, d_head), then swap the "
                                "length and head dimensions. A view straight to (N, H, L, d_head) cuts the tokens "
                                "instead (Hint 1).")
    with checks.seeded(_h):
        _y = torch.randn(3, _h, 5, _dh, device=checks.DEVICE)
    try:
        _back = merge_heads(_s)
        _merged = merge_heads(_y)
    except RuntimeError as _err:
        checks.expect(False, f"merge_heads failed: {str(_err)[:160]}. After a transpose the tensor is not "
                             "contiguous, and view refuses it: use reshape (Hint 2).")
    checks.expect_tensor(_merged, f"merge_heads of a (3, {_h}, 5, {_dh}) tensor", shape=(3, 5, 12))
    for _i in range(_h):
        checks.expect_close(_merged[..., _i * _dh:(_i + 1) * _dh], _y[:, _i],
                            f"Features {_i * _dh} to {(_i + 1) * _dh - 1} of merge_heads' result", rtol=0, atol=0,
                            why="Head h's vector for token t goes to features h*d_head onwards of token t: swap "
                                "the head and length dimensions back before flattening the heads (Hint 2).")
    checks.expect_close(_back, _x, f"merge_heads(split_heads(x, {_h}))", rtol=0, atol=0,
                        why="merge_heads must undo split_heads exactly.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-mha"
# ## 5 · Multi-head self-attention
#
# In **self-attention** the queries, keys and values all come from the same sequence `x`
# `(N, L, d_model)`, each through its own learned linear map: the model learns what to ask,
# what to advertise and what to hand over. The three maps are usually one `nn.Linear(d_model,
# 3 · d_model)` whose output is cut into `q`, `k` and `v`, in that order. Then: split each
# into heads, attend (the heads are a leading dimension, and a mask broadcasts over them),
# merge the heads, and mix them with a last `nn.Linear(d_model, d_model)`, the **output
# projection**: without it, head 0's result could only ever land in features `0..d_head − 1`.
#
# This is exactly what `nn.MultiheadAttention` computes, with its weights laid out the same
# way (`in_proj_weight` holds the rows of `q`'s, `k`'s and `v`'s maps one after another; the
# output projection is `out_proj`). Two differences in its interface: it takes `(query, key,
# value)` separately and returns `(output, weights)`, and its boolean `attn_mask` is `True`
# where attending is **not** allowed.
#
# ### Exercise 5 · `MultiHeadAttention`
#
# Write `MultiHeadAttention(d_model, n_heads)`, an `nn.Module` with exactly two layers,
# `self.qkv = nn.Linear(d_model, 3 * d_model)` and `self.out = nn.Linear(d_model, d_model)`,
# whose `forward(x, mask=None)` maps `(N, L, d_model)` to `(N, L, d_model)` with your
# `attention`, `split_heads` and `merge_heads`. `mask` is a boolean mask in the convention of
# section 1 (`True`: may attend) that broadcasts to `(N, n_heads, L, L)`. The hidden tests copy
# your layers' weights into an `nn.MultiheadAttention` and compare the two.
#
# <details><summary>Hint 1</summary>
#
# `q, k, v = self.qkv(x).chunk(3, dim=-1)`, then split each into heads.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `attention` returns two things; keep the output, merge its heads, then `self.out`.
# </details>

# %% role="answer" grade_id="mha"
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: qkv projection, n_heads attentions, output projection."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        ### BEGIN SOLUTION
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        ### END SOLUTION

    def forward(self, x, mask=None):
        ### BEGIN SOLUTION
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (split_heads(t, self.n_heads) for t in (q, k, v))
        heads, _ = attention(q, k, v, mask)
        return self.out(merge_heads(heads))
        ### END SOLUTION


# %% role="test" grade_id="test-mha-sanity" points=1
with checks.seeded(0):
    _mha = MultiHeadAttention(16, 4).to(checks.DEVICE)
    _out = _mha(torch.randn(2, 5, 16, device=checks.DEVICE))
checks.expect(type(getattr(_mha, "qkv", None)) is nn.Linear and type(getattr(_mha, "out", None)) is nn.Linear,
              "MultiHeadAttention should have two nn.Linear layers named qkv and out (the tests compare them with "
              "nn.MultiheadAttention's).")
checks.expect_tensor(_out, "MultiHeadAttention(16, 4) on a (2, 5, 16) input", shape=(2, 5, 16),
                     why="Self-attention keeps the shape of its input.")
print("MultiHeadAttention output", tuple(_out.shape))


# %% role="test" grade_id="test-mha" points=3
# Hidden tests copy the weights into nn.MultiheadAttention and compare outputs for one and several
# heads, with and without a causal mask; then run the module on the meta device.
### BEGIN HIDDEN TESTS
def _torch_mha(mine, d_model, n_heads):
    _ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True).to(checks.DEVICE)
    checks.expect(tuple(mine.qkv.weight.shape) == (3 * d_model, d_model)
                  and tuple(mine.out.weight.shape) == (d_model, d_model),
                  f"MultiHeadAttention({d_model}, {n_heads}) should have qkv = nn.Linear(d_model, 3 * d_model) and "
                  "out = nn.Linear(d_model, d_model).")
    with torch.no_grad():
        _ref.in_proj_weight.copy_(mine.qkv.weight)
        _ref.in_proj_bias.copy_(mine.qkv.bias)
        _ref.out_proj.weight.copy_(mine.out.weight)
        _ref.out_proj.bias.copy_(mine.out.bias)
    return _ref


_one_head_ok = False
for _d, _h in ((8, 1), (16, 4), (12, 3)):
    with checks.seeded(_d):
        _mine = MultiHeadAttention(_d, _h).to(checks.DEVICE)
        _x = torch.randn(2, 6, _d, device=checks.DEVICE)
    _ref = _torch_mha(_mine, _d, _h)
    _got = _mine(_x)
    _want = _ref(_x, _x, _x, need_weights=False)[0]
    checks.expect_tensor(_got, f"MultiHeadAttention({_d}, {_h}) on a (2, 6, {_d}) input", shape=(2, 6, _d))
    if _h == 1:
        checks.expect_close(_got, _want, "MultiHeadAttention with one head, against nn.MultiheadAttention",
                            rtol=1e-4, atol=1e-5,
                            why="Even with a single head the result differs from nn.MultiheadAttention with the "
                                "same weights: cut the output of qkv into q, k and v, in that order, attend, and "
                                "apply self.out to the result (Hints 1 and 2).")
    else:
        checks.expect_close(_got, _want, f"MultiHeadAttention({_d}, {_h}) against nn.MultiheadAttention",
                            rtol=1e-4, atol=1e-5,
                            why=f"With one head your module matches nn.MultiheadAttention, but with {_h} heads it "
                                "does not: each head must attend with its own slice of the features (split_heads), "
                                "with scale 1/√d_head, and the heads merge back before self.out.")
    _causal = torch.ones(6, 6, dtype=torch.bool, device=checks.DEVICE).tril()
    checks.expect_close(_mine(_x, _causal), _ref(_x, _x, _x, attn_mask=~_causal, need_weights=False)[0],
                        f"MultiHeadAttention({_d}, {_h}) with a causal mask, against nn.MultiheadAttention",
                        rtol=1e-4, atol=1e-5,
                        why="Without a mask the module matches, with one it does not: pass the mask on to "
                            "attention, which broadcasts it over the batch and the heads.")
_meta = MultiHeadAttention(16, 4).to("meta")
try:
    _out = _meta(torch.empty(2, 5, 16, device="meta"))
except (RuntimeError, TypeError) as _err:
    checks.expect(False, f"MultiHeadAttention fails when the module and its input live on the meta device: "
                         f"{type(_err).__name__}: {str(_err)[:160]}. forward should create nothing on a fixed "
                         "device: everything follows the input and the layers.")
checks.expect_tensor(_out, "MultiHeadAttention's output on the meta device", shape=(2, 5, 16), device="meta")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-positions"
# ## 6 · Where is each token? Positional encodings
#
# Section 2 showed that shuffling the (key, value) pairs changes nothing. Shuffle the whole
# input of a self-attention layer and every output moves with its token: the layer computes the
# same thing for "dog bites man" and "man bites dog", in a different order. That property is
# called **permutation equivariance**, and the per-position network, the residuals and the
# layer norm of a transformer block all share it. A transformer therefore cannot tell word order
# unless the input itself says where each token is.
#
# The fix is to **add a position vector** to each token's embedding: position 3's vector is
# the same in every sequence, so "token `x` at position 3" becomes a different input from
# "token `x` at position 5". The original transformer uses fixed **sinusoidal** encodings: for
# position `p` and feature pairs `i = 0, 1, …, d_model/2 − 1`,
#
# `PE[p, 2i] = sin(p · ω_i)`, `PE[p, 2i + 1] = cos(p · ω_i)`, with `ω_i = 1 / 10000^(2i / d_model)`.
#
# Each pair of features is a clock hand turning at its own speed, from one radian per position
# (`i = 0`) to a very slow one. Fast hands tell neighbours apart, slow ones tell the start of a
# long sequence from its end, and because a shift by `k` positions turns every hand by a fixed
# angle, `PE[p + k]` is a linear function of `PE[p]`: attention can learn "the token three to
# the left" with one matrix. Positions count from 0, they need no training, and they exist for
# any length you ask for. Learned position embeddings (an `nn.Embedding(max_len, d_model)`) are
# the common alternative.
#
# ### Exercise 6 · `sinusoidal_positions`
#
# Write `sinusoidal_positions(length, d_model, device=None)`: the `(length, d_model)` float32
# tensor `PE` above, for an even `d_model`, made on `device`.
#
# <details><summary>Hint 1</summary>
#
# A column of positions `(length, 1)` times a row of frequencies `(d_model / 2,)` gives every
# angle at once (broadcasting, 02). `torch.arange(0, d_model, 2)` is the `2i`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Even columns are `pe[:, 0::2]`, odd columns `pe[:, 1::2]`: assign the sines and cosines to
# them. Every tensor you create takes `device=device`.
# </details>

# %% role="answer" grade_id="positions"
def sinusoidal_positions(length, d_model, device=None):
    """(length, d_model) float32: sin(p * w_i) in column 2i, cos(p * w_i) in column 2i + 1."""
    ### BEGIN SOLUTION
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
    angles = position * 10000.0 ** (-two_i / d_model)
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe
    ### END SOLUTION


# %% role="test" grade_id="test-positions-sanity" points=1
_pe = sinusoidal_positions(6, 8)
checks.expect_tensor(_pe, "sinusoidal_positions(6, 8)", shape=(6, 8), dtype=torch.float32,
                     why="One float32 vector of d_model features per position.")
print(_pe[:3].round(decimals=3))

# %% role="test" grade_id="test-positions" points=2
# Hidden tests compare with the formula for several lengths and sizes, and check the device argument.
### BEGIN HIDDEN TESTS
for _len, _d in ((10, 16), (7, 6), (1, 4), (16, 32)):
    _pe = sinusoidal_positions(_len, _d, device=checks.DEVICE)
    _what = f"sinusoidal_positions({_len}, {_d}, device)"
    checks.expect_tensor(_pe, _what, shape=(_len, _d), dtype=torch.float32, device=checks.DEVICE,
                         why="A float32 (length, d_model) tensor on the device you were given.")
    _pos = torch.arange(_len, dtype=torch.float64)[:, None]
    _angles = _pos / 10000.0 ** (torch.arange(0, _d, 2, dtype=torch.float64) / _d)
    _ref = torch.zeros(_len, _d, dtype=torch.float64)
    _ref[:, 0::2] = torch.sin(_angles)
    _ref[:, 1::2] = torch.cos(_angles)
    _ref = _ref.float().to(checks.DEVICE)
    checks.expect_close(_pe[0], _ref[0], f"Row 0 (position 0) of {_what}", rtol=1e-4, atol=1e-5,
                        why="Positions count from 0, and at position 0 every angle is 0: sin 0 = 0 in the even "
                            "columns, cos 0 = 1 in the odd columns. Sines and cosines alternate, column by column "
                            "(Hint 2).")
    checks.expect_close(_pe[:, 0::2], _ref[:, 0::2], f"The even columns (the sines) of {_what}", rtol=1e-4,
                        atol=1e-5,
                        why="Column 2i holds sin(p * w_i), with w_i = 1 / 10000^(2i / d_model): the exponent uses "
                            "the even column index 2i divided by d_model (Hint 1).")
    checks.expect_close(_pe, _ref, f"{_what}", rtol=1e-4, atol=1e-5,
                        why="Column 2i + 1 holds cos(p * w_i), with the same frequency as column 2i.")
_meta_why = "Create every tensor with device=device, so that the encodings are made where the model lives."
try:
    _pe = sinusoidal_positions(5, 8, device="meta")
except (RuntimeError, TypeError) as _err:
    checks.expect(False, f"sinusoidal_positions(5, 8, device='meta') failed: {type(_err).__name__}: "
                         f"{str(_err)[:120]}. " + _meta_why)
checks.expect_tensor(_pe, "sinusoidal_positions(5, 8, device='meta')", shape=(5, 8), device="meta", why=_meta_why)
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-block"
# ## 7 · The transformer block: pre-norm and residuals
#
# A transformer block has two sublayers: multi-head self-attention, where tokens exchange
# information, and a small **feed-forward network** applied to every position on its own
# (`Linear(d_model, d_ff)`, a non-linearity, `Linear(d_ff, d_model)`, with `d_ff` usually
# 4 × `d_model`), where each token digests what it gathered. Two habits make such blocks
# stackable by the dozen:
#
# - **Residual connections.** Each sublayer *adds* its result to its input: `x + f(x)`. The
#   input flows through the block untouched on this *residual stream*, each sublayer only
#   writes a correction, and the gradient has a direct path back through every block. A
#   sublayer that learned nothing leaves `x` as it is.
# - **Layer normalisation, before the sublayer (pre-norm).** `nn.LayerNorm` rescales each
#   token's features to mean 0 and variance 1 (then applies a learned scale and shift), so a
#   sublayer sees inputs of a steady size however large the stream grows. The original
#   transformer normalised *after* the addition (`norm(x + f(x))`, post-norm); today's models
#   normalise the sublayer's input and leave the stream alone, which trains more stably:
#
# ```
# x = x + attention(norm1(x), mask)
# x = x + feed_forward(norm2(x))
# ```
#
# Two consequences you can test. A sublayer whose last layer outputs zeros adds nothing, so
# with both sublayers silenced a pre-norm block returns its input exactly: `x + 0 + 0`. And
# `LayerNorm(a · x) = LayerNorm(x)` for any `a > 0`, so what one sublayer adds to the stream does
# not change when the stream is scaled: `f(norm(a · x)) = f(norm(x))`. Forget a residual, put
# the norm after the addition, or skip a norm, and one of the two stops being true.
#
# ### Exercise 7 · `TransformerBlock`
#
# Write `TransformerBlock(d_model, n_heads, d_ff)`, an `nn.Module` whose `forward(x, mask=None)`
# maps `(N, L, d_model)` to the same shape with the two pre-norm residual sublayers above: your
# `MultiHeadAttention` (given `mask`) and a feed-forward network with `d_ff` hidden units (ReLU
# or GELU), each after its own `nn.LayerNorm(d_model)`.
#
# <details><summary>Hint 1</summary>
#
# Four submodules in `__init__`: two `nn.LayerNorm(d_model)`, one `MultiHeadAttention`, one
# `nn.Sequential` for the feed-forward network.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The two lines of the code block above are the whole `forward`. The norm goes *inside* each
# sublayer's call, and the addition outside.
# </details>

# %% role="answer" grade_id="block"
class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x), mask), then + ff(norm2(x))."""

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        ### BEGIN SOLUTION
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        ### END SOLUTION

    def forward(self, x, mask=None):
        ### BEGIN SOLUTION
        x = x + self.attn(self.norm1(x), mask)
        return x + self.ff(self.norm2(x))
        ### END SOLUTION


# %% role="test" grade_id="test-block-sanity" points=1
with checks.seeded(0):
    _block = TransformerBlock(16, 4, 32).to(checks.DEVICE)
    _out = _block(torch.randn(2, 5, 16, device=checks.DEVICE))
checks.expect_tensor(_out, "TransformerBlock(16, 4, 32) on a (2, 5, 16) input", shape=(2, 5, 16),
                     why="A block keeps the shape of the residual stream.")
print("TransformerBlock output", tuple(_out.shape))

# %% role="test" grade_id="test-block" points=3
# Hidden tests silence one sublayer at a time (zero weights in its last layer) to check the
# residual stream and the norms, change later tokens with and without a causal mask, and look
# for a feed-forward sublayer.
### BEGIN HIDDEN TESTS
import copy as _copy

with checks.seeded(8):
    _block = TransformerBlock(16, 4, 64).to(checks.DEVICE)
    _x = torch.randn(2, 6, 16, device=checks.DEVICE)
    _late = _x.clone()
    _late[:, 4:] = torch.randn(2, 2, 16, device=checks.DEVICE)
_ff_last = [_m for _m in _block.modules() if type(_m) is nn.Linear and tuple(_m.weight.shape) == (16, 64)]
checks.expect(any(type(_m) is nn.Linear and tuple(_m.weight.shape) == (64, 16) for _m in _block.modules())
              and len(_ff_last) == 1,
              "TransformerBlock(16, 4, 64) has no feed-forward network of d_ff = 64 hidden units: expected an "
              "nn.Linear(16, 64) and an nn.Linear(64, 16), with a non-linearity between them.")
_attns = [_m for _m in _block.modules() if type(_m) is MultiHeadAttention]
checks.expect(len(_attns) == 1, f"TransformerBlock should hold one MultiHeadAttention; it holds {len(_attns)}.")


def _silenced(*layers_of):
    """A copy of the block whose chosen sublayers end in a zero layer, so that they add exactly 0."""
    _b = _copy.deepcopy(_block)
    _layers = {"attention": [_m.out for _m in _b.modules() if type(_m) is MultiHeadAttention],
               "feed-forward": [_m for _m in _b.modules() if type(_m) is nn.Linear
                                and tuple(_m.weight.shape) == (16, 64)]}
    with torch.no_grad():
        for _name in layers_of:
            for _lin in _layers[_name]:
                _lin.weight.zero_()
                _lin.bias.zero_()
    return _b


with torch.no_grad():
    _both = _silenced("attention", "feed-forward")(_x)
checks.expect_close(_both, _x, "The block's output when both sublayers add exactly 0", rtol=1e-5, atol=1e-6,
                    why="With the attention's output projection and the feed-forward network's last layer set to "
                        "zero, a block with residual connections hands its input through unchanged: x + 0 + 0. "
                        "Yours changed it: each sublayer must add its result to its input (its residual), and "
                        "the LayerNorm must be applied to the sublayer's input, not to the sum (post-norm).")
for _on, _off, _norm in (("attention", "feed-forward", "norm1"), ("feed-forward", "attention", "norm2")):
    _b = _silenced(_off)
    with torch.no_grad():
        _add1 = _b(_x) - _x
        _add3 = _b(3 * _x) - 3 * _x
    checks.expect(bool((_add1.abs() > 1e-4).any()),
                  f"With the {_off} sublayer silenced, the block returned its input unchanged: the {_on} sublayer "
                  "adds nothing to the output. Both sublayers must run, each adding its result to the stream.")
    checks.expect_close(_add3, _add1, f"What the {_on} sublayer adds to x, when x is tripled", rtol=1e-3, atol=1e-4,
                        why=f"In a pre-norm block the {_on} sublayer reads a LayerNorm of the stream, which removes "
                            "the scale, so what it adds cannot change when x is scaled. Here it does: both "
                            f"sublayers are normalised, each by its own LayerNorm ({_norm} here) applied to the "
                            "sublayer's input (Hint 2).")
with torch.no_grad():
    _free = _block(_late)[:, :4] - _block(_x)[:, :4]
    _causal = torch.ones(6, 6, dtype=torch.bool, device=checks.DEVICE).tril()
    _masked = _block(_late, _causal)[:, :4] - _block(_x, _causal)[:, :4]
checks.expect(bool((_free.abs() > 1e-5).any()),
              "Without a mask, changing tokens 4 and 5 did not move the block's outputs at positions 0 to 3: the "
              "tokens do not exchange information. The attention sublayer must run over the whole sequence.")
checks.expect(bool((_masked.abs() <= 1e-5).all()),
              "With a causal mask, changing tokens 4 and 5 moved the block's outputs at positions 0 to 3: the "
              "mask never reached the attention. Pass mask on to MultiHeadAttention.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-model"
# ## 8 · A tiny transformer
#
# A whole (encoder-style) transformer is short once the block exists:
#
# 1. `nn.Embedding(vocab_size, d_model)` turns token ids `(N, L)` into vectors `(N, L, d_model)`;
# 2. add the positional encodings of the first `L` positions (they broadcast over the batch);
# 3. `n_layers` transformer blocks, one after the other, each given the mask;
# 4. a final `nn.LayerNorm` (pre-norm blocks leave the stream unnormalised) and an
#    `nn.Linear(d_model, vocab_size)` to logits, one set per position.
#
# The encodings are not learned, but they belong to the model: they must follow it to the GPU,
# and appear in what `.to()` moves. That is what **buffers** are for (04):
# `self.register_buffer("positions", ...)`, computed once for `max_len` positions in `__init__`
# and sliced in `forward`.
#
# ### Exercise 8 · `TinyTransformer`
#
# Write `TinyTransformer(vocab_size, d_model=32, n_heads=4, d_ff=64, n_layers=1, max_len=16)`,
# an `nn.Module` whose `forward(x, mask=None)` maps token ids `(N, L)`, `L ≤ max_len`, to logits
# `(N, L, vocab_size)` as above, with your `TransformerBlock`s and your sinusoidal positions in a
# buffer. No softmax at the end.
#
# <details><summary>Hint 1</summary>
#
# `nn.ModuleList` holds the blocks (a plain Python list hides them from `.parameters()`, 04);
# loop over it in `forward`, passing `mask` to each block.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `self.positions[:x.shape[1]]` has shape `(L, d_model)` and adds to `(N, L, d_model)`.
# </details>

# %% role="answer" grade_id="model"
class TinyTransformer(nn.Module):
    """Embedding + sinusoidal positions -> n_layers TransformerBlocks -> LayerNorm -> Linear."""

    def __init__(self, vocab_size, d_model=32, n_heads=4, d_ff=64, n_layers=1, max_len=16):
        super().__init__()
        ### BEGIN SOLUTION
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model))
        self.blocks = nn.ModuleList([TransformerBlock(d_model, n_heads, d_ff) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        ### END SOLUTION

    def forward(self, x, mask=None):
        ### BEGIN SOLUTION
        h = self.embed(x) + self.positions[:x.shape[1]]
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.norm(h))
        ### END SOLUTION


# %% role="test" grade_id="test-model-sanity" points=1
with checks.seeded(0):
    _model = TinyTransformer(10).to(checks.DEVICE)
    _logits = _model(torch.randint(0, 10, (2, 8), device=checks.DEVICE))
checks.expect_tensor(_logits, "TinyTransformer(10) on token ids (2, 8)", shape=(2, 8, 10), dtype=torch.float32,
                     why="One set of vocab_size logits per position.")
print("TinyTransformer logits", tuple(_logits.shape))

# %% role="test" grade_id="test-model" points=2
# Hidden tests permute the input tokens, change later tokens under a causal mask, count the
# blocks, and run the model at its maximum length and on the meta device.
### BEGIN HIDDEN TESTS
with checks.seeded(9):
    _model = TinyTransformer(12, d_model=16, n_heads=2, d_ff=32, n_layers=3, max_len=12).to(checks.DEVICE)
    _x = torch.randint(0, 12, (3, 9), device=checks.DEVICE)
    _late = _x.clone()
    _late[:, 6:] = (_x[:, 6:] + 1) % 12
_perm = torch.tensor([4, 0, 8, 2, 6, 1, 7, 3, 5], device=checks.DEVICE)
with torch.no_grad():
    _logits = _model(_x)
    _shuffled = _model(_x[:, _perm])
checks.expect_tensor(_logits, "TinyTransformer(12, n_layers=3, max_len=12) on ids (3, 9)", shape=(3, 9, 12))
checks.expect(not torch.allclose(_shuffled, _logits[:, _perm], atol=1e-4),
              "Shuffling the input tokens only shuffled the outputs in the same way: the model cannot tell where "
              "a token is. Add the positional encodings to the token embeddings (section 6).")
checks.expect(not torch.allclose(_logits.sum(-1), torch.ones(3, 9, device=checks.DEVICE), atol=1e-4),
              "Each position's outputs sum to 1: the model ends with a softmax. Return logits: cross_entropy "
              "applies log_softmax itself.")
_blocks = [_m for _m in _model.modules() if type(_m) is TransformerBlock]
checks.expect(len(_blocks) == 3,
              f"TinyTransformer(..., n_layers=3) holds {len(_blocks)} TransformerBlocks that .modules() can see: "
              "build n_layers blocks and keep them in an nn.ModuleList (Hint 1).")
_causal = torch.ones(9, 9, dtype=torch.bool, device=checks.DEVICE).tril()
with torch.no_grad():
    _moved = _model(_late, _causal)[:, :6] - _model(_x, _causal)[:, :6]
checks.expect(bool((_moved.abs() <= 1e-5).all()),
              "With a causal mask, changing tokens 6 to 8 moved the logits at positions 0 to 5: the mask does not "
              "reach every block. Pass mask to each block in forward.")
try:
    with torch.no_grad():
        _full = _model(torch.randint(0, 12, (2, 12), device=checks.DEVICE))
except RuntimeError as _err:
    checks.expect(False, f"TinyTransformer(max_len=12) failed on sequences of 12 tokens: {str(_err)[:160]}. Compute "
                         "the encodings for max_len positions in __init__ and take the first L in forward (Hint 2).")
_meta = TinyTransformer(12, d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=12).to("meta")
try:
    _out = _meta(torch.zeros(2, 5, dtype=torch.long, device="meta"))
except (RuntimeError, TypeError) as _err:
    checks.expect(False, "TinyTransformer fails after .to('meta') on an input on the meta device: "
                         f"{type(_err).__name__}: {str(_err)[:160]}. Something stayed behind on the CPU: register "
                         "the positional encodings as a buffer, so that .to() moves them with the parameters.")
checks.expect_tensor(_out, "TinyTransformer's logits on the meta device", shape=(2, 5, 12), device="meta")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-train"
# ## 9 · Training it to reverse sequences
#
# A synthetic task tells quickly whether a model works: the right answer is known, data is free,
# and what the task needs is clear. Here: read 8 digits, write them backwards.
# `3 1 4 1 5 9 2 6` → `6 2 9 5 1 4 1 3`. Output position `i` must copy input position `7 − i`,
# so the model must know *where* each token is (without positions it cannot even start: section 6)
# and attend from each position to its mirror image, which one attention head can learn.
#
# The next cell defines `reverse_batch(n, generator)`, a batch of `n` random digit sequences
# `(n, 8)` and their reversals, on the notebook's device, drawn from a CPU `torch.Generator`,
# and `reverse_accuracy(model, x, y)`, the fraction of output digits the model gets right.
#
# ### Exercise 9 · `train_reverse`
#
# Write `train_reverse(model)`: train the `TinyTransformer` it is given on fresh batches from
# `reverse_batch` (no mask: each output may read the whole input), with cross-entropy over every
# position, in **at most 200 optimiser steps** (forward passes of the model) of **at most 64
# sequences** each, and return the list of the steps' losses as floats. Choose the optimiser,
# the learning rate, the batch size and the number of steps. The hidden test trains a fresh
# `TinyTransformer(10)` (another seed) with `train_reverse` and asks for an accuracy of **at
# least 95%** of the digits of sequences it has never seen. Our solution gets over 99%.
#
# <details><summary>Hint 1</summary>
#
# `torch.optim.AdamW` with a learning rate around 1e-2 and batches of 32 sequences learns the
# task in about 100 steps. Make your own generator (`torch.Generator().manual_seed(...)`)
# for the batches.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `F.cross_entropy` wants logits `(M, C)` and targets `(M,)`: flatten the batch and position
# dimensions of both (10, Hint 1 of exercise 6). The loop is the one of 05.
# </details>

# %% role="locked" grade_id="reverse-data"
VOCAB, SEQ_LEN = 10, 8


def reverse_batch(n, generator):
    """n random digit sequences (n, SEQ_LEN) and their reversals, on the notebook's device."""
    x = torch.randint(0, VOCAB, (n, SEQ_LEN), generator=generator).to(checks.DEVICE)
    return x, x.flip(1)


def reverse_accuracy(model, x, y):
    """The fraction of output digits equal to the target's (eval mode, no graph, mode restored)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=-1) == y).float().mean().item()
    model.train(was_training)
    return correct


_x, _y = reverse_batch(2, torch.Generator().manual_seed(0))
print("inputs: ", _x.tolist())
print("targets:", _y.tolist())


# %% role="answer" grade_id="train-reverse"
def train_reverse(model):
    """Train model to reverse sequences: at most 200 steps of at most 64. Returns the step losses."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(100):
        x, y = reverse_batch(32, generator)
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
    ### END SOLUTION


# %% role="locked" grade_id="train-run"
# Your run: train a TinyTransformer and measure it on sequences it has never seen.
try:
    torch.manual_seed(0)
    reverser = TinyTransformer(VOCAB).to(checks.DEVICE)
    reverse_history = train_reverse(reverser)
    _x, _y = reverse_batch(1000, torch.Generator().manual_seed(123))
    print(f"{len(reverse_history)} steps, loss {reverse_history[0]:.2f} -> {reverse_history[-1]:.3f}")
    print(f"accuracy on new sequences: {reverse_accuracy(reverser, _x, _y):.1%}")
    print("input:   ", _x[0].tolist())
    print("reversed:", reverser(_x[:1]).argmax(-1)[0].tolist())
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-reverse-sanity" points=1
checks.expect(type(reverse_history) is list and len(reverse_history) >= 1
              and all(type(_v) is float for _v in reverse_history),
              "train_reverse should return the list of the steps' losses as Python floats (loss.item()); it "
              f"returned {checks.describe(reverse_history)}.")
print(f"{len(reverse_history)} steps, last loss {reverse_history[-1]:.3f}")

# %% role="test" grade_id="test-reverse" points=3
# Hidden tests train a fresh TinyTransformer (another seed) with train_reverse, watch the loop and
# count its steps (at most 200, of at most 64 sequences), then measure it on new sequences: at least
# 95% of the digits right.
### BEGIN HIDDEN TESTS
with checks.seeded(1):
    _model = TinyTransformer(VOCAB).to(checks.DEVICE)
_x, _y = reverse_batch(1000, torch.Generator().manual_seed(2024))
_before = reverse_accuracy(_model, _x, _y)
checks.expect(_before < 0.5,
              f"An untrained TinyTransformer already reverses {_before:.0%} of the digits: the model does not "
              "compute its answer from its layers. Build it as section 8 describes, so that it has to learn.")
_calls = []


def _count(_mod, _args):
    # Stops train_reverse as soon as it goes over the budget, instead of waiting for it to finish.
    _calls.append(int(_args[0].shape[0]))
    checks.expect(len(_calls) <= 200,
                  "train_reverse ran more than 200 forward passes; the budget is 200 steps. Use fewer steps with a "
                  "larger learning rate (see Hint 1).")
    checks.expect(_calls[-1] <= 64,
                  f"train_reverse ran a batch of {_calls[-1]} sequences; the budget is at most 64 per step. "
                  "Smaller batches, more often, with a larger learning rate (see Hint 1).")


_hook = _model.register_forward_pre_hook(_count)
try:
    with checks.seeded(1), checks.TrainingSpy(_model) as _spy:
        _history = train_reverse(_model)
finally:
    _hook.remove()
checks.expect(type(_history) is list and len(_history) >= 1 and all(type(_v) is float for _v in _history),
              f"train_reverse should return the list of the losses as floats; it returned {checks.describe(_history)}.")
_spy.check_loop(steps=len(_history), name="`train_reverse`")
_acc = reverse_accuracy(_model, _x, _y)
checks.expect(_acc >= 0.95,
              f"After train_reverse, the model reverses {_acc:.1%} of the digits of new sequences; the target is 95%. "
              "Watch the losses: if they stall near 2.3 (chance for 10 digits), the model is not learning at all "
              "(learning rate, loop, the model's positions); if they fall slowly, raise the learning rate or the "
              "number of steps within the budget.")
print(f"accuracy {_acc:.1%} after {len(_calls)} steps")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - Attention is `softmax(q kᵀ / √d) v`: scores from dot products, a softmax over the keys, a
#   weighted average of the values. The `√d` keeps the softmax from saturating as `d` grows.
# - A mask sets the scores of forbidden keys to `-inf` before the softmax. Causal: the lower
#   triangle, diagonal included. Padding: a mask over keys, `(N, 1, 1, L)`. You check a mask by
#   changing what must not matter and seeing that nothing moves.
# - Heads split the *features*: view the last dimension as `(H, d_head)`, then swap `L` and
#   `H`; merge by swapping back before flattening, with `reshape`.
# - Attention alone treats its input as a set; positional encodings, added to the embeddings,
#   tell it where each token is.
# - A pre-norm transformer block: `x + attn(norm(x))`, then `x + ff(norm(x))`. The residual
#   stream passes through untouched, and each sublayer writes a correction to it.
#
# Next, in **[12 · Transfer learning](../12_transfer/12_transfer.ipynb)**, we stop training from scratch: a network trained on one
# task becomes the starting point for another.
