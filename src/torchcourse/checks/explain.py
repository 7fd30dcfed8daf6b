"""Turn PyTorch's most common runtime errors into explanations that teach.

When a student's code raises inside a test, the grader shows the error and, if one of these
patterns matches, the concept behind it. Students can call `checks.explain(err)` themselves.
"""
from __future__ import annotations

from torchcourse import private_builtins

private_builtins(globals())

import re

# (pattern in the error text, explanation). First match wins; patterns are lower-case.
_EXPLANATIONS: list[tuple[str, str]] = [
    (r"backward through the graph a second time|saved tensors after they have already been freed",
     "The autograd graph is used up by backward(): its saved tensors are freed as soon as the "
     "gradients are computed. To differentiate again, run the forward computation again (PyTorch "
     "records a new graph on every pass); retain_graph=True is rarely what you want."),
    (r"grad can be implicitly created only for scalar outputs",
     "backward() with no argument needs a single number (a scalar), usually the loss. Reduce the "
     "output first (for example with .sum() or .mean()), or pass a gradient of the output's shape."),
    (r"does not require grad and does not have a grad_fn",
     "This tensor is not connected to any tensor that requires grad, so there is nothing to "
     "differentiate. Check for .detach(), .item(), .data, torch.no_grad() or a NumPy round trip "
     "that cut the graph, or for an input created without requires_grad=True."),
    (r"a leaf variable that requires grad is being used in an in-place operation",
     "A tensor you asked gradients for (a leaf with requires_grad=True) cannot be changed in "
     "place while autograd tracks it. Write x = x * 2 instead of x *= 2, or update it inside "
     "torch.no_grad()."),
    (r"modified by an inplace operation",
     "A tensor that autograd saved for the backward pass was changed in place afterwards (its "
     "version counter moved), so the gradient would be wrong. Use an out-of-place operation "
     "(y = y + 1 rather than y += 1, or .clone() before modifying)."),
    (r"found no nvidia driver|torch not compiled with cuda|no cuda gpus are available|cuda driver initialization failed|cuda error: no kernel image",
     "The code asked for a CUDA GPU on a machine that has none. Device-agnostic code never "
     "hard-codes \"cuda\": it picks the device once (cuda if torch.cuda.is_available(), else "
     "cpu) or uses the device it is given, and passes it along."),
    (r"expected all tensors to be on the same device|expected .* to be on .* but got|is on .* but expected .*device|is not on the expected device",
     "Tensors on different devices were combined. A model and its inputs must live on the same "
     "device: move the input with x.to(device), where device is where the model's parameters are."),
    (r"error\(s\) in loading state_dict|size mismatch for |missing key\(s\) in state_dict|unexpected key\(s\) in state_dict",
     "load_state_dict matches tensors by name and needs the same shapes: a missing or unexpected "
     "key means the architecture you rebuilt differs from the one that was saved (or the keys "
     "carry a prefix such as 'module.'); a size mismatch means a layer has a different shape. "
     "Rebuild the same architecture, or load with strict=False and check what it reports."),
    (r"mat1 and mat2 shapes cannot be multiplied|shapes cannot be multiplied",
     "A matrix product got shapes that do not line up: for A @ B the last dimension of A must "
     "equal the first (non-batch) dimension of B. Print the shapes just before the failing line."),
    (r"the size of tensor a .* must match the size of tensor b",
     "Two shapes could not be broadcast together: aligned from the right, each pair of "
     "dimensions must be equal or one of them must be 1."),
    (r"view size is not compatible with input tensor's size and stride",
     "view() needs the tensor's memory to be laid out contiguously; after transpose() or "
     "permute() it is not. Use .reshape() (which copies if it must) or .contiguous().view()."),
    (r"expected scalar type long but found float|expected scalar type long|expected target dtype to be long",
     "Class labels for losses such as CrossEntropyLoss must be int64 (torch.long) class "
     "indices, not floats."),
    (r"found dtype .* but expected|expected scalar type .* but found|mat1 and mat2 must have the same dtype",
     "Two tensors with different dtypes met in one operation. Inputs and weights should share "
     "a floating-point dtype (float32 by default); labels for classification are int64."),
    (r"cannot copy out of meta tensor|tensor.item\(\) cannot be called on meta tensors",
     "Your code tried to read the values of a tensor on the meta device (which has shapes but no "
     "data). The test uses meta tensors to check that your code keeps data on the device it was "
     "given instead of moving it."),
    (r"'nonetype' object has no attribute '(zero_|data|add_|mul_|sub_|copy_|item|clone)'",
     "A parameter's .grad is None until a backward pass fills it (and after "
     "zero_grad(set_to_none=True)). Check `if p.grad is not None` before using it, or clear "
     "gradients by setting .grad to None."),
    (r"save_for_backward can only save variables",
     "ctx.save_for_backward takes tensors only (inputs or outputs of forward). Keep other "
     "values, such as numbers or flags, as attributes on ctx."),
    (r"returned a gradient different than none at position|returned an incorrect number of gradients|expected \d+ gradients? but got",
     "backward must return one gradient per argument of forward, in the same order, with None "
     "for every argument that is not a tensor requiring grad (a number, a flag)."),
    (r"int too large to convert to float|overflowerror",
     "A number grew past the largest float. A loop that keeps multiplying usually means its "
     "stopping condition never becomes true: check it for negative inputs too (compare "
     "magnitudes with abs())."),
    (r"can't call numpy\(\) on tensor that requires grad",
     "A tensor that is part of the autograd graph cannot become a NumPy array directly. Call "
     ".detach() first (and .cpu() if it lives on a GPU), knowing that this ends gradient flow."),
    (r"one of the variables needed for gradient computation has been modified",
     "A tensor that autograd saved for the backward pass was changed in place afterwards. Use "
     "an out-of-place operation or .clone() before modifying."),
]
_COMPILED = [(re.compile(p, re.IGNORECASE), text) for p, text in _EXPLANATIONS]


def explain(error: BaseException | str) -> str | None:
    """The concept behind a PyTorch error, or None when it is not one we recognise."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    for pattern, explanation in _COMPILED:
        if pattern.search(text):
            return explanation
    return None
