# %% [markdown] role="prose" grade_id="title"
# # 10 · Sequences: recurrent networks
#
# **Time:** about 2 h of work (3,400 words to read, 8 exercises). Run top to bottom, the finished
# notebook takes about 4 s.
#
# An MLP sees a fixed number of inputs at once. Text, audio, sensor readings and event logs
# arrive as **sequences**: an ordered stream whose length changes from one example to the
# next. A recurrent network reads such a stream one step at a time and carries a **hidden
# state** from step to step, a fixed-size summary of everything it has read so far. The same
# weights are applied at every step, so one network handles sequences of any length.
#
# The ideas are small; the bookkeeping is where the bugs live. Which dimension is time and
# which is the batch? Which of the many returned tensors is the one you want? What happens to
# the padding you added to make a batch rectangular? How far back does a gradient travel?
# Almost every wrong answer to these questions runs without an error.
#
# **By the end of this notebook you will be able to:**
# - predict the shapes `nn.RNN`, `nn.LSTM` and `nn.GRU` return, with and without
#   `batch_first`, for several layers and both directions;
# - pick the final hidden state of the top layer out of `h_n`, both directions included;
# - find the last *real* step of each padded sequence, and run a batch of sequences of
#   different lengths through a recurrent network with `pack_padded_sequence`, so that the
#   padding changes nothing;
# - write a character-level language model and train it with truncated backpropagation
#   through time, carrying the hidden state across chunks and detaching it between them;
# - sample text from the model with a temperature.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import codecs
import contextlib
import io
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)

# %% [markdown] role="prose" grade_id="md-shapes"
# ## 1 · What a recurrent layer takes and returns
#
# A recurrent layer computes, for every time step `t`, a new hidden state from the input at
# `t` and the hidden state at `t − 1`: for `nn.RNN`, `h_t = tanh(W x_t + U h_{t−1} + b)`.
# `nn.LSTM` and `nn.GRU` replace that one line with a few *gates*, learned switches that decide
# how much of the old state to keep, so that information (and gradient) survives over more
# steps. The LSTM also keeps a second state, the **cell state** `c_t`, so it passes around a
# pair `(h, c)` where the others pass one tensor.
#
# **The input.** By default the input is **time-major**: `(T, N, input_size)`, time first,
# batch second. With `batch_first=True` it is `(N, T, input_size)`. Nothing checks which one you
# meant: a batch-first tensor given to a time-major layer is read as `N` time steps of a batch
# of `T` sequences, mixing your examples into one another's histories. No error, just a model
# that cannot learn.
#
# **The outputs.** A call returns two things:
# - `output`: the top layer's hidden state at *every* step, `(T, N, D · hidden_size)`, or
#   `(N, T, D · hidden_size)` with `batch_first=True`, where `D` is 2 for a bidirectional layer
#   (the forward and backward states side by side, forward first) and 1 otherwise;
# - `h_n`: the *final* hidden state of *every* layer and direction,
#   `(num_layers · D, N, hidden_size)`. The LSTM returns `(h_n, c_n)`, both of that shape.
#
# The trap: `batch_first` applies to the input and `output` only. `h_n` and `c_n` always have
# the batch in the middle. An initial state you pass in has that same shape.
#
# ### Exercise 1 · Predict, then verify
#
# ```python
# lstm = nn.LSTM(input_size=5, hidden_size=7, num_layers=2)
# output, (h_n, c_n) = lstm(torch.randn(6, 3, 5))
#
# gru = nn.GRU(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, batch_first=True)
# output, h_n = gru(torch.randn(3, 6, 5))
# ```
#
# **Without running anything**, fill in `shape_predictions` with the shape of each tensor, as
# a tuple of ints.
#
# <details><summary>Hint 1</summary>
#
# The LSTM has no `batch_first`, so its input `(6, 3, 5)` is 6 steps of a batch of 3. The GRU's
# input `(3, 6, 5)` is a batch of 3 sequences of 6 steps.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `h_n` has one slice per layer *and* per direction, and its batch dimension is in the middle
# whatever `batch_first` says. `output` has one vector per step, twice as wide when the layer
# reads both ways.
# </details>

# %% role="answer" grade_id="shape-predictions"
shape_predictions = {
    "lstm output": None,   # a tuple of ints, e.g. (1, 2, 3)
    "lstm h_n": None,
    "lstm c_n": None,
    "gru output": None,
    "gru h_n": None,
}
### BEGIN SOLUTION
shape_predictions = {
    "lstm output": (6, 3, 7),
    "lstm h_n": (2, 3, 7),
    "lstm c_n": (2, 3, 7),
    "gru output": (3, 6, 14),
    "gru h_n": (4, 3, 7),
}
### END SOLUTION

# %% role="test" grade_id="test-shape-predictions" points=3
# Hidden tests build the two layers, run them and compare the shapes with your predictions.
_keys = {"lstm output", "lstm h_n", "lstm c_n", "gru output", "gru h_n"}
checks.expect(isinstance(shape_predictions, dict) and set(shape_predictions) == _keys,
              "`shape_predictions` should be a dict with exactly the keys 'lstm output', 'lstm h_n', "
              "'lstm c_n', 'gru output' and 'gru h_n'.")
for _k in sorted(_keys):
    _v = shape_predictions[_k]
    checks.expect(type(_v) is tuple and all(type(_d) is int for _d in _v),
                  f"shape_predictions[{_k!r}] should be a tuple of ints, like (1, 2, 3); it is {checks.describe(_v)}.")
### BEGIN HIDDEN TESTS
with checks.seeded(0):
    _lstm = nn.LSTM(input_size=5, hidden_size=7, num_layers=2).to(checks.DEVICE)
    _gru = nn.GRU(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, batch_first=True).to(checks.DEVICE)
    _out_l, (_h_l, _c_l) = _lstm(torch.randn(6, 3, 5, device=checks.DEVICE))
    _out_g, _h_g = _gru(torch.randn(3, 6, 5, device=checks.DEVICE))
