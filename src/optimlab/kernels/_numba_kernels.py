"""The fused CPU kernels: one pass over memory per element, numba, multithreaded.

Each kernel updates a whole param group. Tensors arrive as raw addresses
(int64) plus element counts, so a step costs one call per thread however many
tensors there are. The scalars come as rows of a 2-D `hp` array and tensor i
reads row `row[i]`, once per chunk: a param group passes one row (every
`row[i]` = 0); K members of a batched sweep pass a row per member, their
stacked tensors' rows (member k's slice of each) as the tensors, so one copy of
each formula serves both. `plan` cuts the work into chunks of at most `CHUNK`
elements and a kernel call updates chunks [lo, hi), so the caller can hand
equal shares to threads and a few large and many small tensors balance alike.
The kernels release the GIL (`nogil`) and the caller runs them on a thread
pool: `parallel=True`/`prange` compiles 3-4x slower (about 4 s per kernel
and dtype on this machine, against 1 s), which every fresh clone and test
run would pay.

Arithmetic runs in the tensors' dtype (float32 or float64): every scalar
comes in `hp` or a per-tensor array of that dtype. No fastmath: NaN
and Inf propagate exactly as in the reference, and the order of operations
follows ATen's (`addcdiv` is w + (c·a)/b), so float64 results agree with
torch to rounding. error_model="numpy": x/0 gives ±Inf or NaN as in torch;
numba's default raises ZeroDivisionError, and the check it adds for that
stops the loops from vectorizing.

Compiled lazily on first use per dtype and cached on disk (`cache=True`).
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


@njit(inline="always")
def _sgd_plain(W, G, neg_lr, wd, sign):
    """w ← w − η g: its own loop, so no unused buffer aliases W and blocks vectorizing."""
    for j in range(W.size):
        gj = G[j] * sign
        if wd != 0:
            gj = gj + wd * W[j]
        W[j] = W[j] + neg_lr * gj


@njit(nogil=True, cache=True, error_model="numpy")
def sgd(lo, hi, tensor, first, sizes, row, w, g, v, fresh, hp, heavy_ball, nesterov):
    """A row of hp = [−η, μ, 1−τ, λ, sign]; v₁ = g where fresh[i] (torch's first momentum step)."""
    for c in range(lo, hi):
        i, start = tensor[c], first[c]
        h = hp[row[i]]  # this tensor's row of hyperparameters
        neg_lr, mu, one_minus_tau, wd, sign = h[0], h[1], h[2], h[3], h[4]
        n = min(CHUNK, sizes[i] - start)
        W, G = _view(w[i], start, n, h), _view(g[i], start, n, h)
        if not heavy_ball:
            _sgd_plain(W, G, neg_lr, wd, sign)
            continue
        V = _view(v[i], start, n, h)
        is_fresh = fresh[i]
        for j in range(n):
            gj = G[j] * sign
            if wd != 0:
                gj = gj + wd * W[j]
            vj = gj if is_fresh else V[j] * mu + one_minus_tau * gj
            V[j] = vj
            gj = gj + mu * vj if nesterov else vj
            W[j] = W[j] + neg_lr * gj
    return 0


@njit(nogil=True, cache=True, error_model="numpy")
def momentum(lo, hi, tensor, first, sizes, row, w, g, v, hp, nesterov):
    """A row of hp = [−η, β, 1−β, λ, sign]; v ← βv + (1−β)g, w ← w − η v (or Nesterov's
    look-ahead)."""
    for c in range(lo, hi):
        i, start = tensor[c], first[c]
        h = hp[row[i]]  # this tensor's row of hyperparameters
        neg_lr, beta, one_minus_beta, wd, sign = h[0], h[1], h[2], h[3], h[4]
        n = min(CHUNK, sizes[i] - start)
        W, G, V = _view(w[i], start, n, h), _view(g[i], start, n, h), _view(v[i], start, n, h)
        for j in range(n):
            gj = G[j] * sign
            if wd != 0:
                gj = gj + wd * W[j]
            vj = V[j] * beta + one_minus_beta * gj
            V[j] = vj
            d = vj * beta + one_minus_beta * gj if nesterov else vj
            W[j] = W[j] + neg_lr * d
    return 0


@njit(inline="always")
def _rmsprop_loop(W, G, S, M, B, h, centered, heavy_ball):
    """RMSprop on one chunk. The kernel calls it with the flags as constants, one call per
    combination, so each compiles to its own loop without branches: with both tested in
    the loop, LLVM vectorizes none of it (8x slower)."""
    neg_lr, beta, one_minus_beta, eps = h[0], h[1], h[2], h[3]
    wd, mu, sign = h[4], h[5], h[6]
    for j in range(W.size):
        gj = G[j] * sign
        if wd != 0:
            gj = gj + wd * W[j]
        sj = S[j] * beta + one_minus_beta * gj * gj
        S[j] = sj
        if centered:
            mj = M[j] * beta + one_minus_beta * gj
            M[j] = mj
            sj = sj - mj * mj
            if sj < 0:  # √max(s − m², 0): rounding where s ≈ m² (NaN stays NaN)
                sj = eps - eps  # 0 in the dtype (eps is finite): a float64 0.0 would
                # make sj, and the loop after it, float64
        denom = np.sqrt(sj) + eps
        if heavy_ball:
            bj = B[j] * mu + gj / denom
            B[j] = bj
            W[j] = W[j] + neg_lr * bj
        else:
            W[j] = W[j] + neg_lr * gj / denom


@njit(nogil=True, cache=True, error_model="numpy")
def rmsprop(lo, hi, tensor, first, sizes, row, w, g, s, m, b, hp, centered, heavy_ball):
    """A row of hp = [−η, β, 1−β, ε, λ, μ, sign]; m only when centered, b only when
    heavy_ball."""
    for c in range(lo, hi):
        i, start = tensor[c], first[c]
        h = hp[row[i]]  # this tensor's row of hyperparameters
        n = min(CHUNK, sizes[i] - start)
        W, G, S = _view(w[i], start, n, h), _view(g[i], start, n, h), _view(s[i], start, n, h)
        M = _view(m[i], start, n, h) if centered else S
        B = _view(b[i], start, n, h) if heavy_ball else S
        if centered and heavy_ball:
            _rmsprop_loop(W, G, S, M, B, h, True, True)
        elif centered:
            _rmsprop_loop(W, G, S, M, B, h, True, False)
        elif heavy_ball:
            _rmsprop_loop(W, G, S, M, B, h, False, True)
        else:
            _rmsprop_loop(W, G, S, M, B, h, False, False)
    return 0


@njit(nogil=True, cache=True, error_model="numpy")
def adam(lo, hi, tensor, first, sizes, row, w, g, v, s, s_max, step_size, bc2, hp, decoupled,
         amsgrad):
    """A row of hp = [β₁, 1−β₁, β₂, 1−β₂, ε, λ, sign, 1−ηλ]; per tensor −η/(1−β₁ᵗ) and 1−β₂ᵗ."""
    for c in range(lo, hi):
        i, start = tensor[c], first[c]
        h = hp[row[i]]  # this tensor's row of hyperparameters
        beta1, one_minus_beta1, beta2, one_minus_beta2 = h[0], h[1], h[2], h[3]
        eps, wd, sign, decay = h[4], h[5], h[6], h[7]
        n = min(CHUNK, sizes[i] - start)
        W, G = _view(w[i], start, n, h), _view(g[i], start, n, h)
        V, S = _view(v[i], start, n, h), _view(s[i], start, n, h)
        M = _view(s_max[i], start, n, h) if amsgrad else S
        alpha, correction = step_size[i], bc2[i]
        for j in range(n):
            gj, wj = G[j] * sign, W[j]
            if decoupled:
                wj = wj * decay
            elif wd != 0:
                gj = gj + wd * wj
            vj = V[j] * beta1 + one_minus_beta1 * gj
            sj = S[j] * beta2 + one_minus_beta2 * gj * gj
            V[j], S[j] = vj, sj
            if amsgrad and (sj != sj or sj > M[j]):  # torch.maximum: NaN wins
                M[j] = sj
            if amsgrad:
                sj = M[j]
            W[j] = wj + alpha * vj / (np.sqrt(sj / correction) + eps)
    return 0


@njit(nogil=True, cache=True, error_model="numpy")
def adagrad(lo, hi, tensor, first, sizes, row, w, g, s, step_size, hp):
    """A row of hp = [ε, λ, sign]; per tensor −η/(1 + (t−1)·lr_decay); s ← s + g²,
    w ← w − η g/(√s + ε)."""
    for c in range(lo, hi):
        i, start = tensor[c], first[c]
        h = hp[row[i]]  # this tensor's row of hyperparameters
        eps, wd, sign = h[0], h[1], h[2]
        n = min(CHUNK, sizes[i] - start)
        W, G, S = _view(w[i], start, n, h), _view(g[i], start, n, h), _view(s[i], start, n, h)
        alpha = step_size[i]
        for j in range(n):
            gj = G[j] * sign
            if wd != 0:
                gj = gj + wd * W[j]
            sj = S[j] + gj * gj
            S[j] = sj
            W[j] = W[j] + alpha * gj / (np.sqrt(sj) + eps)
    return 0
