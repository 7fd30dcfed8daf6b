# %% [markdown] role="prose" grade_id="title"
# # 14 · Performance: measure, then make it faster, leaner and wider
#
# **Time:** about 2 h 30 min of work (4,600 words to read, 9 exercises). Run top to bottom, the
# finished notebook takes about 47 s.
#
# A model that is correct is the first goal. Then come the questions that decide whether
# you can afford to train it: how long does a step take, where does that time go, how much
# memory do the activations need, and can more than one processor share the work? PyTorch
# has a tool for each, and each tool has one way of being used that gives the same answers
# as the slow, simple version, and several ways that quietly give different ones: a timing
# that measures nothing, a half-precision run whose gradients vanish, an accumulated batch
# that is not the batch it stands for, two processes that each train their own model.
#
# The rule of this notebook: **every speed-up must leave the numbers the same** (up to the
# rounding it knowingly trades away), and you prove it by comparing against the plain version.
#
# **By the end of this notebook you will be able to:**
# - time PyTorch code honestly: warm-up, synchronisation with the device, the median of
#   repeats;
# - find where the time goes with `torch.profiler`;
# - train in mixed precision: `torch.autocast` with bfloat16 on the CPU, and float16 with a
#   `GradScaler` (unscaling before clipping, skipping steps whose gradients overflowed);
# - accumulate gradients over micro-batches so that one step equals one step on the large batch;
# - trade compute for memory with activation checkpointing, with gradients unchanged;
# - use `torch.compile`: find and remove graph breaks, and predict when it recompiles;
# - train one model in two processes with `torch.distributed` (the gloo backend) and get the
#   same weights as one process on the whole batch.
#
# **How this notebook works.** Cells marked `# YOUR CODE HERE` are yours: replace the
# `raise NotImplementedError(...)` line with your answer. The test cells after each exercise
# are locked. Some run visible checks you can see; others contain *hidden tests* that run when
# your notebook is graded (or when you run `course check` on it). Each exercise has hints you
# can open one at a time: try without them first. Later exercises build on earlier ones, so
# work from top to bottom.

# %% role="locked" grade_id="setup"
import copy
import os
import shutil
import statistics
import time
import unittest.mock

import torch
import torch._dynamo
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.checkpoint import checkpoint

from torchcourse import checks

torch.manual_seed(0)
print("PyTorch", torch.__version__, "| tests run on", checks.DEVICE)


# %% [markdown] role="prose" grade_id="md-timing"
# ## 1 · Timing: warm up, wait for the device, take the median
#
# "Make it faster" starts with a number you can trust, and a stopwatch around a function call
# lies in three ways.
#
# - **The first calls are not typical.** The first call of a PyTorch function pays for
#   things later calls do not: memory the allocator grabs and then keeps, libraries loaded
#   lazily, kernels picked or compiled (a `torch.compile`d function compiles on its first call,
#   which takes seconds). Run the code a few times *untimed* first: the **warm-up**.
# - **The GPU works asynchronously.** On a GPU, `y = model(x)` returns as soon as the work is
#   *queued*; the kernels run later while Python carries on. Read the clock right after the
#   call and you have timed the queueing, a few microseconds, whatever the model costs. The
#   work you did not wait for lands in whatever you time next. `torch.cuda.synchronize()`
#   blocks until everything queued on the device has finished: call it **before** you start the
#   clock (so earlier work, the warm-up included, is not counted) and **after** the call,
#   before you stop it. On the CPU, PyTorch runs each operation before returning, and there is
#   nothing to wait for.
# - **One measurement is noise.** Other processes, the operating system and the CPU's clock
#   speed change from moment to moment. Repeat the measurement and take the **median**: unlike
#   the mean, one interrupted run does not move it, and unlike the minimum, it describes a
#   typical run rather than the luckiest one.
#
# `torch.utils.benchmark.Timer` does all of this for you (and more). Writing it once by hand
# is how you learn what to check when someone else's benchmark looks too good.
#
# ### Exercise 1 · An honest timer
#
# - `device_sync(device)` returns a function of no arguments that waits for `device`: for a
#   CUDA device (a `torch.device` or a string such as `"cuda:1"`), it calls
#   `torch.cuda.synchronize` with that device each time it is called; for any other device it
#   does nothing. Nothing may happen when `device_sync` itself is called: only when its result is.
# - `time_call(fn, warmup=3, repeats=10, sync=None, clock=time.perf_counter)` calls `fn()`
#   `warmup` times untimed, then measures `repeats` calls one by one and returns the
#   **median** of their durations in seconds (`statistics.median`), as a float. `sync` is a
#   function that waits for the device (`None`: nothing to wait for); `clock` returns the time
#   in seconds. Use both as the three rules above say.
#
# The hidden tests give `time_call` a pretend asynchronous device whose clock only moves when
# you synchronise, and check the numbers you get.
#
# <details><summary>Hint 1</summary>
#
# With `sync=None`, use a function that does nothing (`lambda: None`), so that the rest of the
# code is the same for every device. `torch.device("cuda:1").type` is `"cuda"`.
# </details>
#
# <details><summary>Hint 2</summary>
#
# One measurement: read the clock, call `fn()`, wait for the device, read the clock. Wait once
# more between the warm-up and the first measurement.
# </details>

# %% role="answer" grade_id="timer"
def device_sync(device):
    """A function of no arguments that waits until `device` has finished its queued work."""
    ### BEGIN SOLUTION
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None
    ### END SOLUTION


def time_call(fn, warmup=3, repeats=10, sync=None, clock=time.perf_counter):
    """Median duration in seconds of fn() over `repeats` timed calls, after `warmup` untimed ones."""
    ### BEGIN SOLUTION
    if sync is None:
        sync = lambda: None  # noqa: E731
    for _ in range(warmup):
        fn()
    sync()
    durations = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        durations.append(clock() - start)
    return float(statistics.median(durations))
    ### END SOLUTION


# %% role="test" grade_id="test-timer-sanity" points=1
_a = torch.randn(64, 64, device=checks.DEVICE)
_t = time_call(lambda: _a @ _a, warmup=1, repeats=5, sync=device_sync(checks.DEVICE))
checks.expect(type(_t) is float and _t >= 0,
              f"`time_call` should return a float number of seconds, at least 0; it returned {checks.describe(_t)}.")
_s = device_sync("cpu")
checks.expect(callable(_s), f"`device_sync('cpu')` should return a function; it returned {checks.describe(_s)}.")
_s()
print(f"a 64x64 matrix product takes about {_t * 1e6:.0f} µs here")


# %% role="test" grade_id="test-time-call" points=3
# Hidden tests time a pretend asynchronous device (its clock moves only when you synchronise,
# and its first calls are slow) and check the calls, the waits and the median.
### BEGIN HIDDEN TESTS
class _FakeDevice:
    """Work is queued by fn() and done at sync(); the clock only moves when work is done."""

    def __init__(self, costs):
        self.costs, self.log, self.now, self.queued, self.calls = list(costs), [], 0.0, 0.0, 0

    def fn(self):
        self.log.append("call")
        self.queued += self.costs[min(self.calls, len(self.costs) - 1)]
        self.calls += 1

    def sync(self):
        self.log.append("sync")
        self.now += self.queued
        self.queued = 0.0

    def clock(self):
        self.log.append("clock")
        return self.now