_why = {
    "lstm output": "Without batch_first the output is time-major like the input: one top-layer vector per step "
                   "and per sequence (Hint 1).",
    "lstm h_n": "h_n holds the final state of every layer (and direction), with the batch in the middle.",
    "lstm c_n": "The cell state c_n has the same shape as h_n: one slice per layer and direction.",
    "gru output": "With batch_first=True the output is batch-first too, and a bidirectional layer puts the "
                  "forward and backward vectors side by side, so each step's vector is D times hidden_size wide.",
    "gru h_n": "batch_first does not apply to h_n: its batch dimension is always in the middle, and it has one "
               "slice for every layer times every direction (Hint 2).",
}
for _k, _t in [("lstm output", _out_l), ("lstm h_n", _h_l), ("lstm c_n", _c_l), ("gru output", _out_g),
               ("gru h_n", _h_g)]:
    checks.expect_equal(shape_predictions[_k], tuple(_t.shape), f"Your prediction for the shape of {_k}",
                        why=_why[_k], show=False)
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-top-layer"
# ## 2 · The summary of a sequence: the top layer's final state
#
# To classify a whole sequence you usually want one vector per sequence: the state the top
# layer ended in. For a one-way, one-layer network that is simply `h_n[0]`. In general `h_n`
# stacks `num_layers · D` slices, layer by layer, and within a layer the forward direction
# comes before the backward one. So `h_n.view(num_layers, D, N, hidden_size)` names the two
# axes, and the top layer is the last entry of the first.
#
# Two things are worth knowing about a bidirectional layer. Its backward direction *ends* at
# the first step of the sequence: its final state sits at time 0 of `output`, not at the end.
# And `h_n[-1]` alone is the top layer's *backward* state only; the forward one is `h_n[-2]`.
#
# ### Exercise 2 · `top_layer_final`
#
# Write `top_layer_final(h_n, num_layers, bidirectional)`: from `h_n` of shape
# `(num_layers · D, N, H)` return the top layer's final state, `(N, D · H)`: for a
# bidirectional network the forward state then the backward state, side by side (the same
# order `output` uses).
#
# <details><summary>Hint 1</summary>
#
# `view` `h_n` as `(num_layers, D, N, H)` and take the last layer: `(D, N, H)`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# To turn `(D, N, H)` into `(N, D · H)` the batch must come first before you flatten:
# `torch.cat` the `D` slices along the feature dimension, or move the axes then `reshape`.
# A `reshape` straight from `(D, N, H)` mixes rows of different sequences.
# </details>

# %% role="answer" grade_id="top-layer"
def top_layer_final(h_n, num_layers, bidirectional):
    """The top layer's final hidden state, (N, D * H), forward before backward."""
    ### BEGIN SOLUTION
    directions = 2 if bidirectional else 1
    top = h_n.view(num_layers, directions, h_n.shape[1], h_n.shape[2])[-1]
    return torch.cat(list(top), dim=1)
    ### END SOLUTION


# %% role="test" grade_id="test-top-layer-sanity" points=1
with checks.seeded(0):
    _h = torch.randn(4, 3, 7, device=checks.DEVICE)
_top = top_layer_final(_h, num_layers=2, bidirectional=True)
checks.expect_tensor(_top, "top_layer_final(h_n of 2 layers, bidirectional, batch of 3, H=7)", shape=(3, 14),
                     why="The result has one row per sequence, holding both directions of the top layer side by "
                         "side.")
print("top_layer_final returned shape", tuple(_top.shape))

