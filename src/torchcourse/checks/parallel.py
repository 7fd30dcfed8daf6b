"""Run a function in several processes at once, as the ranks of a `torch.distributed` job.

Notebooks cannot use `torch.multiprocessing.spawn`: spawn starts fresh interpreters that
import the worker function by name, and a function defined in a notebook cell has no module
to be imported from. So the ranks are *forked* from the notebook's process: each starts with
a copy of everything the notebook holds (models, tensors, the worker function itself).

Forking a process that has used CUDA leaves CUDA unusable in the children; the workers run on
the CPU (gloo), whatever device the rest of the notebook uses.
"""
from __future__ import annotations

import gc
import os
import shutil
import signal
import tempfile
import time
from typing import Any, Callable

import torch

_save, _load = torch.save, torch.load  # the helper's own references (see checks/__init__.py)


def run_in_processes(fn: Callable[..., Any], world_size: int, *args: Any, timeout_s: float = 30.0) -> list[Any]:
    """Run `fn(rank, world_size, init_file, *args)` in `world_size` forked processes at once and
    return their results, ordered by rank.

    `init_file` is a fresh path in a private temporary folder, for
    `dist.init_process_group(..., init_method="file://" + init_file)`: the ranks find each other
    through it. Results come back through `torch.save` / `torch.load(weights_only=True)`, so
    they may hold tensors, numbers, strings, lists, tuples and dicts (a `state_dict`), not
    arbitrary objects. If a rank raises, this raises RuntimeError with the rank's error; if the
    ranks have not all finished after `timeout_s` seconds (a collective that not every rank
    calls waits forever), they are killed and this raises TimeoutError."""
    folder = tempfile.mkdtemp(prefix="ranks-")
    init_file = os.path.join(folder, "rendezvous")
    pids: dict[int, int] = {}
    codes: dict[int, int] = {}  # rank -> exit code, once reaped
    try:
        for rank in range(world_size):
            pid = os.fork()
            if pid == 0:  # the rank: never returns
                code = 1
                try:
                    # a collection would touch every object the notebook holds, copying each
                    # memory page the fork shares with the parent; a rank lives for seconds
                    gc.disable()
                    torch.set_num_threads(1)
                    result = fn(rank, world_size, init_file, *args)
                    _save({"result": result}, os.path.join(folder, f"rank{rank}.pt"))
                    code = 0
                except BaseException as err:  # noqa: BLE001  (reported to the parent by file)
                    try:
                        with open(os.path.join(folder, f"rank{rank}.err"), "w") as f:
                            f.write(f"{type(err).__name__}: {err}"[:2000])
                    except BaseException:  # noqa: BLE001
                        pass
                finally:
                    os._exit(code)
            pids[rank] = pid
        deadline = time.monotonic() + timeout_s
        while len(codes) < len(pids) and time.monotonic() < deadline:
            for rank, pid in pids.items():
                if rank not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[rank] = os.waitstatus_to_exitcode(status)
            time.sleep(0.01)
        if len(codes) < len(pids):
            raise TimeoutError(
                f"the {world_size} processes did not all finish within {timeout_s:g} s. A collective operation "
                "(all_reduce, broadcast, barrier) waits until every rank of the group calls it: one that only "
                "some ranks reach, or that they reach a different number of times, waits forever.")
        for rank in range(world_size):
            err = os.path.join(folder, f"rank{rank}.err")
            if os.path.exists(err):
                with open(err) as f:
                    raise RuntimeError(f"rank {rank} of {world_size} failed: {f.read()}")
            if codes[rank] != 0:
                raise RuntimeError(f"rank {rank} of {world_size} ended with exit status {codes[rank]}")
        return [_load(os.path.join(folder, f"rank{rank}.pt"), weights_only=True)["result"]
                for rank in range(world_size)]
    finally:
        for rank, pid in pids.items():
            if rank in codes:
                continue  # reaped: its pid may belong to another process by now
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        shutil.rmtree(folder, ignore_errors=True)