for _warmup, _warm_costs, _costs in [(3, [900.0, 400.0, 200.0], [5.0, 1.0, 2.0, 100.0, 3.0, 4.0, 2.0]),
                                     (2, [50.0, 30.0], [7.0, 70.0, 6.0, 8.0, 9.0]),
                                     (0, [], [2.0, 9.0, 4.0])]:
    _dev = _FakeDevice(_warm_costs + _costs)
    _got = time_call(_dev.fn, warmup=_warmup, repeats=len(_costs), sync=_dev.sync, clock=_dev.clock)
    _calls = _dev.log.count("call")
    checks.expect(_calls == _warmup + len(_costs),
                  f"time_call(fn, warmup={_warmup}, repeats={len(_costs)}) called fn {_calls} times; it should call "
                  f"it {_warmup + len(_costs)} times: the warm-up calls, then one call per timed repeat.")
    checks.expect(type(_got) is float,
                  f"`time_call` should return a Python float, but it returned {checks.describe(_got)}.")
    _first_clock = _dev.log.index("clock") if "clock" in _dev.log else len(_dev.log)
    checks.expect(_dev.log[:_first_clock].count("call") == _warmup,
                  f"With warmup={_warmup}, the clock was first read after {_dev.log[:_first_clock].count('call')} "
                  "calls of fn: the warm-up calls must all come before any timing starts, and only they.")
    _last_warm = [_i for _i, _e in enumerate(_dev.log) if _e == "call"][_warmup - 1] if _warmup else 0
    checks.expect(_warmup == 0 or "sync" in _dev.log[_last_warm:_first_clock],
                  "After the warm-up calls, time_call started the clock without waiting for the device: work "
                  "the warm-up queued is still running and lands in the first measurement. Synchronise once "
                  "between the warm-up and the first reading of the clock (see Hint 2).")
    if _got == 0.0:
        checks.expect(False,
                      "Every duration time_call measured was 0: it read the clock again before the device had "
                      "done the work, so it timed only the queueing. Wait for the device (sync) after each call, "
                      "before reading the clock.")
    _expected = statistics.median(_costs)
    if _got == statistics.mean(_costs) or _got == sum(_costs):
        checks.expect(False, "time_call returned the mean (or the total) of the durations: one slow, interrupted "
                             "run pulls it far from a typical run. Return the median of the repeats.")
    if _got == min(_costs):
        checks.expect(False, "time_call returned the fastest run, not the median of the repeats.")
    checks.expect(_got == _expected,
                  f"time_call measured a median of {_got:g} on a device whose calls (after the warm-up) cost "
                  f"{_costs}, whose median is {_expected:g}. Check that the warm-up calls are not measured, that "
                  "each measurement covers exactly one call of fn and the wait for the device after it, and that "
                  "you take the median of the durations.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-device-sync" points=2
# Hidden tests watch torch.cuda.synchronize (replaced by a recorder for the test) while
# device_sync is used with CUDA, CPU and meta devices.
### BEGIN HIDDEN TESTS
_seen = []
with unittest.mock.patch.object(torch.cuda, "synchronize", lambda device=None: _seen.append(device)):
    for _name in ("cuda:1", torch.device("cuda", 0)):
        _seen.clear()
        _fn = device_sync(_name)
        checks.expect(_seen == [],
                      "device_sync(device) waited for the device when it was called. It should return a function "
                      "that waits each time *it* is called (a timer calls it after every measured call).")
        checks.expect(callable(_fn), f"device_sync({_name!r}) should return a function, but it returned "
                                     f"{checks.describe(_fn)}.")
        _fn()
        _fn()
        checks.expect(len(_seen) == 2,
                      f"Calling the function device_sync({_name!r}) returned twice called torch.cuda.synchronize "
                      f"{len(_seen)} times: it should synchronise once per call.")
        _want = torch.device(_name)
        _said = [_d if isinstance(_d, (int, type(None))) else torch.device(_d) for _d in _seen]
        _wrong = [_d for _d in _said if not (_d == _want or (type(_d) is int and _d == _want.index))]
        checks.expect(not _wrong,
                      f"device_sync({_name!r}) synchronised {(_wrong or [None])[0]!s} instead of {_want}: pass the "
                      "device to torch.cuda.synchronize, or it waits for the current device, which may be another "
                      "GPU.")
    for _name in ("cpu", torch.device("cpu"), torch.device("meta")):
        _seen.clear()
        _fn = device_sync(_name)
        checks.expect(callable(_fn), f"device_sync({_name!r}) should return a function, but it returned "
                                     f"{checks.describe(_fn)}.")
        _fn()
        checks.expect(_seen == [],
                      f"device_sync({_name!r}) called torch.cuda.synchronize: only a CUDA device has queued work "
                      "to wait for, and on a machine without a GPU that call fails. For other devices, return a "
                      "function that does nothing.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-profiler"
# ## 2 · Where the time goes: the profiler
#
# A timer says *how long*; a profiler says *where*. `torch.profiler` records every operator
# PyTorch runs while it is active, with its duration, its input shapes if you ask, and the
# operators it called in turn:
#
# ```python
# with profile(activities=[ProfilerActivity.CPU]) as prof:   # add ProfilerActivity.CUDA on a GPU
#     with record_function("forward"):                       # a labelled region of your own
#         loss = model(x).sum()
#     loss.backward()
# print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
# ```
#
# `key_averages()` groups the recorded events by name (`aten::mm`, `aten::add`, your
# `"forward"`...) into rows with a `.key` (the name), a `.count` (how many calls) and times.
# Two kinds of time matter: an operator's **total** time includes the operators it called
# (`aten::linear` calls `aten::t` and `aten::addmm`, so its total contains theirs), its
# **self** time does not. Sort by self time to find the operators that do the work; sort by
# total time to find the expensive *calls* in your code. Names starting with `aten::` are
# PyTorch's operators; `record_function` labels, and the profiler's own rows, are not.
#
# Counts are as useful as times, and unlike times they are exact: ten thousand tiny
# `aten::add` calls from a Python loop, or an `aten::copy_` in every step, show up as counts
# before you read a single duration.
#
# ### Exercise 2 · Counting operators
#
# Write `op_counts(fn)`: run `fn()` once under the profiler (CPU activity) and return a dict
# from every operator name that starts with `"aten::"` to the number of times it was called.
# The hidden tests profile functions whose counts they know.
#
# <details><summary>Hint 1</summary>
#
# `prof.key_averages()` is a list of rows; each has `.key` and `.count`. Read it after the
# `with` block has ended.
# </details>

# %% role="answer" grade_id="op-counts"
def op_counts(fn):
    """{aten operator name: number of calls} for one call of fn() under the profiler."""
    ### BEGIN SOLUTION
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {row.key: row.count for row in prof.key_averages() if row.key.startswith("aten::")}
    ### END SOLUTION


# %% role="test" grade_id="test-op-counts-sanity" points=1
_x = torch.ones(3, device=checks.DEVICE)
_counts = op_counts(lambda: _x + 1)
checks.expect(type(_counts) is dict, f"`op_counts` should return a dict, but it returned {checks.describe(_counts)}.")
checks.expect(_counts.get("aten::add") == 1,
              "op_counts(lambda: x + 1) should count one call of 'aten::add'; it found "
              f"{_counts.get('aten::add')!r}. Count the rows of prof.key_averages() by their .key and .count.")
print(_counts)

# %% role="test" grade_id="test-op-counts" points=2
# Hidden tests profile functions with known numbers of matrix products, additions, linear
# layers and labelled regions, and compare the counts.
### BEGIN HIDDEN TESTS
for _k, _j, _m in [(3, 5, 2), (1, 7, 4)]:
    _calls = []
    _a = torch.randn(4, 4, device=checks.DEVICE)
    _layer = nn.Linear(4, 2).to(checks.DEVICE)

    def _work():
        _calls.append(1)
        with record_function("my_region"):
            for _ in range(_k):
                _a @ _a
        for _ in range(_j):
            _a + 1
        for _ in range(_m):
            _layer(_a)

    _counts = op_counts(_work)
    checks.expect(len(_calls) == 1,
                  f"op_counts called fn {len(_calls)} times: profile exactly one call, or every count is off.")
    checks.expect(type(_counts) is dict, f"`op_counts` should return a dict, but it returned {checks.describe(_counts)}.")
    _bad = [str(_key)[:40] for _key in _counts if not (type(_key) is str and _key.startswith("aten::"))]
    checks.expect(not _bad,
                  f"op_counts returned names that are not PyTorch operators, e.g. {(_bad or [''])[0]!r}: keep only "
                  "the rows whose name starts with 'aten::' (record_function labels and the profiler's own rows "
                  "are not operators).")
    for _name, _want in (("aten::matmul", _k), ("aten::add", _j), ("aten::linear", _m)):
        checks.expect(_counts.get(_name) == _want,
                      f"op_counts counted {_counts.get(_name)!r} calls of {_name!r}; the function calls it {_want} "
                      "times. Use the profiler's own counts (row.count of prof.key_averages()): it records every "
                      "operator PyTorch runs, composite ones such as aten::matmul and aten::linear included.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-precision"
# ## 3 · Mixed precision: half the bits where they are not needed
#
# A float32 has 8 bits of exponent (the range, up to about 3·10³⁸) and 23 bits of mantissa
# (the precision, about 7 decimal digits). Two 16-bit formats keep half of that:
#
# | format | exponent bits | mantissa bits | largest value | smallest normal value |
# |---|---|---|---|---|
# | float32 | 8 | 23 | 3.4·10³⁸ | 1.2·10⁻³⁸ |
# | **bfloat16** | 8 | 7 | 3.4·10³⁸ | 1.2·10⁻³⁸ |
# | **float16** | 5 | 10 | 65,504 | 6.1·10⁻⁵ (and down to 6·10⁻⁸ with less precision) |
#
# Half the bytes means half the memory traffic, and modern CPUs and GPUs multiply 16-bit
# matrices several times faster. But not every operation tolerates the rounding: a sum of
# thousands of numbers, a softmax, a loss, a running statistic lose too much. So
# **`torch.autocast`** does not convert the model. Inside
# `with torch.autocast(device_type, dtype=...)`, each operation picks its own precision:
# matrix products and convolutions run in the 16-bit type (their inputs are cast on the fly),
# while reductions, normalisations and losses run in float32. The parameters stay float32 (the
# "master weights"), and so do their gradients: the optimiser updates float32 numbers. Only
# the forward pass and the loss go inside the `with` block; `backward()` comes after it and
# follows the dtypes the forward pass chose.
#
# **bfloat16** keeps float32's range: values do not overflow or vanish, only lose digits. It is
# the choice on CPUs and recent GPUs, and needs nothing more than autocast.
#
# **float16** has more precision but little range: gradients of 10⁻⁸, common deep inside a
# network, round to zero, and the weights they belong to stop learning. The cure is **loss
# scaling**, what `torch.amp.GradScaler` automates:
#
# 1. `scaler.scale(loss).backward()`: multiply the loss by a large factor (say 2¹⁶) before the
#    backward pass, so that every gradient is that many times larger and stays representable;
# 2. `scaler.step(optimizer)`: divide the gradients by the factor again (*unscale*), then step,
#    **unless** some gradient is inf or NaN (the factor was too large): then the step is skipped;
# 3. `scaler.update()`: lower the factor after a skipped step, raise it slowly after a run of
#    good ones.
#
# Anything that reads the gradients between backward and step must see *unscaled* values:
# gradient clipping above all. `scaler.unscale_(optimizer)` does the division early (and
# `scaler.step` then knows not to do it twice), so the order is scale, backward, unscale_,
# clip, step, update.
#
# ### Exercise 3 · Predict, then verify
#
# **Without running anything**, fill in `precision_predictions`. In the code below,
# `layer = nn.Linear(8, 4)` and `x = torch.randn(5, 8)` are float32 on the CPU:
#
# ```python
# target = torch.zeros(5, 4)                        # float32
# with torch.autocast("cpu", dtype=torch.bfloat16):
#     out = layer(x)                                # "out": out.dtype
#     loss = F.mse_loss(out, target)                # "loss": loss.dtype
#     mixed = out + target                          # "mixed": mixed.dtype
# # "weight": layer.weight.dtype, after the block
# loss.backward()                                   # "grad": layer.weight.grad.dtype
# after = layer(x)                                  # "after": after.dtype
# ```
#
# For the keys `"out"`, `"loss"`, `"mixed"`, `"weight"`, `"grad"` and `"after"`, give a torch
# dtype (`torch.float32`, `torch.bfloat16`...). Then four booleans: does
# `torch.tensor(1e-8, dtype=torch.float16)` become exactly zero (`"fp16_tiny_is_zero"`)? And in
# bfloat16 (`"bf16_tiny_is_zero"`)? Does `torch.tensor(70000.0, dtype=torch.float16)` become
# infinite (`"fp16_big_is_inf"`)? And in bfloat16 (`"bf16_big_is_inf"`)?
#
# <details><summary>Hint 1</summary>
#
# Autocast changes what operations compute, never what the parameters are. `out + target`
# adds a bfloat16 and a float32 tensor; addition is not one of the operations autocast changes, so
# PyTorch's usual type promotion decides.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Use the table: which format can hold 70,000 at all, and which one's smallest value is above
# 10⁻⁸?
# </details>

# %% role="answer" grade_id="precision-predictions"
precision_predictions = {
    "out": None,     # a torch dtype
    "loss": None,
    "mixed": None,
    "weight": None,
    "grad": None,
    "after": None,
    "fp16_tiny_is_zero": None,  # True or False
    "bf16_tiny_is_zero": None,
    "fp16_big_is_inf": None,
    "bf16_big_is_inf": None,
}
### BEGIN SOLUTION
precision_predictions = {
    "out": torch.bfloat16,
    "loss": torch.float32,
    "mixed": torch.float32,
    "weight": torch.float32,
    "grad": torch.float32,
    "after": torch.float32,
    "fp16_tiny_is_zero": True,
    "bf16_tiny_is_zero": False,
    "fp16_big_is_inf": True,
    "bf16_big_is_inf": False,
}
### END SOLUTION

# %% role="test" grade_id="test-precision-predictions" points=3
# Hidden tests run the code above and the four conversions, then compare.
checks.expect(isinstance(precision_predictions, dict)
              and set(precision_predictions) == {"out", "loss", "mixed", "weight", "grad", "after",
                                                 "fp16_tiny_is_zero", "bf16_tiny_is_zero", "fp16_big_is_inf",
                                                 "bf16_big_is_inf"},
              "`precision_predictions` should be a dict with exactly the ten keys of the template.")
### BEGIN HIDDEN TESTS
with checks.seeded(0):
    _layer = nn.Linear(8, 4)
    _x = torch.randn(5, 8)
_target = torch.zeros(5, 4)
with torch.autocast("cpu", dtype=torch.bfloat16):
    _out = _layer(_x)
    _loss = F.mse_loss(_out, _target)
    _mixed = _out + _target
_weight = _layer.weight.dtype
_loss.backward()
_truth = {
    "out": (_out.dtype, "Inside autocast a linear layer (a matrix product) runs in the 16-bit type."),
    "loss": (_loss.dtype, "Autocast runs losses in float32: a mean over many numbers loses too much in 16 bits."),
    "mixed": (_mixed.dtype, "Addition is not an operation autocast changes: type promotion picks the wider "
                            "of the two dtypes (see Hint 1)."),
    "weight": (_weight, "Autocast never converts the parameters: they stay float32, the master weights."),
    "grad": (_layer.weight.grad.dtype, "A gradient has the dtype of its parameter."),
    "after": (_layer(_x).dtype, "Outside the with block, autocast is off again: float32 in, float32 out."),
}
for _key, (_dtype, _why) in _truth.items():
    _said = precision_predictions[_key]
    checks.expect(isinstance(_said, torch.dtype),
                  f"Your prediction for {_key!r} should be a torch dtype, such as torch.float32, but it is "
                  f"{checks.describe(_said)}.")
    checks.expect(_said == _dtype, f"Your prediction for {_key!r} is not what PyTorch does. {_why}")
_facts = {
    "fp16_tiny_is_zero": (torch.tensor(1e-8, dtype=torch.float16).item() == 0.0,
                          "float16's smallest positive value is about 6e-8 (see the table)."),
    "bf16_tiny_is_zero": (torch.tensor(1e-8, dtype=torch.bfloat16).item() == 0.0,
                          "bfloat16 has float32's exponent, so its range reaches far below 1e-8."),
    "fp16_big_is_inf": (torch.tensor(70000.0, dtype=torch.float16).isinf().item(),
                        "float16's largest value is 65,504."),
    "bf16_big_is_inf": (torch.tensor(70000.0, dtype=torch.bfloat16).isinf().item(),
                        "bfloat16 has float32's range; it only keeps fewer digits."),
}
for _key, (_truth_value, _why) in _facts.items():
    _said = precision_predictions[_key]
    checks.expect(type(_said) is bool, f"Your prediction for {_key!r} should be True or False, but it is "
                                       f"{checks.describe(_said)}.")
    checks.expect(_said == _truth_value, f"Your prediction for {_key!r} is not what PyTorch does. {_why}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-amp"
# ### Exercise 4 · A mixed-precision training step
#
# Write `amp_step(model, optimizer, loss_fn, x, y, dtype, scaler=None, max_norm=None)`: one
# training step (zero the gradients, forward, loss, backward, step) with the forward pass and
# the loss under `torch.autocast` for the device `x` lives on, in `dtype`. Return the loss as a
# Python float.
#
# - `scaler=None` (bfloat16): a plain backward and step.
# - `scaler` given (float16 on a GPU): scale the loss, let the scaler step and update.
# - `max_norm` given: clip the gradients' total norm to `max_norm` with
#   `torch.nn.utils.clip_grad_norm_` before the step, with or without a scaler; with one, clip
#   the *true* gradients, not the scaled ones.
#
# The hidden tests check the dtypes inside your forward pass, compare your steps with
# float32 references, and give your step a `GradScaler` together with gradients that overflow.
# They use both 16-bit types; with a scaler, float16. On a GPU they use a CUDA scaler, on the
# CPU a `GradScaler("cpu")`: the CPU has float16 autocast and a scaler too, which is how the
# scaler's logic is tested here without a GPU.
#
# <details><summary>Hint 1</summary>
#
# `x.device.type` is `"cpu"` or `"cuda"`: what `torch.autocast` wants as `device_type`. Never
# write the device down.
# </details>
#
# <details><summary>Hint 2</summary>
#
# With a scaler: `scaler.scale(loss).backward()`, then (only when clipping)
# `scaler.unscale_(optimizer)` and the clipping, then `scaler.step(optimizer)` and
# `scaler.update()`. `optimizer.step()` called directly would apply scaled gradients, and
# would not skip a step whose gradients overflowed.
# </details>

# %% role="answer" grade_id="amp-step"
def amp_step(model, optimizer, loss_fn, x, y, dtype, scaler=None, max_norm=None):
    """One mixed-precision training step; returns the loss as a float."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        loss = loss_fn(model(x), y)
    if scaler is None:
        loss.backward()
        if max_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        if max_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        scaler.step(optimizer)
        scaler.update()
    return loss.item()
    ### END SOLUTION


# %% role="test" grade_id="test-amp-sanity" points=1
with checks.seeded(0):
    _model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)).to(checks.DEVICE)
    _x, _y = torch.randn(32, 6, device=checks.DEVICE), torch.randn(32, 1, device=checks.DEVICE)
_before = [_p.detach().clone() for _p in _model.parameters()]
_opt = torch.optim.SGD(_model.parameters(), lr=0.1)
_loss = amp_step(_model, _opt, F.mse_loss, _x, _y, torch.bfloat16)
checks.expect(type(_loss) is float, f"`amp_step` should return the loss as a Python float; it returned "
                                    f"{checks.describe(_loss)}. Use loss.item().")
checks.expect(any(not torch.equal(_b, _p) for _b, _p in zip(_before, _model.parameters())),
              "After amp_step the parameters are unchanged: the step did not update the model.")
print(f"one bfloat16 step, loss {_loss:.4f}")

# %% role="test" grade_id="test-amp-autocast" points=2
# Hidden tests watch the dtypes inside the forward pass, check the parameters stay float32,
# and compare a step (with and without clipping) with a reference step.
### BEGIN HIDDEN TESTS
_dtypes = [torch.float16]
if checks.DEVICE.type == "cpu" or torch.cuda.is_bf16_supported():
    _dtypes.insert(0, torch.bfloat16)


class _Probe(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
        self.seen = []

    def forward(self, x):
        out = self.inner(x)
        self.seen.append((torch.is_autocast_enabled(x.device.type), out.dtype))
        return out


def _reference_step(model, x, y, dtype, max_norm):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        loss = F.mse_loss(model(x), y)
    loss.backward()
    if max_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    opt.step()
    return loss.item()


for _dtype, _max_norm in [(_dtypes[0], None), (_dtypes[-1], None), (_dtypes[0], 0.05)]:
    with checks.seeded(4):
        _model = _Probe().to(checks.DEVICE)
        _x, _y = torch.randn(24, 6, device=checks.DEVICE), torch.randn(24, 1, device=checks.DEVICE)
    _ref = copy.deepcopy(_model)
    _ref_loss = _reference_step(_ref, _x, _y, _dtype, _max_norm)
    _opt = torch.optim.SGD(_model.parameters(), lr=0.05)
    for _p in _model.parameters():
        _p.grad = torch.ones_like(_p)  # left over from an earlier step
    _loss = amp_step(_model, _opt, F.mse_loss, _x, _y, _dtype, max_norm=_max_norm)
    checks.expect(len(_model.seen) == 1,
                  f"amp_step ran the model's forward {len(_model.seen)} times; one step has one forward pass.")
    _enabled, _out_dtype = _model.seen[0]
    checks.expect(_enabled,
                  f"The forward pass ran with autocast off for the device the data is on ({checks.DEVICE.type}). "
                  "Run the forward pass and the loss inside torch.autocast(device_type=x.device.type, "
                  "dtype=dtype): the device type comes from the data, never written down (see Hint 1).")
    checks.expect(_out_dtype == _dtype,
                  f"Inside your autocast the model's output was {_out_dtype}, not {_dtype}: pass the dtype "
                  "amp_step was given to torch.autocast.")
    checks.expect(all(_p.dtype == torch.float32 for _p in _model.parameters()),
                  "After amp_step some parameters are no longer float32: the model was converted to 16 bits. "
                  "Autocast casts inside each operation and leaves the parameters (the master weights) float32; "
                  "never call .half() or .to(bfloat16) on the model.")
    checks.expect_close(_loss, _ref_loss, "The loss amp_step returned", rtol=1e-3, atol=1e-4,
                        why="Return the loss of this step's forward pass, as a float.")
    for (_name, _p), _q in zip(_model.named_parameters(), _ref.parameters()):
        checks.expect_close(_p, _q, f"Parameter {_name} after amp_step" +
                            (f" with max_norm={_max_norm}" if _max_norm else ""), rtol=1e-3, atol=1e-4,
                            why="Compared with one reference step: zero_grad first (the test left old gradients "
                                "in .grad), forward and loss under autocast, backward, then clip_grad_norm_ "
                                "with max_norm when it is given, then step.")
### END HIDDEN TESTS

# %% role="test" grade_id="test-amp-scaler" points=3
# Hidden tests give amp_step a GradScaler with float16: steps must match unscaled references
# (clipping included), a step whose gradients overflow must be skipped, and the scale updated.
### BEGIN HIDDEN TESTS
_dtype = torch.float16


def _fresh(seed):
    with checks.seeded(seed):
        _m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)).to(checks.DEVICE)
        _xx, _yy = torch.randn(24, 6, device=checks.DEVICE), torch.randn(24, 1, device=checks.DEVICE)
    return _m, _xx, _yy


for _max_norm in (None, 0.05):
    _model, _x, _y = _fresh(5)
    _ref = copy.deepcopy(_model)
    _ref_opt = torch.optim.SGD(_ref.parameters(), lr=0.05)
    with torch.autocast(device_type=checks.DEVICE.type, dtype=_dtype):
        _ref_loss = F.mse_loss(_ref(_x), _y)
    _ref_loss.backward()
    if _max_norm is not None:
        nn.utils.clip_grad_norm_(_ref.parameters(), _max_norm)
    _ref_opt.step()
    _scaler = torch.amp.GradScaler(checks.DEVICE.type, init_scale=2.0 ** 12, growth_interval=1)
    _opt = torch.optim.SGD(_model.parameters(), lr=0.05)
    _clip = f" with max_norm={_max_norm}" if _max_norm else ""
    try:
        amp_step(_model, _opt, F.mse_loss, _x, _y, _dtype, scaler=_scaler, max_norm=_max_norm)
    except (AssertionError, RuntimeError) as _err:
        checks.expect(False, f"amp_step with a GradScaler{_clip} failed inside the scaler: {type(_err).__name__}: "
                             f"{str(_err)[:200]} The scaler's calls go in one order: scaler.scale(loss).backward(), "
                             "then (when clipping) scaler.unscale_(optimizer) and the clipping, then "
                             "scaler.step(optimizer) and scaler.update() (see Hint 2).")
    for (_name, _p), _q in zip(_model.named_parameters(), _ref.parameters()):
        checks.expect(torch.isfinite(_p).all().item(),
                      f"After amp_step with a scaler{_clip}, parameter {_name} holds inf or NaN.")
        checks.expect_close(_p, _q, f"Parameter {_name} after amp_step with a GradScaler{_clip}",
                            rtol=1e-3, atol=1e-5,
                            why="With loss scaling the update must equal the unscaled one: scale the loss "
                                "before backward (scaler.scale(loss).backward()), let scaler.step(optimizer) "
                                "unscale and step, and when clipping, call scaler.unscale_(optimizer) before "
                                "clip_grad_norm_, so that the true gradients are clipped, not the scaled ones "
                                "(see Hint 2).")
    checks.expect(_scaler.get_scale() == 2.0 ** 13,
                  "After a step with finite gradients the scaler's scale did not grow (this scaler grows it "
                  "after every good step): scaler.update() was not called after scaler.step(optimizer).")
# A step whose loss is infinite: its gradients overflow, so the step must be skipped.
_model, _x, _y = _fresh(6)
_y[0, 0] = float("inf")
_before = [_p.detach().clone() for _p in _model.parameters()]
_scaler = torch.amp.GradScaler(checks.DEVICE.type, init_scale=2.0 ** 12)
_opt = torch.optim.SGD(_model.parameters(), lr=0.05)
amp_step(_model, _opt, F.mse_loss, _x, _y, _dtype, scaler=_scaler)
checks.expect(all(torch.equal(_b, _p) for _b, _p in zip(_before, _model.parameters())),
              "A step whose gradients were inf or NaN changed the parameters (they now hold inf or NaN). With a "
              "scaler, step through scaler.step(optimizer): it checks the gradients and skips the step when they "
              "overflowed; optimizer.step() called directly does not.")
checks.expect(_scaler.get_scale() == 2.0 ** 11,
              "After a step whose gradients overflowed, the scaler's scale was not lowered: call scaler.update() "
              "after every scaler.step(optimizer), so the next steps use a smaller factor.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-accumulation"
# ## 4 · Gradient accumulation: a large batch in small pieces
#
# A batch of 512 may be what the recipe asks for while only 64 examples fit in memory at
# once. Gradients are sums, and `.grad` accumulates (03), so a large batch can be processed
# in **micro-batches**: forward and backward each piece, let the gradients add up in `.grad`,
# and step once at the end. Done right, the step is *the same step* as on the whole batch.
#
# "Done right" is about the loss's reduction. A mean-reduced loss over the whole batch of `N`
# examples is `(1/N) Σ ℓᵢ`. A micro-batch of `n` examples gives the mean over *its* examples,
# `(1/n) Σ ℓᵢ`; to add up to the whole-batch mean, each micro-batch's loss must be weighted by
# `n / N` before its backward pass. When all micro-batches have the same size that is
# `1 / (number of micro-batches)`, the rule you often see; when the last one is smaller, only
# `n / N` is right. Forget the weighting and the gradient is several times too large:
# effectively a larger learning rate.
#
# The rest is the loop of 05 with the step moved: zero the gradients once before the first
# micro-batch, step once after the last. A `zero_grad` between micro-batches throws the
# earlier ones away; a `step` after each is small-batch training with extra steps.
#
# (Accumulation matches the large batch exactly for models whose examples do not interact.
# Batch normalisation computes its statistics per forward pass, so with it the micro-batches
# are not quite the large batch.)
#
# ### Exercise 5 · `accumulated_step`
#
# Write `accumulated_step(model, optimizer, loss_fn, x, y, micro_batch)`: one optimiser step
# on the batch `(x, y)`, computed in consecutive micro-batches of at most `micro_batch`
# examples (the last may be smaller), with `loss_fn` mean-reduced. Return the loss of the
# whole batch (the mean over all its examples) as a float. The hidden tests compare your step
# with one step on the whole batch, with batch sizes that do not divide evenly.
#
# <details><summary>Hint 1</summary>
#
# `for start in range(0, len(x), micro_batch)` and slices `x[start:start + micro_batch]` give
# the micro-batches, the last one included.
# </details>
#
# <details><summary>Hint 2</summary>
#
# Multiply each micro-batch's loss by `len(xb) / len(x)` before `backward()`; the sum of those
# weighted losses is the whole batch's loss.
# </details>

# %% role="answer" grade_id="accumulation"
def accumulated_step(model, optimizer, loss_fn, x, y, micro_batch):
    """One step on (x, y), accumulated over micro-batches of at most micro_batch examples."""
    ### BEGIN SOLUTION
    optimizer.zero_grad()
    total = 0.0
    for start in range(0, len(x), micro_batch):
        xb, yb = x[start:start + micro_batch], y[start:start + micro_batch]
        loss = loss_fn(model(xb), yb) * (len(xb) / len(x))
        loss.backward()
        total += loss.item()
    optimizer.step()
    return total
    ### END SOLUTION


# %% role="test" grade_id="test-accumulation-sanity" points=1
with checks.seeded(0):
    _model = nn.Linear(3, 1).to(checks.DEVICE)
    _x, _y = torch.randn(10, 3, device=checks.DEVICE), torch.randn(10, 1, device=checks.DEVICE)
_loss = accumulated_step(_model, torch.optim.SGD(_model.parameters(), lr=0.1), F.mse_loss, _x, _y, 4)
checks.expect(type(_loss) is float, f"`accumulated_step` should return the loss as a Python float; it returned "
                                    f"{checks.describe(_loss)}.")
print(f"whole-batch loss {_loss:.4f}")

# %% role="test" grade_id="test-accumulation" points=3
# Hidden tests compare your accumulated step with one step on the whole batch (SGD with
# momentum, batch sizes that do not divide evenly, old gradients left in .grad), and watch the
# micro-batch sizes and the order of backward passes and steps.
### BEGIN HIDDEN TESTS
for _n, _micro in [(10, 4), (13, 5), (12, 3), (7, 7)]:
    with checks.seeded(_n):
        _model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(checks.DEVICE)
        _x, _y = torch.randn(_n, 4, device=checks.DEVICE), torch.randn(_n, 2, device=checks.DEVICE)
    _ref = copy.deepcopy(_model)
    _ref_opt = torch.optim.SGD(_ref.parameters(), lr=0.1, momentum=0.9)
    _ref_loss = F.mse_loss(_ref(_x), _y)
    _ref_loss.backward()
    _ref_opt.step()
    _sizes = []
    _hook = _model.register_forward_pre_hook(lambda _m, _inp: _sizes.append(len(_inp[0])))
    _opt = torch.optim.SGD(_model.parameters(), lr=0.1, momentum=0.9)
    for _p in _model.parameters():
        _p.grad = torch.full_like(_p, 0.5)  # left over from an earlier step
    try:
        with checks.TrainingSpy(_model, _opt) as _spy:
            _loss = accumulated_step(_model, _opt, F.mse_loss, _x, _y, _micro)
    finally:
        _hook.remove()
    _chunks = -(-_n // _micro)
    checks.expect(sum(_sizes) == _n,
                  f"For a batch of {_n} with micro_batch={_micro}, the forward passes saw {sum(_sizes)} examples in "
                  f"all (micro-batches of {_sizes}): every example must be used exactly once, the smaller last "
                  "micro-batch included (see Hint 1).")
    checks.expect(max(_sizes) <= _micro,
                  f"For micro_batch={_micro} a forward pass saw {max(_sizes)} examples at once: the point of "
                  "accumulation is that no forward pass holds more than one micro-batch in memory.")
    _spy.check_loop(steps=1, accumulate=_chunks, name="`accumulated_step`")
    for (_name, _p), _q in zip(_model.named_parameters(), _ref.parameters()):
        checks.expect_close(_p, _q, f"Parameter {_name} after accumulated_step (batch {_n}, micro_batch {_micro})",
                            rtol=1e-4, atol=1e-6,
                            why="The accumulated step must equal one step on the whole batch. Weight each "
                                "micro-batch's mean loss by len(xb) / len(x) before backward (not by 1 / the number "
                                "of micro-batches, which is wrong when the last one is smaller), zero the gradients "
                                "once before the first micro-batch, and step once after the last (see Hint 2).")
    checks.expect_close(_loss, _ref_loss.item(), f"The loss accumulated_step returned (batch {_n}, micro_batch "
                        f"{_micro})", rtol=1e-4, atol=1e-6,
                        why="Return the whole batch's mean loss: the sum of the micro-batch losses, each weighted "
                            "by its share of the batch.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-checkpoint"
# ## 5 · Activation checkpointing: compute twice, store once
#
# During the forward pass autograd keeps what each operation needs for its backward: the input
# of every linear layer, the output of every tanh, the mask of every dropout. For a deep
# network on a large batch those **saved activations**, not the parameters, fill the memory,
# and they all stay alive until backward reaches them.
#
# **Activation checkpointing** keeps only the *input* of each checkpointed block and throws
# its inner activations away. When backward reaches the block, it runs the block's forward
# again, from the saved input, to get them back, then backpropagates through it. Memory for
# activations drops from "every layer" to "every block boundary"; the price is a second forward
# pass of each block, roughly a third more compute.
#
# ```python
# from torch.utils.checkpoint import checkpoint
# h = checkpoint(block, h, use_reentrant=False)   # instead of h = block(h)
# ```
#
# The gradients must come out *exactly* as without checkpointing, which takes two cares:
#
# - **Randomness.** If the block has dropout, the recomputation must drop the same units as
#   the first pass, or the gradients belong to a different network. `checkpoint` saves the
#   random number generator's state and restores it for the recomputation
#   (`preserve_rng_state=True`, the default); turning that off is only for blocks without
#   randomness.
# - **`use_reentrant=False`**. The older implementation (`use_reentrant=True`) only produces
#   gradients when an *input* of the block requires grad: given plain data, the first block's
#   parameters silently get none. The newer one has no such rule. Always pass it explicitly.
#
# ### Exercise 6 · `checkpointed_forward`
#
# Write `checkpointed_forward(blocks, x)`: run `x` through the modules of `blocks` (a list or
# `nn.ModuleList`) one after the other, each block under activation checkpointing, and return
# the output. The hidden tests compare outputs and every gradient with the plain forward pass
# (blocks with dropout included), count how many times each block runs, and measure the
# activations autograd saves.
#
# <details><summary>Hint 1</summary>
#
# A loop over the blocks, `x = checkpoint(block, x, use_reentrant=False)`. Leave
# `preserve_rng_state` at its default.
# </details>

# %% role="answer" grade_id="checkpointing"
def checkpointed_forward(blocks, x):
    """x through every block of `blocks` in turn, each one under activation checkpointing."""
    ### BEGIN SOLUTION
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False)
    return x
    ### END SOLUTION


# %% role="test" grade_id="test-checkpoint-sanity" points=1
with checks.seeded(0):
    _blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3)]).to(checks.DEVICE)
    _x = torch.randn(4, 8, device=checks.DEVICE)
_out = checkpointed_forward(_blocks, _x)
_plain = _x
for _b in _blocks:
    _plain = _b(_plain)
checks.expect_tensor(_out, "checkpointed_forward(blocks, x)", shape=(4, 8))
checks.expect_close(_out, _plain, "checkpointed_forward's output", rtol=1e-5, atol=1e-6,
                    why="Checkpointing changes what is stored, not what is computed: the output equals the plain "
                        "forward pass through the blocks, in order.")
print("output", tuple(_out.shape), "as without checkpointing")


# %% role="test" grade_id="test-checkpointing" points=3
# Hidden tests compare outputs and gradients (input and every parameter) with the plain
# forward pass, on blocks with dropout, with inputs that do and do not require grad; they count
# each block's forward passes and the bytes of activations autograd keeps.
### BEGIN HIDDEN TESTS
def _make_blocks(seed):
    with checks.seeded(seed):
        return nn.ModuleList([nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Dropout(0.3), nn.Linear(64, 16),
                                            nn.Tanh()) for _ in range(3)]).to(checks.DEVICE)


def _saved_bytes(fn):
    _total = [0]

    def _pack(t):
        _total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(_pack, lambda t: t):
        _result = fn()
    return _result, _total[0]


for _input_grad in (True, False):
    _plain_blocks, _blocks = _make_blocks(7), _make_blocks(7)
    with checks.seeded(8):
        _x = torch.randn(32, 16, device=checks.DEVICE)
    _xa, _xb = _x.clone().requires_grad_(_input_grad), _x.clone().requires_grad_(_input_grad)

    def _plain_fn():
        _h = _xa
        for _b in _plain_blocks:
            _h = _b(_h)
        return _h

    with checks.seeded(9):
        _ref, _ref_bytes = _saved_bytes(_plain_fn)
    _ref.square().sum().backward()
    _runs = [0] * len(_blocks)
    # a pre-hook: the recomputation may stop as soon as it has what backward needs
    _hooks = [_b.register_forward_pre_hook(lambda _m, _i, _k=_k: _runs.__setitem__(_k, _runs[_k] + 1))
              for _k, _b in enumerate(_blocks)]
    try:
        with checks.seeded(9):
            _out, _bytes = _saved_bytes(lambda: checkpointed_forward(_blocks, _xb))
        checks.expect_tensor(_out, "checkpointed_forward's output", shape=tuple(_ref.shape))
        _forward_runs = list(_runs)
        checks.expect_close(_out, _ref, "checkpointed_forward's output on blocks with dropout", rtol=1e-5, atol=1e-6,
                            why="The output must equal the plain forward pass through the blocks, in order, "
                                "with the same random dropout masks.")
        checks.expect(_out.requires_grad,
                      "checkpointed_forward's output does not require grad, though the blocks have parameters that "
                      "do: it is cut off from the graph, so backward cannot reach any parameter. The older checkpoint "
                      "(use_reentrant=True, still the default when use_reentrant is not given) does this when no "
                      "input of a block requires grad: use use_reentrant=False. And checkpointing recomputes the "
                      "graph in backward: it does not run the blocks under torch.no_grad() or detach their outputs.")
        _out.square().sum().backward()
    finally:
        for _h in _hooks:
            _h.remove()
    for _k, _b in enumerate(_blocks):
        for _name, _p in _b.named_parameters():
            checks.expect(_p.grad is not None,
                          f"After backward, parameter {_name} of block {_k} has no gradient" +
                          (" (the input did not require grad)" if not _input_grad else "") + ": the block is cut "
                          "off from the output. The older checkpoint (use_reentrant=True) produces gradients only "
                          "when an input of the block requires grad; use use_reentrant=False. Nothing in the "
                          "forward pass may run under torch.no_grad() or detach the activations either.")
    checks.expect(_forward_runs == [1] * len(_blocks),
                  f"During the forward pass the blocks ran {_forward_runs} times; each should run once.")
    checks.expect(_runs == [2] * len(_blocks),
                  f"Over forward and backward the blocks ran {_runs} times. With checkpointing each block runs "
                  "twice: once in the forward pass, and once more in backward to recompute its activations. A "
                  "block that ran only once was not checkpointed (see Hint 1).")
    checks.expect(_bytes < 0.5 * _ref_bytes,
                  f"Autograd kept {_bytes} bytes of activations for checkpointed_forward, against {_ref_bytes} for "
                  "the plain forward pass: checkpointing should keep only each block's input.")
    for _k, (_b, _pb) in enumerate(zip(_blocks, _plain_blocks)):
        for (_name, _p), _q in zip(_b.named_parameters(), _pb.parameters()):
            checks.expect_close(_p.grad, _q.grad, f"The gradient of parameter {_name} of block {_k}", rtol=1e-4,
                                atol=1e-6,
                                why="Checkpointing must leave every gradient as it was. With dropout, the "
                                    "recomputation must draw the same masks: keep preserve_rng_state=True (the "
                                    "default).")
    if _input_grad:
        checks.expect(_xb.grad is not None, "After backward the input x has no gradient, though it requires grad: "
                                            "the blocks' outputs must stay connected to x.")
        checks.expect_close(_xb.grad, _xa.grad, "The gradient of the input x", rtol=1e-4, atol=1e-6,
                            why="Checkpointing must leave every gradient as it was.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-compile"
# ## 6 · `torch.compile`: graphs, graph breaks and recompilation
#
# Run eagerly, every PyTorch operation is a separate call: Python asks for `tanh`, PyTorch
# launches one kernel that reads the whole tensor from memory and writes the result back, then
# Python asks for the next. `torch.compile(fn)` watches `fn` run once and turns it into a
# **graph** of operations (that part is *TorchDynamo*, which reads the function's Python
# bytecode), then hands the graph to a **backend** that optimises it as a whole. The default
# backend, *Inductor*, fuses chains of element-wise operations into a single loop, generated as
# C++ for the CPU (so it needs a C compiler) or as Triton for the GPU. The compiled function
# gives the same results as `fn`, up to rounding.
#
# Three things decide whether that pays off:
#
# - **Graph breaks.** Dynamo stops the graph where it meets something it cannot put in one:
#   a Python `if` on the *value* of a tensor, `.item()` or `.tolist()` (a tensor turned into a
#   Python number), `print`, a call into a library it does not know. It runs that piece in
#   plain Python and starts a new graph after it. Each break splits what could be fused, and
#   adds a trip back into Python. `torch._dynamo.explain(fn)(*args)` reports the graphs, the
#   breaks and why. The cure is to keep decisions inside the tensor world: `torch.where`
#   instead of `if`, tensors instead of Python numbers.
# - **Guards and recompilation.** A compiled graph is only valid for inputs like the ones it
#   was traced with. Dynamo records *guards* (shapes, dtypes, devices, the values of Python
#   numbers it used) and checks them on every call; when one fails, it compiles again. On the
#   first shape change it recompiles with *dynamic* shapes, a graph that works for any size,
#   so further sizes reuse it. A new dtype always means a new graph.
# - **Compile time.** The first call compiles, which takes seconds; the savings come per call
#   afterwards. Compile what runs many times, and warm up before you time it (section 1).
#
# ### Exercise 7 · Fix a broken snippet: remove the graph breaks
#
# The next cell holds `soft_clip_broken(x, limit)`: it scales `x` down so that its largest
# magnitude is at most `limit` (when it is already within the limit, nothing changes), then
# squashes it with a scaled `tanh`. It is correct, and it breaks the graph more than once, as
# `explain` shows. Write `soft_clip(x, limit)` in the answer cell: the same results, **no graph
# break, one graph**. `limit` is a Python float; `x` is a tensor on any device.
#
# <details><summary>Hint 1</summary>
#
# Read the break reasons the cell prints. Which lines turn a tensor into Python, or ask Python
# to decide something about a tensor's value?
# </details>
#
# <details><summary>Hint 2</summary>
#
# Keep the peak as a 0-dimensional tensor (`x.abs().amax()`), and compute the factor with
# `torch.where(peak > limit, limit / peak, 1.0)` (or with `torch.clamp`); multiply by it
# unconditionally.
# </details>

# %% role="locked" grade_id="compile-broken"
def soft_clip_broken(x, limit):
    peak = x.abs().max().item()  # a Python float
    if peak > limit:
        x = x * (limit / peak)
    print(f"peak {peak:.3f}")
    return torch.tanh(x / limit) * limit


torch._dynamo.reset()
_explained = torch._dynamo.explain(soft_clip_broken)(torch.randn(100) * 5, 2.0)
print(f"graphs: {_explained.graph_count}, graph breaks: {_explained.graph_break_count}")
for _reason in _explained.break_reasons:
    print(" -", _reason.reason.splitlines()[0][:150])


# %% role="answer" grade_id="soft-clip"
def soft_clip(x, limit):
    """soft_clip_broken's results, with no graph break."""
    ### BEGIN SOLUTION
    peak = x.abs().amax()
    factor = torch.where(peak > limit, limit / peak, torch.ones_like(peak))
    return torch.tanh(x * factor / limit) * limit
    ### END SOLUTION


# %% role="test" grade_id="test-soft-clip-sanity" points=1
_x = torch.randn(50, device=checks.DEVICE) * 4
_out = soft_clip(_x, 2.0)
checks.expect_tensor(_out, "soft_clip(x, 2.0) for x of shape (50,)", shape=(50,), dtype=torch.float32)
print(f"largest magnitude in: {_x.abs().max().item():.2f}, out: {_out.abs().max().item():.2f}")


# %% role="test" grade_id="test-soft-clip" points=3
# Hidden tests compare soft_clip with soft_clip_broken on fresh inputs above and below the
# limit, and ask torch._dynamo.explain for its graphs and graph breaks.
### BEGIN HIDDEN TESTS
def _reference(x, limit):
    peak = x.abs().max().item()
    if peak > limit:
        x = x * (limit / peak)
    return torch.tanh(x / limit) * limit


with checks.seeded(11):
    _cases = [(torch.randn(40, device=checks.DEVICE) * 6, 1.5), (torch.randn(3, 7, device=checks.DEVICE) * 0.1, 2.0),
              (-torch.rand(30, device=checks.DEVICE) * 9 - 1, 3.0), (torch.randn(64, device=checks.DEVICE), 0.5)]
for _x, _limit in _cases:
    _got = soft_clip(_x.clone(), _limit)
    checks.expect_close(_got, _reference(_x, _limit), f"soft_clip(x, {_limit}) for x of shape {tuple(_x.shape)}",
                        rtol=1e-5, atol=1e-6,
                        why="It must give soft_clip_broken's results: scale x by limit / peak only when the peak "
                            "magnitude (the largest absolute value, negative values included) exceeds the limit, "
                            "then apply torch.tanh(x / limit) * limit.")
for _x, _limit in _cases[:2]:
    torch._dynamo.reset()
    _explained = torch._dynamo.explain(soft_clip)(_x, _limit)
    _why = "; ".join(_r.reason.splitlines()[0][:120] for _r in _explained.break_reasons)
    checks.expect(_explained.graph_break_count == 0,
                  f"torch.compile breaks soft_clip's graph {_explained.graph_break_count} time(s): {_why}. Keep the "
                  "peak as a tensor and decide with torch.where, not with Python (see Hint 2).")
    checks.expect(_explained.graph_count == 1 and sum(len(_ops) for _ops in _explained.ops_per_graph) > 0,
                  f"torch.compile found {_explained.graph_count} graph(s) with operations in soft_clip; it should "
                  "capture the whole function in one graph. Do not hide the function from the compiler.")
torch._dynamo.reset()
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-recompile"
# ### Exercise 8 · Predict, then verify: when does it compile again?
#
# A backend is any function that receives the captured graph; the one below only counts
# graphs and runs them as they are, so it shows exactly when Dynamo compiles:
#
# ```python
# compiled = []
# def counting_backend(graph_module, example_inputs):
#     compiled.append(graph_module)
#     return graph_module.forward
#
# torch._dynamo.reset()
# f = torch.compile(lambda x: torch.relu(x) * 2, backend=counting_backend)
# f(torch.randn(4))                          # "first":  len(compiled) after this call
# f(torch.randn(4))                          # "same":   ... after this one
# f(torch.randn(8))                          # "resized"
# f(torch.randn(16))                         # "resized_again"
# f(torch.randn(16, dtype=torch.float64))    # "new_dtype"
# f(torch.randn(4, 4))                       # "new_rank"
# ```
#
# **Without running anything**, fill in `compile_predictions`: for each key, the number of
# graphs compiled so far (an int).
#
# <details><summary>Hint 1</summary>
#
# A call compiles when no graph compiled so far has guards that this input passes. After the
# first size change, Dynamo compiles a graph for any size of that dimension, but not for any
# dtype, and not for any number of dimensions.
# </details>

# %% role="answer" grade_id="compile-predictions"
compile_predictions = {
    "first": None,  # an int
    "same": None,
    "resized": None,
    "resized_again": None,
    "new_dtype": None,
    "new_rank": None,
}
### BEGIN SOLUTION
compile_predictions = {
    "first": 1,
    "same": 1,
    "resized": 2,
    "resized_again": 2,
    "new_dtype": 3,
    "new_rank": 4,
}
### END SOLUTION

# %% role="test" grade_id="test-compile-predictions" points=2
# Hidden tests run the calls above with the counting backend and compare.
checks.expect(isinstance(compile_predictions, dict)
              and set(compile_predictions) == {"first", "same", "resized", "resized_again", "new_dtype", "new_rank"},
              "`compile_predictions` should be a dict with exactly the keys of the template.")
### BEGIN HIDDEN TESTS
_compiled = []


def _counting_backend(graph_module, example_inputs):
    _compiled.append(graph_module)
    return graph_module.forward


torch._dynamo.reset()
_f = torch.compile(lambda x: torch.relu(x) * 2, backend=_counting_backend)
_truth = {}
for _key, _arg in [("first", torch.randn(4)), ("same", torch.randn(4)), ("resized", torch.randn(8)),
                   ("resized_again", torch.randn(16)), ("new_dtype", torch.randn(16, dtype=torch.float64)),
                   ("new_rank", torch.randn(4, 4))]:
    _f(_arg)
    _truth[_key] = len(_compiled)
torch._dynamo.reset()
_whys = {
    "first": "The first call always compiles.",
    "same": "Same shape, dtype and device: the guards pass and the graph is reused.",
    "resized": "A new size fails the shape guard; Dynamo compiles again, now with a dynamic size.",
    "resized_again": "The dynamic graph compiled after the first size change accepts any size of that dimension.",
    "new_dtype": "A graph is traced for one dtype: a new dtype fails the guards, whatever the sizes.",
    "new_rank": "A dynamic size is still a size of a 1-D tensor: another number of dimensions needs another graph.",
}
for _key, _want in _truth.items():
    _said = compile_predictions[_key]
    checks.expect(type(_said) is int, f"Your prediction for {_key!r} should be an int, but it is "
                                      f"{checks.describe(_said)}.")
    checks.expect(_said == _want, f"Your prediction for {_key!r} is not what PyTorch does. {_whys[_key]}")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-inductor"
# The next cell compiles a small network with the default backend, Inductor, and times it
# against eager execution with your `time_call` (warm-up included: the first call is the one
# that compiles). Inductor generates C++ for the CPU and compiles it, so it needs a C++
# compiler, and the first compilation in a fresh process takes from several seconds to a minute
# on a small machine. That is why the cell skips while your notebook is graded: the grader's
# time is better spent on the tests. Run it yourself. On a single busy core and a network this
# small, expect little or no speed-up (fusion pays on large tensors and long chains of
# element-wise operations); the outputs must agree either way.

# %% role="locked" grade_id="inductor-demo"
import torch._inductor.config as inductor_config

# Trust the CPU's own flags for its vector instructions instead of test-compiling each kind.
inductor_config.cpp.vec_isa_ok = True


def _find_cpp_compiler():
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")


if os.environ.get("NBGRADER_EXECUTION"):
    print("Skipped while grading: Inductor's first compilation takes too long for the grader's time budget.")
elif checks.DEVICE.type == "cpu" and _find_cpp_compiler() is None:
    print("Skipped: Inductor needs a C++ compiler on the CPU (g++ or clang++), and none is on the PATH.")
else:
    try:
        _net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64), nn.LayerNorm(64))
        _net = _net.to(checks.DEVICE).eval()
        _inp = torch.randn(256, 64, device=checks.DEVICE)
        torch._dynamo.reset()
        _fast = torch.compile(_net)
        with torch.no_grad():
            _started = time.perf_counter()
            _same = torch.allclose(_fast(_inp), _net(_inp), rtol=1e-4, atol=1e-5)
            print(f"first call (compiling): {time.perf_counter() - _started:.1f} s; same outputs as eager: {_same}")
            _sync = device_sync(checks.DEVICE)
            _eager_t = time_call(lambda: _net(_inp), warmup=2, repeats=15, sync=_sync)
            _compiled_t = time_call(lambda: _fast(_inp), warmup=2, repeats=15, sync=_sync)
        print(f"eager {_eager_t * 1e3:.2f} ms, compiled {_compiled_t * 1e3:.2f} ms per call")
    except NotImplementedError:
        print("Write time_call and device_sync (exercise 1), then run this cell again.")
    finally:
        torch._dynamo.reset()


# %% [markdown] role="prose" grade_id="md-parallel"
# ## 7 · Data parallelism: two processes, one model
#
# When one processor is not enough, **data parallelism** is the first thing to reach for:
# every process (a *rank*) holds a full copy of the model, takes its own share of each batch
# (a *shard*), and computes gradients on it. Before the optimiser steps, the ranks **average
# their gradients**: an *all-reduce* sums a tensor over all ranks and hands every rank the
# result. Since the loss is a mean and the shards are equal in size, the average of the shard
# gradients *is* the gradient of the whole batch. Every rank then takes the same step from the
# same weights, and the copies stay identical, step after step, without ever sending weights.
# Two processes on half a batch each do exactly what one process does on the whole batch.
#
# `torch.distributed` provides the pieces:
#
# - a **process group**: the ranks that talk to each other.
#   `dist.init_process_group(backend, init_method=..., rank=rank, world_size=world_size)`
#   joins it; every rank must call it, and it waits until all have. The *backend* moves the
#   data: **gloo** works on CPUs (over the network, or the machine's loopback), NCCL between
#   GPUs. The *init_method* is where the ranks meet: `"file://" + path` uses a file all ranks
#   can see; `"env://"` reads an address and port from environment variables (what `torchrun`
#   sets). `dist.destroy_process_group()` leaves the group at the end;
# - **collectives**, which every rank of the group must call, in the same order:
#   `dist.all_reduce(tensor)` replaces `tensor`, in place, by its sum over all ranks;
#   `dist.get_rank()` and `dist.get_world_size()` say who you are;
# - **`nn.parallel.DistributedDataParallel(model)`**, which does the averaging for you during
#   `backward()`, overlapped with the computation, and is what real training uses.
#
# Real jobs start one process per GPU or machine with `torchrun`. In this notebook
# `checks.run_in_processes(fn, world_size, *args)` (the next cell shows it) *forks* the ranks
# from the notebook's process, so each rank starts with a copy of everything the notebook holds,
# and calls `fn(rank, world_size, init_file, *args)` in each; it returns what each rank returned.
# The ranks run on the CPU with gloo, on whatever machine you have.

# %% role="locked" grade_id="parallel-demo"
def _hello(rank, world_size, init_file):
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world_size)
    mine = torch.tensor([float(rank + 1)])
    dist.all_reduce(mine)  # the sum over ranks, on every rank
    dist.destroy_process_group()
    return {"rank": rank, "sum": mine.item()}


print(checks.run_in_processes(_hello, 2))


# %% [markdown] role="prose" grade_id="md-replica"
# ### Exercise 9 · `train_replica`
#
# Write `train_replica(rank, world_size, init_file, model, x, y, steps, lr)`, the function each
# rank runs:
#
# 1. join the gloo process group through `init_file`;
# 2. take this rank's shard of the batch: split `x` and `y` into `world_size` equal parts
#    (the tests use batch sizes that divide evenly), one per rank, every example in exactly one;
# 3. train `model` for `steps` steps of `torch.optim.SGD` with learning rate `lr` on its shard,
#    with `F.mse_loss`, averaging the gradients over all ranks before each step (by hand with
#    `dist.all_reduce`, or by wrapping the model in `DistributedDataParallel`);
# 4. leave the process group and return `model.state_dict()` (of `model` itself, not of a
#    wrapper around it).
#
# The hidden tests run it in two processes and compare both ranks' weights with `steps`
# steps of plain SGD on the whole batch in one process; they also record which examples each
# rank's model saw.
#
# <details><summary>Hint 1</summary>
#
# `x.chunk(world_size)[rank]` is this rank's shard. After `loss.backward()`, for every
# parameter: `dist.all_reduce(p.grad)`, then divide it by `world_size` (all-reduce *sums*).
# </details>
#
# <details><summary>Hint 2</summary>
#
# Put `dist.destroy_process_group()` in a `finally:` block, so that a rank that fails still
# leaves the group.
# </details>

# %% role="answer" grade_id="train-replica"
def train_replica(rank, world_size, init_file, model, x, y, steps, lr):
    """Train model on this rank's shard of (x, y), gradients averaged over ranks; return its state_dict."""
    ### BEGIN SOLUTION
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world_size)
    try:
        x, y = x.chunk(world_size)[rank], y.chunk(world_size)[rank]
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad()
            F.mse_loss(model(x), y).backward()
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= world_size
            optimizer.step()
    finally:
        dist.destroy_process_group()
    return model.state_dict()
    ### END SOLUTION