# %% role="test" grade_id="test-top-layer" points=2
# Hidden tests run real GRUs (1 to 3 layers, one or two directions) and compare your result with
# the states at the ends of `output`.
### BEGIN HIDDEN TESTS
for _layers in (1, 3):
    for _bi in (False, True):
        with checks.seeded(_layers):
            _gru = nn.GRU(4, 5, num_layers=_layers, bidirectional=_bi, batch_first=True).to(checks.DEVICE)
            _out, _h = _gru(torch.randn(3, 6, 4, device=checks.DEVICE))
        _want = _out[:, -1, :5] if not _bi else torch.cat([_out[:, -1, :5], _out[:, 0, 5:]], dim=1)
        _name = f"top_layer_final for {_layers} layer(s), {'bidirectional' if _bi else 'one direction'}"
        _got = top_layer_final(_h, _layers, _bi)
        checks.expect_tensor(_got, _name, shape=tuple(_want.shape),
                             why="Keep one row per sequence and both directions of the top layer.")
        checks.expect_close(_got, _want, _name, rtol=1e-5, atol=1e-6,
                            why="h_n is ordered layer by layer, and within a layer forward before backward; the "
                                "top layer is the last one. Forward's final state is output's last step, "
                                "backward's is output's first step. Put the batch first before you flatten "
                                "(Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-last-step"
# ## 3 · Padding, and the last *real* step
#
# A batch is a rectangle, and sequences are not: a batch of sentences of 3, 7 and 5 tokens
# becomes a `(3, 7, ...)` tensor with the short ones **padded** with zeros at the end (you wrote
# such a `collate_fn` in 06, keeping the true lengths). A plain RNN then runs over the padding
# as if it were data. Each padded sequence's state keeps changing after its real end, and
# `output[:, -1]`, "the last step", is for most rows a step of padding.
#
# If you do run the padded batch (or once you have an `output` with padding in it), the step
# you want for sequence `i` is `lengths[i] − 1`. Picking one step per row is advanced
# indexing: a tensor of row numbers and a tensor of step numbers, one pair per row, index
# `output[rows, steps]` in one operation, no Python loop.
#
# ### Exercise 3 · Fix a broken snippet
#
# `last_step_broken` below is meant to return, for each sequence of a padded batch-first
# `output` of shape `(N, T, H)`, the vector at its last real step, given `lengths`, a 1-D
# `int64` tensor of the true lengths (kept on the CPU, where `pack_padded_sequence` wants
# them). Run the cell and compare. Then write `last_valid_step(output, lengths)`, the fixed
# version, returning `(N, H)` on `output`'s device.
#
# <details><summary>Hint 1</summary>
#
# Steps are numbered from 0, so a sequence of length 3 ends at step 2.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.arange(N)` numbers the rows. Both index tensors must be on `output`'s device.
# </details>

# %% role="locked" grade_id="last-step-broken"
def last_step_broken(output, lengths):
    return output[:, -1]


_demo_out = torch.arange(12.0).view(3, 4, 1)   # 3 sequences, 4 steps, 1 feature: the value is the position
_demo_lengths = torch.tensor([4, 2, 3])
print("last_step_broken:", last_step_broken(_demo_out, _demo_lengths).flatten().tolist())
print("what we want:    ", [3.0, 5.0, 10.0])


# %% role="answer" grade_id="last-step"
def last_valid_step(output, lengths):
    """For batch-first padded output (N, T, H) and true lengths (N,), the (N, H) last real steps."""
    ### BEGIN SOLUTION
    rows = torch.arange(output.shape[0], device=output.device)
    return output[rows, lengths.to(output.device) - 1]
    ### END SOLUTION


# %% role="test" grade_id="test-last-step-sanity" points=1
_got = last_valid_step(torch.arange(12.0, device=checks.DEVICE).view(3, 4, 1), torch.tensor([4, 2, 3]))
checks.expect_tensor(_got, "last_valid_step on the demo batch", shape=(3, 1),
                     why="Return one vector of H features per sequence.")
print("last_valid_step:", _got.flatten().tolist())

# %% role="test" grade_id="test-last-step" points=2
# Hidden tests use random outputs, lengths in any order (some full, some of length 1), and
# check the device of the result.
### BEGIN HIDDEN TESTS
with checks.seeded(2):
    _out = torch.randn(5, 6, 3, device=checks.DEVICE)
_lengths = torch.tensor([2, 6, 1, 4, 6])
try:
    _got = last_valid_step(_out, _lengths)
except IndexError as _err:
    checks.expect(False, f"last_valid_step indexed out of range ({str(_err)[:80]}). The lengths give positions "
                         "along the time dimension (dim 1 of a batch-first output), the row numbers along the batch "
                         "dimension, and steps are numbered from 0 (Hint 1).")
checks.expect_tensor(_got, "last_valid_step for a batch of 5, T=6, H=3", shape=(5, 3),
                     why="Return one H-vector per sequence: index the batch and time dimensions together.")
_device_why = ("Keep the result on output's device: move the index tensors there, not output to the CPU (the "
               "test used the 'meta' device, which has shapes but no data).")
checks.expect(_got.device.type == _out.device.type,
              f"last_valid_step returned a tensor on {_got.device}, but output is on {_out.device}. " + _device_why)
try:
    _meta_got = last_valid_step(torch.empty(5, 6, 3, device="meta"), _lengths)
except (RuntimeError, NotImplementedError) as _err:
    if isinstance(_err, NotImplementedError) and "Replace this line" in str(_err):
        raise
    checks.expect(False, f"last_valid_step failed for an output on another device ({type(_err).__name__}: "
                         f"{str(_err)[:120]}). " + _device_why)
checks.expect_tensor(_meta_got, "last_valid_step for an output on the meta device", shape=(5, 3), device="meta",
                     why=_device_why)
_want = torch.stack([_out[_i, _n - 1] for _i, _n in enumerate(_lengths.tolist())])
checks.expect_close(_got, _want, "last_valid_step", rtol=0, atol=0,
                    why="For sequence i the last real step is lengths[i] - 1 along the time dimension (dim 1 of a "
                        "batch-first output); the steps after it are padding. Pair each row number with its own "
                        "step (Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-packed"
# ## 4 · Packing: running only the real steps
#
# Picking the right step fixes the readout of a one-way network, but not everything: a
# bidirectional network's backward direction *starts* at the end of the row, so it reads the
# padding first and carries it into every real step. The real fix is not to run the padding at
# all. `pack_padded_sequence(x, lengths, batch_first=..., enforce_sorted=...)` turns a padded
# batch and its lengths into a `PackedSequence`: the real steps only, laid out so that at each
# time step the network processes just the sequences that are still going. Every recurrent
# layer accepts one, and returns its `output` packed too, while `h_n` holds each sequence's
# state at its own real end. `pad_packed_sequence(packed, batch_first=..., total_length=...)`
# turns the output back into a padded tensor, with zeros in the padding.
#
# Three details:
# - `lengths` must be on the **CPU** (a list, or a CPU `int64` tensor), wherever `x` is.
# - By default (`enforce_sorted=True`) the batch must be sorted by decreasing length, and an
#   unsorted batch raises an error. With `enforce_sorted=False` PyTorch sorts for you *and puts
#   the results back in your order*, `h_n` included. Sorting by hand is a chance to forget the
#   second half.
# - `pad_packed_sequence` pads to the longest sequence in the batch unless `total_length` says
#   otherwise, so the output can come back shorter than the input.
#
# ### Exercise 4 · `run_packed`
#
# Write `run_packed(rnn, x, lengths)`: `rnn` is an `nn.RNN` or `nn.GRU` built with
# `batch_first=True` (one or more layers, one or two directions), `x` a padded batch
# `(N, T, input_size)` on any device, `lengths` a CPU `int64` tensor of the true lengths, in any
# order. Return `(output, h_n)`: `output` of shape `(N, T, D · hidden_size)` with zeros at the
# padded steps, and `h_n` as the network returns it, both in the order of the batch you were
# given. Padding must change nothing: each sequence's results must be those it gets when it
# runs alone.
#
# <details><summary>Hint 1</summary>
#
# Three lines: pack, run, unpack. Tell both functions that the batch comes first.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Let PyTorch handle the order (`enforce_sorted=False`), and ask `pad_packed_sequence` for the
# input's own length in time.
# </details>

# %% role="answer" grade_id="packed"
def run_packed(rnn, x, lengths):
    """Run a batch_first rnn over the real steps of the padded batch x. Returns (output, h_n)."""
    ### BEGIN SOLUTION
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    output, h_n = rnn(packed)
    output, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    return output, h_n
    ### END SOLUTION


# %% role="test" grade_id="test-packed-sanity" points=1
with checks.seeded(0):
    _rnn = nn.GRU(3, 4, batch_first=True).to(checks.DEVICE)
    _x = torch.randn(3, 5, 3, device=checks.DEVICE)
_out, _h = run_packed(_rnn, _x, torch.tensor([5, 3, 2]))
checks.expect_tensor(_out, "output of run_packed for a batch of 3, T=5, hidden_size=4", shape=(3, 5, 4),
                     why="Return the padded output, batch first, as long in time as the input.")
checks.expect_tensor(_h, "h_n of run_packed", shape=(1, 3, 4), why="Return h_n as the network returns it.")
print("run_packed returned", tuple(_out.shape), "and", tuple(_h.shape))


# %% role="test" grade_id="test-packed" points=3
# Hidden tests run a 2-layer bidirectional GRU on unsorted lengths, compare each sequence with
# the same sequence run alone, fill the padding with noise, and check the padded steps of output.
### BEGIN HIDDEN TESTS
def _call_run_packed(*args):
    try:
        return run_packed(*args)
    except RuntimeError as _err:
        if "sorted" in str(_err):
            checks.expect(False, "run_packed raised an error for a batch whose lengths are not sorted: "
                                 "pack_padded_sequence by default requires decreasing lengths. Real batches "
                                 "come in any order: let PyTorch sort and restore the order (Hint 2).")
        raise


with checks.seeded(4):
    _rnn = nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True).to(checks.DEVICE)
    _lengths = torch.tensor([3, 6, 1, 5])
    _x = torch.randn(4, 7, 3, device=checks.DEVICE)     # T = 7: longer than every sequence
    _mask = (torch.arange(7)[None, :] < _lengths[:, None]).to(checks.DEVICE)
    _x = _x * _mask[..., None]
    _noisy = _x + 5 * torch.randn(4, 7, 3, device=checks.DEVICE) * (~_mask)[..., None]
_out, _h = _call_run_packed(_rnn, _x, _lengths)
checks.expect_tensor(_out, "run_packed's output for a batch of 4 padded to T=7 (longest sequence 6)",
                     shape=(4, 7, 8),
                     why="The output must be batch first, as long in time as the input (pad_packed_sequence "
                         "pads only to the longest sequence unless you give it the total length), and D * "
                         "hidden_size wide.")
checks.expect_tensor(_h, "run_packed's h_n", shape=(4, 4, 4), why="Return h_n as the network returns it.")
for _i, _n in enumerate(_lengths.tolist()):
    _alone_out, _alone_h = _rnn(_x[_i:_i + 1, :_n])
    checks.expect_close(_out[_i, :_n], _alone_out[0], f"output of sequence {_i} (length {_n}) in the batch",
                        rtol=1e-4, atol=1e-5,
                        why="Run alone, without padding, this sequence gives other results: the network ran over "
                            "the padding (the backward direction reads it first), or the rows came back in "
                            "another order. Pack the batch with its true lengths, batch first, and keep the "
                            "batch's own order.")
    checks.expect_close(_h[:, _i], _alone_h[:, 0], f"h_n of sequence {_i} (length {_n})", rtol=1e-4, atol=1e-5,
                        why="h_n must hold each sequence's state at its own real end, in the order of the batch "
                            "you were given. With a packed input the network stops each sequence at its length.")
checks.expect(bool((_out.detach() * (~_mask)[..., None] == 0).all()),
              "run_packed's output is not zero at the padded steps: those steps were computed by the network. "
              "Unpack the packed output with pad_packed_sequence, which fills the padding with zeros.")
_out2, _h2 = _call_run_packed(_rnn, _noisy, _lengths)
checks.expect_close(_out2, _out, "run_packed's output when the padding holds noise", rtol=1e-5, atol=1e-6,
                    why="The values in the padding changed the result: the network read them. Padding must "
                        "change nothing; pack the batch so that only the real steps run.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-char-model"
# ## 5 · A character-level language model
#
# A **language model** predicts the next token from the ones before it. At the level of
# characters that is a classifier with one class per character of the vocabulary, applied at
# every step: read `"Beautiful is bett"`, predict `"e"`. The network is three layers:
#
# 1. `nn.Embedding(vocab_size, embed_dim)` turns each character id into a learned vector
#    (a lookup table: `(N, T)` int64 ids in, `(N, T, embed_dim)` floats out);
# 2. a recurrent layer reads those vectors and returns a state per step, `(N, T, hidden_size)`;
# 3. `nn.Linear(hidden_size, vocab_size)` turns every step's state into logits for the next
#    character, `(N, T, vocab_size)`.
#
# The forward pass also takes and returns the hidden state. That is what lets us feed a long
# text in pieces: the state at the end of one piece is where the next piece starts, and the
# result is the same as reading the whole text at once. A state of `None` means "start from
# zeros"; the recurrent layer makes those zeros itself, on the right device. Logits, not
# probabilities: the loss applies the softmax (05, section 3).
#
# ### Exercise 5 · `CharModel`
#
# Write `CharModel(vocab_size, embed_dim=16, hidden_size=64)`, an `nn.Module` whose
# `forward(x, state=None)` takes a batch of character ids `(N, T)` and returns
# `(logits, state)`: logits `(N, T, vocab_size)` and the final state of a **one-layer `nn.GRU`**,
# `(1, N, hidden_size)`, ready to be passed back in to continue the sequence.
#
# <details><summary>Hint 1</summary>
#
# Which shape does the embedding hand the GRU: batch first or time first? Build the GRU to
# match.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Pass `state` on to the GRU: it accepts `None`. Do not create a zero state yourself.
# </details>

# %% role="answer" grade_id="char-model"
class CharModel(nn.Module):
    """Embedding -> one-layer GRU -> Linear, one set of logits per step."""

    def __init__(self, vocab_size, embed_dim=16, hidden_size=64):
        super().__init__()
        ### BEGIN SOLUTION
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = nn.GRU(embed_dim, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)
        ### END SOLUTION

    def forward(self, x, state=None):
        ### BEGIN SOLUTION
        output, state = self.rnn(self.embed(x), state)
        return self.head(output), state
        ### END SOLUTION


# %% role="test" grade_id="test-char-model-sanity" points=1
with checks.seeded(0):
    _m = CharModel(vocab_size=11).to(checks.DEVICE)
    _x = torch.randint(0, 11, (2, 9), device=checks.DEVICE)
_logits, _state = _m(_x)
checks.expect_tensor(_logits, "The logits of CharModel(11) for a batch (2, 9)", shape=(2, 9, 11),
                     dtype=torch.float32, why="One set of vocab_size logits per sequence and per step.")
checks.expect_tensor(_state, "The state CharModel returns", shape=(1, 2, 64),
                     why="Return the GRU's final state as it comes: (num_layers, N, hidden_size).")
print("CharModel returned logits", tuple(_logits.shape), "and state", tuple(_state.shape))

# %% role="test" grade_id="test-char-model" points=2
# Hidden tests check that each step sees only its own sequence's past, that two halves with the
# state carried give the same logits as the whole, that the outputs are logits, and that the
# model runs on any device (the meta device).
### BEGIN HIDDEN TESTS
with checks.seeded(5):
    _m = CharModel(vocab_size=13, embed_dim=8, hidden_size=12).to(checks.DEVICE)
    _x = torch.randint(0, 13, (4, 10), device=checks.DEVICE)
    _x2 = _x.clone()
    _x2[1] = torch.randint(0, 13, (10,), device=checks.DEVICE)
    _x2[:, 7:] = torch.randint(0, 13, (4, 3), device=checks.DEVICE)
_whole, _ = _m(_x)
_changed, _ = _m(_x2)
_same = [0, 2, 3]
checks.expect_close(_changed[_same, :7], _whole[_same, :7],
                    "CharModel's logits for steps and sequences that did not change", rtol=1e-5, atol=1e-6,
                    why="Changing one sequence, or the later steps of all of them, moved the logits of other "
                        "sequences or of earlier steps. The GRU is reading the batch dimension as time: build it "
                        "for the layout the embedding gives it (Hint 1).")
checks.expect_tensor(_whole, "CharModel(13)'s logits for a batch (4, 10)", shape=(4, 10, 13),
                     why="Map every step's state to vocab_size logits with the final linear layer.")
checks.expect(not torch.allclose(_whole.detach().sum(-1), torch.ones(4, 10, device=checks.DEVICE), atol=1e-3),
              "CharModel's outputs are probabilities (each row sums to 1): the model ends with a softmax. Return "
              "logits: cross_entropy applies log_softmax itself.")
_first, _state = _m(_x[:, :4])
_second, _ = _m(_x[:, 4:], _state)
checks.expect_close(torch.cat([_first, _second], dim=1), _whole,
                    "The logits of two halves, the state of the first passed into the second", rtol=1e-4, atol=1e-5,
                    why="Continuing from the returned state must give the same result as reading the whole "
                        "sequence: forward must hand the state it is given to the GRU, and return the GRU's "
                        "final state.")
with checks.seeded(5):
    _meta = CharModel(vocab_size=13, embed_dim=8, hidden_size=12).to("meta")
try:
    _meta_logits, _ = _meta(torch.zeros(2, 5, dtype=torch.long, device="meta"))
except (RuntimeError, NotImplementedError) as _err:
    if isinstance(_err, NotImplementedError) and "Replace this line" in str(_err):
        raise
    checks.expect(False, "CharModel fails when the model and its input are on another device (the test used "
                         f"the 'meta' device): {type(_err).__name__}: {str(_err)[:200]}. Something in forward "
                         "is made on the CPU: let the GRU create the initial state (Hint 2).")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-tbptt"
# ## 6 · Truncated backpropagation through time
#
# Training on a long text as one sequence would build one graph through every character:
# memory grows with the length of the text, and one update waits for all of it. So we cut the
# text into **chunks** of, say, 25 characters and make one update per chunk. To keep the
# model's memory of the text, the hidden state at the end of one chunk is the starting state
# of the next.
#
# That state, though, is the end of the previous chunk's graph. Use it as it is, and the next
# `backward()` tries to run back through the previous chunk too, whose graph the previous
# `backward()` has already freed: *"Trying to backward through the graph a second time"*.
# `retain_graph=True` silences that error and makes it worse: every chunk then
# backpropagates through all the chunks before it, and the cost of a step grows without end.
# The fix is `state.detach()` before each chunk: the same numbers, cut from their history.
# The state carries *information* forward; gradients stop at the chunk's border. That is the
# "truncated" in truncated backpropagation through time.
#
# Detach the state, not the outputs: the loss of a chunk must still reach every weight through
# that chunk's own steps.
#
# The data is `N` parallel **streams**, rows of one long text, `(N, L)` character ids: row `i`
# carries on where it left off in the next chunk, so the state of row `i` belongs to it. The
# targets are the inputs shifted by one: at step `t` the model predicts the character at
# `t + 1`.
#
# ### Exercise 6 · `train_chunks`
#
# Write `train_chunks(model, optimizer, data, chunk_len, state=None)`: one pass over the
# streams `data` `(N, L)`. For `s = 0, chunk_len, 2·chunk_len, ...` while `s < L − 1`, the inputs
# are `data[:, s : s + chunk_len]` and the targets the characters one step later (the last
# chunk may be shorter: give it as many inputs as it has targets). For each chunk: detach the
# incoming state (unless it is `None`), clear the gradients, run `model(inputs, state)`, take
# the mean cross-entropy over every step of every stream, backward, step. Return
# `(losses, state)`: the list of the chunks' losses as Python floats, and the final state,
# detached. `model` is a `CharModel` (or any model with its `forward(x, state)`).
#
# <details><summary>Hint 1</summary>
#
# `F.cross_entropy` wants logits `(M, C)` and targets `(M,)`: flatten the batch and time
# dimensions of both with `reshape`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# The targets slice is `data[:, s + 1 : s + 1 + chunk_len]`; cut the inputs to its length.
# </details>
#
# <details><summary>Hint 3</summary>
#
# The state returned by one chunk's forward pass is the one passed into the next: one variable
# carries it round the loop, and it is detached at the top of each iteration.
# </details>

# %% role="answer" grade_id="tbptt"
def train_chunks(model, optimizer, data, chunk_len, state=None):
    """One pass of truncated BPTT over the streams data (N, L). Returns (losses, final state)."""
    ### BEGIN SOLUTION
    losses = []
    for s in range(0, data.shape[1] - 1, chunk_len):
        targets = data[:, s + 1:s + 1 + chunk_len]
        inputs = data[:, s:s + targets.shape[1]]
        if state is not None:
            state = state.detach()
        optimizer.zero_grad()
        logits, state = model(inputs, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, state.detach()
    ### END SOLUTION


# %% role="test" grade_id="test-tbptt-sanity" points=1
with checks.seeded(0):
    _m = CharModel(vocab_size=7, embed_dim=4, hidden_size=8).to(checks.DEVICE)
    _data = torch.randint(0, 7, (3, 23), device=checks.DEVICE)
_opt = torch.optim.SGD(_m.parameters(), lr=0.1)
_losses, _state = train_chunks(_m, _opt, _data, chunk_len=5)
checks.expect(type(_losses) is list and len(_losses) == 5 and all(type(_v) is float for _v in _losses),
              f"train_chunks on streams of 23 characters with chunk_len=5 should return a list of 5 floats (the "
              f"last chunk has 2 steps), one loss.item() per chunk; it returned {checks.describe(_losses)}.")
checks.expect_tensor(_state, "The state train_chunks returns", shape=(1, 3, 8),
                     why="Return the final state of the last chunk.")
print("chunk losses:", [round(_v, 3) for _v in _losses])

# %% role="test" grade_id="test-tbptt" points=3
# Hidden tests watch the state passed into each chunk (carried, detached, in the right order),
# compare losses and parameters with a reference implementation, and check the returned state.
### BEGIN HIDDEN TESTS
import copy as _copy


class _Spy(nn.Module):
    """Wraps a model and records the state each call receives and returns."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, state=None):
        logits, out = self.inner(x, state)
        self.calls.append((None if state is None else state, out, tuple(x.shape)))
        return logits, out


def _call_train_chunks(*args, **kwargs):
    try:
        return train_chunks(*args, **kwargs)
    except RuntimeError as _err:
        _text = str(_err)
        if "second time" in _text:
            checks.expect(False, "train_chunks failed in the second chunk's backward with 'Trying to backward "
                                 "through the graph a second time': the state passed into that chunk still "
                                 "carries the previous chunk's graph. Detach the hidden state between chunks, "
                                 "before the forward pass.")
        if "inplace operation" in _text:
            checks.expect(False, "train_chunks failed in a backward pass that ran back into the previous chunk "
                                 "('modified by an inplace operation'): gradients flow back across the chunk border, "
                                 "through weights the optimiser has changed since. Backpropagation through time must "
                                 "be truncated: detach the hidden state between chunks instead of keeping graphs.")
        if "does not require grad" in _text:
            checks.expect(False, "train_chunks' loss has no graph to backpropagate through ('does not require "
                                 "grad'): something cut the loss from the weights. Detach the state carried "
                                 "between chunks, not the logits, and do not run the forward pass under no_grad.")
        raise


with checks.seeded(6):
    _inner = CharModel(vocab_size=9, embed_dim=5, hidden_size=6).to(checks.DEVICE)
    _data = torch.randint(0, 9, (2, 17), device=checks.DEVICE)
_ref = _copy.deepcopy(_inner)
_spy = _Spy(_inner)
_opt = torch.optim.SGD(_inner.parameters(), lr=0.5)
with checks.TrainingSpy(_inner, _opt) as _tspy:
    _losses, _state = _call_train_chunks(_spy, _opt, _data, 4)
checks.expect(len(_spy.calls) == 4,
              f"train_chunks called the model {len(_spy.calls)} times on streams of 17 characters with chunk_len=4; "
              "expected 4 chunks (16 targets, 4 per chunk). Step s runs from 0 in strides of chunk_len while s < "
              "L - 1.")
checks.expect(_spy.calls[0][0] is None,
              "The first chunk did not receive the state train_chunks was given (None): start from the state "
              "argument.")
for _i in range(1, len(_spy.calls)):
    _got_state, _prev_out = _spy.calls[_i][0], _spy.calls[_i - 1][1]
    checks.expect(_got_state is not None,
                  f"Chunk {_i + 1} started from state None: the hidden state was not carried over from the chunk "
                  "before, so the model forgets the text at every chunk border. Pass the state returned by one "
                  "chunk into the next (Hint 3).")
    checks.expect(checks.graph_nodes(_got_state) == [] and not _got_state.requires_grad,
                  f"The state passed into chunk {_i + 1} still carries the previous chunk's graph, so gradients "
                  "flow back across the chunk border (backpropagation is not truncated, and the cost of every "
                  "step grows). Detach the hidden state between chunks.")
    checks.expect_close(_got_state, _prev_out.detach(), f"The state passed into chunk {_i + 1}", rtol=0, atol=0,
                        why="Carry the previous chunk's final state: the same numbers, detached from their graph.")
_tspy.check_loop(steps=4, name="`train_chunks`")
_ref_opt = torch.optim.SGD(_ref.parameters(), lr=0.5)
_ref_losses, _ref_state = [], None
for _s in range(0, 16, 4):
    _ref_opt.zero_grad()
    _lg, _ref_state = _ref(_data[:, _s:_s + 4], None if _ref_state is None else _ref_state.detach())
    _l = F.cross_entropy(_lg.reshape(-1, 9), _data[:, _s + 1:_s + 5].reshape(-1))
    _l.backward()
    _ref_opt.step()
    _ref_losses.append(_l.item())
checks.expect(type(_losses) is list and all(type(_v) is float for _v in _losses),
              f"train_chunks should return a list of floats; it returned {checks.describe(_losses)}.")
checks.expect_close(torch.tensor(_losses), torch.tensor(_ref_losses), "The chunk losses train_chunks returned",
                    rtol=1e-4, atol=1e-5,
                    why="Each chunk's loss is the mean cross-entropy of the logits against the next characters "
                        "(targets shifted by one step), computed before that chunk's update (Hint 2).")
for (_n, _p), _q in zip(_inner.named_parameters(), _ref.parameters()):
    checks.expect_close(_p.detach(), _q.detach(), f"Parameter {_n} after train_chunks", rtol=1e-4, atol=1e-5,
                        why="Each chunk makes one update from its own gradient: clear the gradients, forward, "
                            "loss, backward, step.")
checks.expect_tensor(_state, "The state train_chunks returns", shape=(1, 2, 6), requires_grad=False,
                     why="Return the last chunk's final state, detached, so the caller can carry it into the "
                         "next pass without holding on to a graph.")
checks.expect_close(_state, _ref_state.detach(), "The state train_chunks returns", rtol=1e-5, atol=1e-6,
                    why="Return the final state of the last chunk.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-sample"
# ## 7 · Sampling with a temperature
#
# A trained language model gives, at each step, a probability for every next character. To
# write text we pick one, feed it back in, and repeat. Always taking the most likely character
# (`argmax`) is deterministic and quickly falls into loops. Drawing from the distribution is
# livelier, and a **temperature** `τ` sets how lively: divide the logits by `τ` before the
# softmax. Below 1 the gaps between logits grow and the distribution sharpens; as `τ → 0` all
# the probability goes to the largest logit, so `τ = 0` is taken to mean argmax. Above 1 the
# gaps shrink and the distribution flattens towards uniform. At `τ = 1` you sample the model's
# own distribution.
#
# `torch.multinomial(probs, 1, generator=g)` draws one index per row of `probs`, from a
# `torch.Generator` you control: a seeded generator makes sampling repeatable without touching
# the global random state that the rest of your program relies on.
#
# ### Exercise 7 · `sample`
#
# Write `sample(logits, temperature, generator=None)`: for logits `(N, V)`, return `(N,)` `int64`
# character ids on the logits' device: one draw per row from `softmax(logits / temperature)`,
# made with `generator`; for `temperature == 0`, the argmax of each row.
#
# <details><summary>Hint 1</summary>
#
# The softmax runs over the vocabulary, the last dimension.
# </details>
#
# <details><summary>Hint 2</summary>
#
# `torch.multinomial` returns `(N, 1)`: one column of draws.
# </details>

# %% role="answer" grade_id="sample"
def sample(logits, temperature, generator=None):
    """One character id per row of logits (N, V), drawn at the given temperature (0: argmax)."""
    ### BEGIN SOLUTION
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    ### END SOLUTION


# %% role="test" grade_id="test-sample-sanity" points=1
_g = torch.Generator(device=checks.DEVICE).manual_seed(0)
_ids = sample(torch.randn(4, 6, device=checks.DEVICE), 1.0, _g)
checks.expect_tensor(_ids, "sample() for logits (4, 6)", shape=(4,), dtype=torch.int64,
                     why="Return one character id per row.")
print("sampled ids:", _ids.tolist())

# %% role="test" grade_id="test-sample" points=3
# Hidden tests draw many samples from seeded generators and compare their frequencies with the
# distributions each temperature should give; they also check temperature 0 and the generator.
### BEGIN HIDDEN TESTS
_logits = torch.tensor([2.0, 1.0, 0.5, -1.0], device=checks.DEVICE)
_draws = 20000


def _freqs(temperature, seed=0):
    _gen = torch.Generator(device=checks.DEVICE).manual_seed(seed)
    _ids = sample(_logits.expand(_draws, 4), temperature, _gen)
    checks.expect_tensor(_ids, f"sample() at temperature {temperature} for logits ({_draws}, 4)", shape=(_draws,),
                         dtype=torch.int64, why="Return one id per row: squeeze the column of draws (Hint 2).")
    return torch.bincount(_ids.cpu(), minlength=4).double() / _draws


with checks.seeded(7):
    _l0 = torch.randn(6, 9, device=checks.DEVICE)
try:
    _ids0 = sample(_l0, 0, torch.Generator(device=checks.DEVICE).manual_seed(0))
except (RuntimeError, ZeroDivisionError) as _err:
    checks.expect(False, f"sample() failed at temperature 0 ({type(_err).__name__}: {str(_err)[:120]}). Temperature "
                         "0 is the limit of sharper and sharper distributions: treat it as argmax over the "
                         "vocabulary rather than dividing by 0.")
checks.expect_tensor(_ids0, "sample() at temperature 0", shape=(6,), dtype=torch.int64)
checks.expect(torch.equal(_ids0.cpu(), _l0.argmax(-1).cpu()),
              "At temperature 0, sample() did not return the most likely character of each row. Temperature 0 is "
              "the limit of sharper and sharper distributions: treat it as argmax over the vocabulary (dividing "
              "by 0 is not an option).")
for _t in (1.0, 0.5, 3.0):
    _want = torch.softmax(_logits.double().cpu() / _t, dim=0)
    _got = _freqs(_t)
    checks.expect(bool(((_got - _want).abs() < 0.015).all()),
                  f"At temperature {_t}, the frequencies of {_draws} draws from sample() do not match "
                  "softmax(logits / temperature). A temperature below 1 must sharpen the distribution and one "
                  "above 1 flatten it: divide the logits by the temperature before the softmax over the "
                  "vocabulary, then draw (do not take the argmax).")
_sharp = _freqs(0.05)
checks.expect(_sharp[0] > 0.99,
              "At temperature 0.05, sample() picked the most likely character in only "
              f"{_sharp[0].item():.1%} of the draws; as the temperature falls towards 0 sampling must approach "
              "argmax. Divide the logits by the temperature.")
checks.expect(torch.equal(_freqs(1.0, seed=3), _freqs(1.0, seed=3)),
              "Two generators seeded alike gave different draws: sample() does not draw from the generator it is "
              "given. Pass it to torch.multinomial.")
_state = torch.get_rng_state()
_freqs(1.0, seed=4)
checks.expect(torch.equal(_state, torch.get_rng_state()),
              "sample() used torch's global random state: draw from the generator it is given (pass it to "
              "torch.multinomial), so that sampling can be repeated without disturbing the rest of the program.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-zen"
# ## 8 · Training on the Zen of Python
#
# Python ships a short text: `import this` prints the Zen of Python, 856 characters that the
# module keeps in `this.s`, encoded with the ROT13 cipher. The next cell decodes it, builds the
# vocabulary (every distinct character, sorted), cuts the text into 8 streams of 107 characters
# (`zen_streams`, `(8, 107)`) and defines `zen_loss(model)`, the model's mean cross-entropy,
# in nats, at predicting each character of the whole text from the ones before it.
#
# As a yardstick: a model that ignores order and predicts every character by its frequency in
# the text (a *unigram* model) has a loss of 3.11 nats per character: the entropy of the
# character frequencies. Any model below that has learned something about which character
# follows which.
#
# ### Exercise 8 · Train it
#
# Write `train_zen(model)`: train the `CharModel` it is given on `zen_streams` with your
# `train_chunks`, each pass starting from the state `None`, in **at most 400 optimiser
# steps** (forward passes of the model), and return the list of all chunk losses. Choose the
# optimiser, the learning rate, `chunk_len` and the number of passes. The hidden test trains a
# fresh `CharModel(len(vocab))` (another seed) with `train_zen` and asks for a `zen_loss`
# **below 1.0 nats**, under a third of the unigram model's. Our solution reaches about 0.2
# in a few seconds.
#
# <details><summary>Hint 1</summary>
#
# Adam with a learning rate around 1e-2 and `chunk_len` around 25 learns this text in a few dozen
# passes.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Each pass starts again at the beginning of every stream, so start each pass from the state
# `None`. The budget counts every chunk of every pass: with 8 streams of 107 characters and
# `chunk_len=25`, one pass is 5 steps.
# </details>

# %% role="locked" grade_id="zen-data"
import importlib  # noqa: E402

with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen: keep it quiet
    _this_module = importlib.import_module("this")

zen = codecs.decode(_this_module.s, "rot13")
vocab = sorted(set(zen))
char_to_id = {c: i for i, c in enumerate(vocab)}
zen_ids = torch.tensor([char_to_id[c] for c in zen], device=checks.DEVICE)
zen_streams = zen_ids[: 8 * (len(zen_ids) // 8)].view(8, -1)


def zen_loss(model):
    """Mean cross-entropy (nats per character) of model on the whole text, in eval mode, no graph."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, _ = model(zen_ids[None, :-1])
        loss = F.cross_entropy(logits[0], zen_ids[1:]).item()
    model.train(was_training)
    return loss


def generate(model, prompt, length, temperature, seed=0):
    """Continue prompt by length characters drawn with sample() at the given temperature."""
    gen = torch.Generator(device=checks.DEVICE).manual_seed(seed)
    with torch.no_grad():
        logits, state = model(torch.tensor([[char_to_id[c] for c in prompt]], device=checks.DEVICE))
        out = []
        for _ in range(length):
            nxt = sample(logits[:, -1], temperature, gen)
            out.append(vocab[nxt.item()])
            logits, state = model(nxt[:, None], state)
    return prompt + "".join(out)


print(f"{len(zen)} characters, {len(vocab)} distinct; streams {tuple(zen_streams.shape)}")


# %% role="answer" grade_id="zen"
def train_zen(model):
    """Train model on zen_streams with train_chunks, at most 400 steps. Returns all chunk losses."""
    ### BEGIN SOLUTION
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        chunk_losses, _ = train_chunks(model, optimizer, zen_streams, chunk_len=25)
        losses += chunk_losses
    return losses
    ### END SOLUTION


# %% role="locked" grade_id="zen-run"
# Your run: train a model, measure it, and let it write at three temperatures.
try:
    torch.manual_seed(0)
    zen_model = CharModel(len(vocab)).to(checks.DEVICE)
    print(f"before training: {zen_loss(zen_model):.2f} nats per character")
    zen_history = train_zen(zen_model)
    print(f"after {len(zen_history)} steps: {zen_loss(zen_model):.2f} nats per character (unigram: 3.11)")
    for _t in (0, 0.5, 1.5):
        print(f"--- temperature {_t}:\n{generate(zen_model, 'Beautiful', 120, _t)}")
except NotImplementedError:
    print("Write the exercises above, then run this cell again.")

# %% role="test" grade_id="test-zen-sanity" points=1
checks.expect(type(zen_history) is list and len(zen_history) >= 1 and all(type(_v) is float for _v in zen_history),
              f"train_zen should return the list of chunk losses (floats); it returned {checks.describe(zen_history)}.")
print(f"{len(zen_history)} steps, last loss {zen_history[-1]:.3f}")

# %% role="test" grade_id="test-zen" points=3
# Hidden tests train a fresh CharModel (another seed) with train_zen, count its steps (at most
# 400), and measure zen_loss: below 1.0 nats per character.
### BEGIN HIDDEN TESTS
with checks.seeded(1):
    _model = CharModel(len(vocab)).to(checks.DEVICE)
    _calls = []
    _hook = _model.register_forward_pre_hook(lambda _mod, _args: _calls.append(1))
    try:
        _history = train_zen(_model)
    finally:
        _hook.remove()
checks.expect(len(_calls) <= 400,
              f"train_zen ran {len(_calls)} forward passes; the budget is 400 steps. Fewer passes over the text, "
              "or longer chunks, with a larger learning rate (see the hints).")
checks.expect(type(_history) is list and len(_history) >= 1 and all(type(_v) is float for _v in _history),
              f"train_zen should return the list of chunk losses (floats); it returned {checks.describe(_history)}.")
_loss = zen_loss(_model)
checks.expect(_loss < 1.0,
              f"After train_zen the model's loss on the text is {_loss:.2f} nats per character; the target is below "
              "1.0 (a unigram model gets 3.11). Watch the chunk losses: if they stall, raise the learning rate or "
              "the number of passes; if they jump about, lower the learning rate.")
print(f"zen_loss {_loss:.3f} nats per character after {len(_calls)} steps")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - A recurrent layer reads a sequence step by step and carries a hidden state. By default its
#   input and `output` are time-major, `(T, N, ...)`; `batch_first=True` changes those two only.
#   `h_n` (and the LSTM's `c_n`) is always `(num_layers · D, N, hidden_size)`.
# - The summary of a sequence is the top layer's final state: the last layer of `h_n`, both
#   directions side by side.
# - Padding is not data. Either read each sequence at its own last step, or better, pack the
#   batch so that the network never runs the padding; `enforce_sorted=False` keeps your order.
# - Truncated backpropagation through time carries the state's values across chunks and cuts
#   its graph with `detach()` between them.
# - Sampling divides the logits by a temperature: towards 0 it becomes argmax, above 1 it
#   flattens. A generator of your own keeps it repeatable.
#
# Next, in **[11 · Attention](../11_attention/11_attention.ipynb)**, every step looks at every other step directly, instead of
# through a state passed along one step at a time.
