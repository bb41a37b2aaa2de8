"""What every fused CPU kernel shares: the work plan and raw views of tensors.

The kernels themselves are written from each optimizer's formula (`_numba_formula`).
Each updates a whole param group. Tensors arrive as raw addresses (int64) plus element
counts, so a step costs one call per thread however many tensors there are. The scalars
come as rows of a 2-D `hp` array and tensor i reads row `row[i]`, once per chunk: a param
group passes one row (every `row[i]` = 0); K members of a batched sweep pass a row per
member, their stacked tensors' rows (member k's slice of each) as the tensors, so one
kernel serves both. `plan` cuts the work into chunks of at most `CHUNK` elements and a
kernel call updates chunks [lo, hi), so the caller can hand equal shares to threads and a
few large and many small tensors balance alike. The kernels release the GIL (`nogil`) and
the caller runs them on a thread pool: `parallel=True`/`prange` compiles much slower,
which every fresh clone and test run would pay (docs/performance.md, "Behind the code").

Arithmetic runs in the tensors' dtype (float32 or float64): every scalar comes in `hp` or
a per-tensor array of that dtype. No fastmath: NaN and Inf propagate exactly as in the
reference, and the order of operations is the element's, so float64 results equal the
torch paths'. error_model="numpy": x/0 gives ±Inf or NaN as in torch; numba's default
raises ZeroDivisionError, and the check it adds for that stops the loops from vectorizing.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit
from numba.core import types
from numba.extending import intrinsic

# Elements per work item: large enough that per-chunk setup is noise, small
# enough that 2–64 threads stay busy on a 1M-parameter model.
CHUNK = 16384


@intrinsic
def _address_as_pointer(typingctx, address, like):
    """A tensor's data address as a typed pointer; `like` is a scalar of the element type."""
    ptr_t = types.CPointer(like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr_t))

    return ptr_t(address, like), codegen


@njit(inline="always")
def _view(address, start, n, h):
    """Elements [start, start+n) of the tensor at `address`, typed like the array `h`."""
    return carray(_address_as_pointer(address + start * h.itemsize, h[0]), n)


@njit(cache=True)
def plan(sizes):
    """Work items (tensor index, first element), CHUNK elements each (the last may be short)."""
    count = 0
    for n in sizes:
        count += (n + CHUNK - 1) // CHUNK
    tensor = np.empty(count, np.int64)
    first = np.empty(count, np.int64)
    c = 0
    for i in range(sizes.size):
        for start in range(0, sizes[i], CHUNK):
            tensor[c] = i
            first[c] = start
            c += 1
    return tensor, first