# %% role="test" grade_id="test-replica-sanity" points=1
with checks.seeded(0):
    _model = nn.Linear(3, 1)
    _x, _y = torch.randn(8, 3), torch.randn(8, 1)
_states = checks.run_in_processes(train_replica, 2, _model, _x, _y, 2, 0.1)
checks.expect(type(_states) is list and len(_states) == 2
              and all(isinstance(_s, dict) and set(_s) == {"weight", "bias"} for _s in _states),
              "Each rank should return model.state_dict(), a dict with the model's own parameter names "
              "('weight' and 'bias' for an nn.Linear). A DistributedDataParallel wrapper's state_dict prefixes "
              "them with 'module.': return the state of the model you were given.")
print("rank 0:", {_k: _v.tolist() for _k, _v in _states[0].items()})
print("rank 1:", {_k: _v.tolist() for _k, _v in _states[1].items()})

# %% role="test" grade_id="test-replica" points=4
# Hidden tests run train_replica in two processes on a fresh model and batch, record the
# examples each rank's model sees, and compare both ranks' weights with plain SGD on the whole
# batch in one process.
### BEGIN HIDDEN TESTS
_n, _steps, _lr = 12, 4, 0.2
with checks.seeded(21):
    _model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    _x, _y = torch.randn(_n, 4), torch.randn(_n, 2)
_x[:, 0] = torch.arange(_n) / 100.0  # each example's number, readable from what the model sees
_ref = copy.deepcopy(_model)
_ref_opt = torch.optim.SGD(_ref.parameters(), lr=_lr)
for _ in range(_steps):
    _ref_opt.zero_grad()
    F.mse_loss(_ref(_x), _y).backward()
    _ref_opt.step()


def _watched(rank, world_size, init_file, model, x, y, steps, lr):
    _seen, _joined = [], []

    def _record(_m, _inp):
        _seen.append(sorted(round(_v * 100) for _v in _inp[0][:, 0].tolist()))
        _joined.append(dist.is_initialized())

    model.register_forward_pre_hook(_record)
    try:
        _state = train_replica(rank, world_size, init_file, model, x, y, steps, lr)
    except Exception as _err:  # reported below, with what the hook saw
        return {"error": f"{type(_err).__name__}: {_err}"[:300], "seen": _seen, "joined": _joined}
    return {"state": _state, "seen": _seen, "joined": _joined}


try:
    _results = checks.run_in_processes(_watched, 2, _model, _x, _y, _steps, _lr)
except (RuntimeError, TimeoutError) as _err:
    checks.expect(False, f"Running train_replica in two processes failed: {_err}")
for _rank, _r in enumerate(_results):
    checks.expect(all(_r["joined"]),
                  f"Rank {_rank} ran its forward passes without having joined a process group, so there is no "
                  "group for the all-reduce to average over. Every rank first calls dist.init_process_group('gloo', "
                  "init_method='file://' + init_file, rank=rank, world_size=world_size).")
    checks.expect("error" not in _r, f"train_replica failed on rank {_rank}: {_r.get('error')}")
_seen = [_r["seen"] for _r in _results]
for _rank in range(2):
    checks.expect(len(_seen[_rank]) == _steps,
                  f"Rank {_rank}'s model ran {len(_seen[_rank])} forward passes for {_steps} steps: one forward pass "
                  "per step, on the rank's whole shard.")
for _step in range(_steps):
    _a, _b = _seen[0][_step], _seen[1][_step]
    checks.expect(len(_a) == len(_b) == _n // 2,
                  f"At step {_step + 1} the two ranks' models saw {len(_a)} and {len(_b)} of the {_n} examples: each "
                  "rank trains on its own shard, 1/world_size of the batch, not on the whole batch.")
    checks.expect(sorted(_a + _b) == list(range(_n)),
                  f"At step {_step + 1} the two ranks' shards overlap or miss examples: split the batch into "
                  "world_size parts so that every example is in exactly one shard (see Hint 1).")
for _rank, _r in enumerate(_results):
    _state = _r["state"]
    checks.expect(isinstance(_state, dict) and set(_state) == set(_ref.state_dict()),
                  f"Rank {_rank} returned a state_dict with keys {sorted(_state)[:4] if isinstance(_state, dict) else '?'}, "
                  "not the model's own parameter names: return model.state_dict() of the model you were given, not "
                  "of a DistributedDataParallel wrapper.")
for _name in _ref.state_dict():
    _w0, _w1 = _results[0]["state"][_name], _results[1]["state"][_name]
    checks.expect(torch.allclose(_w0, _w1, rtol=1e-5, atol=1e-6),
                  f"After training, the two ranks hold different values of {_name}: the replicas drifted apart. Every "
                  "rank must step with the same gradients, the average over all ranks (dist.all_reduce on each "
                  "gradient, or DistributedDataParallel), from the same starting weights.")
    checks.expect_close(_w0, _ref.state_dict()[_name], f"{_name} after {_steps} data-parallel steps", rtol=1e-4,
                        atol=1e-6,
                        why="Two ranks on half the batch each must end with the weights of one process on the whole "
                            "batch. all_reduce sums the gradients over the ranks: divide by world_size to get their "
                            "average, the whole batch's gradient. Zero the gradients every step, and take exactly "
                            "`steps` steps with learning rate `lr`.")
### END HIDDEN TESTS

# %% [markdown] role="prose" grade_id="md-summary"
# ## What you have seen
#
# - Time with a warm-up, a synchronisation before starting and after each call, and the median
#   of repeats; on a GPU, an unsynchronised timing measures the queueing.
# - `torch.profiler` counts and times every operator; self time finds the work, total time the
#   expensive calls.
# - Autocast runs each operation in the precision it tolerates and leaves the weights float32.
#   bfloat16 keeps float32's range; float16 needs a `GradScaler`: scale, backward, unscale_
#   before clipping, step (skipped on overflow), update.
# - Accumulated micro-batches equal the large batch when each micro-batch's loss is weighted
#   by its share of the batch, with one zero_grad and one step.
# - Checkpointing stores block inputs and recomputes the rest in backward: same gradients
#   (RNG state preserved, `use_reentrant=False`), less memory, more compute.
# - `torch.compile` captures graphs; keep data-dependent decisions in tensors to avoid graph
#   breaks, and expect a recompilation for new dtypes, ranks, and the first new size.
# - Data parallelism: equal shards, gradients averaged by all-reduce, identical steps on every
#   rank, the same weights as one process on the whole batch.
#
# Next, in **[15 · Deployment](../15_deployment/15_deployment.ipynb)**, the trained model
# leaves Python: export, ONNX and quantisation.
