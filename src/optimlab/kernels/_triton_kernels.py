"""The fused CUDA kernels, in Triton: one launch per param group, one pass over memory.

A launch covers a whole param group through two tables (built by `triton_cuda`):
- `chunks` (int64, [C, 2], kept on the device while the group's tensors stay):
  per program, the tensor index and the first element of its BLOCK elements;
- `table` (int64, uploaded once per step): the group's hyperparameters, then one
  row per tensor: the data addresses of its tensors (parameter, gradient, state
  buffers), its element count, and its own hyperparameters (Adam's bias corrections,
  SGD's first-step flag). Floats travel as float64 bit patterns.
A program loads its row, turns the addresses into typed pointers
(`int64 → tl.pointer_type`) and updates its block. Addresses as integers work the
same compiled (an `inttoptr`) and in Triton's interpreter (where a pointer is a
host address), so the tests run these kernels on CPU tensors.

Every hyperparameter is read from `table` at run time, so a scheduler changing η
(or the bias corrections changing every step) never recompiles; only the options
that change the program's shape (Nesterov, centered, AMSGrad, the dtype) are
`tl.constexpr`. Arithmetic is float32 whatever the storage dtype (float32, bfloat16,
float16); state is stored in the parameters' dtype, as torch's fused kernels do.

GradScaler: with HAS_SCALE the gradient is divided by `*grad_scale` and written
back unscaled; with HAS_INF a program leaves everything untouched when
`*found_inf != 0` (torch's `_fused_adam_` contract).

A block that lies wholly inside its tensor is loaded without a mask, so that the
compiler can use vector loads; only a tensor's last block is masked. Loaded
addresses carry no alignment the compiler could see: with ALIGNED (every address of
the step 16-byte aligned, checked on the host) the pointers are hinted so.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _chunk(chunks, table, NHP: tl.constexpr, ROW: tl.constexpr, N_AT: tl.constexpr,
           BLOCK: tl.constexpr):
    """This program's tensor row in `table`, its element offsets, and whether it is full."""
    c = tl.program_id(0)
    i = tl.load(chunks + 2 * c)
    start = tl.multiple_of(tl.load(chunks + 2 * c + 1), BLOCK)
    row = table + NHP + i * ROW
    n = tl.load(row + N_AT)
    return row, start + tl.arange(0, BLOCK), start + BLOCK <= n, n


@triton.jit
def _ptr(row, k: tl.constexpr, DTYPE: tl.constexpr, ALIGNED: tl.constexpr):
    """The address at `row + k` as a pointer to DTYPE."""
    p = tl.load(row + k).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        p = tl.multiple_of(p, 16)
    return p


@triton.jit
def _hp(at, k: tl.constexpr):
    """A float hyperparameter stored as float64 bits at `at + k`, as float32."""
    return tl.load(at + k).to(tl.float64, bitcast=True).to(tl.float32)


@triton.jit
def _go(found_inf, HAS_INF: tl.constexpr):
    """False when GradScaler found an Inf/NaN in this step's gradients: skip the update."""
    if HAS_INF:
        return tl.load(found_inf) == 0
    else:
        return True


@triton.jit
def _grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE: tl.constexpr):
    """The gradient in float32, unscaled (and written back so) when GradScaler scaled it."""
    g = tl.load(g_ptr + offs, mask=mask).to(tl.float32)
    if HAS_SCALE:
        g = g / tl.load(grad_scale)
        tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=mask)
    return g * sign


@triton.jit
def _decay(g, w, wd):
    """g + λw; λ = 0 leaves g exactly as it is (even where w is Inf), as the reference does."""
    return tl.where(wd != 0, g + wd * w, g)


# ---- SGD: table = [η, μ, 1−τ, λ, sign]; row = [w, g, v, n, fresh] ------------------------
@triton.jit
def _sgd_block(w_ptr, g_ptr, v_ptr, offs, mask, table, fresh, grad_scale,
               HAS_SCALE: tl.constexpr, HEAVY_BALL: tl.constexpr, NESTEROV: tl.constexpr):
    lr, mu, one_minus_tau = _hp(table, 0), _hp(table, 1), _hp(table, 2)
    wd, sign = _hp(table, 3), _hp(table, 4)
    w = tl.load(w_ptr + offs, mask=mask).to(tl.float32)
    g = _decay(_grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE), w, wd)
    if HEAVY_BALL:
        v = tl.load(v_ptr + offs, mask=mask).to(tl.float32)
        v = tl.where(fresh != 0, g, v * mu + one_minus_tau * g)   # v₁ = g, then μv + (1−τ)g
        tl.store(v_ptr + offs, v.to(v_ptr.dtype.element_ty), mask=mask)
        if NESTEROV:
            g = g + mu * v
        else:
            g = v
    tl.store(w_ptr + offs, (w - lr * g).to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def sgd(chunks, table, grad_scale, found_inf, DTYPE: tl.constexpr, NHP: tl.constexpr,
        ROW: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
        HAS_SCALE: tl.constexpr, HAS_INF: tl.constexpr,
        HEAVY_BALL: tl.constexpr, NESTEROV: tl.constexpr):
    row, offs, full, n = _chunk(chunks, table, NHP, ROW, 3, BLOCK)
    if _go(found_inf, HAS_INF):
        w = _ptr(row, 0, DTYPE, ALIGNED)
        g = _ptr(row, 1, DTYPE, ALIGNED)
        v = _ptr(row, 2, DTYPE, ALIGNED)
        fresh = tl.load(row + 4)
        if full:
            _sgd_block(w, g, v, offs, None, table, fresh, grad_scale, HAS_SCALE, HEAVY_BALL,
                       NESTEROV)
        else:
            _sgd_block(w, g, v, offs, offs < n, table, fresh, grad_scale, HAS_SCALE,
                       HEAVY_BALL, NESTEROV)


# ---- Momentum (EMA): table = [η, β, 1−β, λ, sign]; row = [w, g, v, n] --------------------
@triton.jit
def _momentum_block(w_ptr, g_ptr, v_ptr, offs, mask, table, grad_scale,
                    HAS_SCALE: tl.constexpr, NESTEROV: tl.constexpr):
    lr, beta, one_minus_beta = _hp(table, 0), _hp(table, 1), _hp(table, 2)
    wd, sign = _hp(table, 3), _hp(table, 4)
    w = tl.load(w_ptr + offs, mask=mask).to(tl.float32)
    g = _decay(_grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE), w, wd)
    v = tl.load(v_ptr + offs, mask=mask).to(tl.float32) * beta + one_minus_beta * g
    tl.store(v_ptr + offs, v.to(v_ptr.dtype.element_ty), mask=mask)
    if NESTEROV:
        v = v * beta + one_minus_beta * g
    tl.store(w_ptr + offs, (w - lr * v).to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def momentum(chunks, table, grad_scale, found_inf, DTYPE: tl.constexpr, NHP: tl.constexpr,
             ROW: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
             HAS_SCALE: tl.constexpr, HAS_INF: tl.constexpr, NESTEROV: tl.constexpr):
    row, offs, full, n = _chunk(chunks, table, NHP, ROW, 3, BLOCK)
    if _go(found_inf, HAS_INF):
        w = _ptr(row, 0, DTYPE, ALIGNED)
        g = _ptr(row, 1, DTYPE, ALIGNED)
        v = _ptr(row, 2, DTYPE, ALIGNED)
        if full:
            _momentum_block(w, g, v, offs, None, table, grad_scale, HAS_SCALE, NESTEROV)
        else:
            _momentum_block(w, g, v, offs, offs < n, table, grad_scale, HAS_SCALE, NESTEROV)


# ---- RMSprop: table = [η, β, 1−β, ε, λ, μ, sign]; row = [w, g, s, m, b, n] ---------------
@triton.jit
def _rmsprop_block(w_ptr, g_ptr, s_ptr, m_ptr, b_ptr, offs, mask, table, grad_scale,
                   HAS_SCALE: tl.constexpr, CENTERED: tl.constexpr, HEAVY_BALL: tl.constexpr):
    lr, beta, one_minus_beta, eps = _hp(table, 0), _hp(table, 1), _hp(table, 2), _hp(table, 3)
    wd, mu, sign = _hp(table, 4), _hp(table, 5), _hp(table, 6)
    w = tl.load(w_ptr + offs, mask=mask).to(tl.float32)
    g = _decay(_grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE), w, wd)
    s = tl.load(s_ptr + offs, mask=mask).to(tl.float32) * beta + one_minus_beta * g * g
    tl.store(s_ptr + offs, s.to(s_ptr.dtype.element_ty), mask=mask)
    if CENTERED:
        m = tl.load(m_ptr + offs, mask=mask).to(tl.float32) * beta + one_minus_beta * g
        tl.store(m_ptr + offs, m.to(m_ptr.dtype.element_ty), mask=mask)
        s = s - m * m
        s = tl.where(s < 0, 0.0, s)  # rounding can make s − m² negative; NaN stays NaN
    step = g / (tl.sqrt(s) + eps)
    if HEAVY_BALL:
        step = tl.load(b_ptr + offs, mask=mask).to(tl.float32) * mu + step
        tl.store(b_ptr + offs, step.to(b_ptr.dtype.element_ty), mask=mask)
    tl.store(w_ptr + offs, (w - lr * step).to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def rmsprop(chunks, table, grad_scale, found_inf, DTYPE: tl.constexpr, NHP: tl.constexpr,
            ROW: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
            HAS_SCALE: tl.constexpr, HAS_INF: tl.constexpr,
            CENTERED: tl.constexpr, HEAVY_BALL: tl.constexpr):
    row, offs, full, n = _chunk(chunks, table, NHP, ROW, 5, BLOCK)
    if _go(found_inf, HAS_INF):
        w = _ptr(row, 0, DTYPE, ALIGNED)
        g = _ptr(row, 1, DTYPE, ALIGNED)
        s = _ptr(row, 2, DTYPE, ALIGNED)
        m = _ptr(row, 3, DTYPE, ALIGNED)
        b = _ptr(row, 4, DTYPE, ALIGNED)
        if full:
            _rmsprop_block(w, g, s, m, b, offs, None, table, grad_scale, HAS_SCALE, CENTERED,
                           HEAVY_BALL)
        else:
            _rmsprop_block(w, g, s, m, b, offs, offs < n, table, grad_scale, HAS_SCALE,
                           CENTERED, HEAVY_BALL)


# ---- Adam/AdamW: table = [β₁, 1−β₁, β₂, 1−β₂, ε, λ, sign, 1−ηλ];
#      row = [w, g, v, s, s_max, n, −η/(1−β₁ᵗ), 1−β₂ᵗ] ------------------------------------
@triton.jit
def _adam_block(w_ptr, g_ptr, v_ptr, s_ptr, x_ptr, offs, mask, table, row, grad_scale,
                HAS_SCALE: tl.constexpr, DECOUPLED: tl.constexpr, AMSGRAD: tl.constexpr):
    beta1, one_minus_beta1 = _hp(table, 0), _hp(table, 1)
    beta2, one_minus_beta2 = _hp(table, 2), _hp(table, 3)
    eps, wd, sign, decay = _hp(table, 4), _hp(table, 5), _hp(table, 6), _hp(table, 7)
    step_size, bc2 = _hp(row, 6), _hp(row, 7)
    w = tl.load(w_ptr + offs, mask=mask).to(tl.float32)
    g = _grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE)
    if DECOUPLED:
        w = w * decay                                   # w ← w(1 − ηλ)
    else:
        g = _decay(g, w, wd)                            # g ← g + λw
    v = tl.load(v_ptr + offs, mask=mask).to(tl.float32) * beta1 + one_minus_beta1 * g
    s = tl.load(s_ptr + offs, mask=mask).to(tl.float32) * beta2 + one_minus_beta2 * g * g
    tl.store(v_ptr + offs, v.to(v_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + offs, s.to(s_ptr.dtype.element_ty), mask=mask)
    if AMSGRAD:
        s_max = tl.load(x_ptr + offs, mask=mask).to(tl.float32)
        s = tl.where((s != s) | (s > s_max), s, s_max)  # torch.maximum: NaN wins
        tl.store(x_ptr + offs, s.to(x_ptr.dtype.element_ty), mask=mask)
    w = w + step_size * v / (tl.sqrt(s / bc2) + eps)
    tl.store(w_ptr + offs, w.to(w_ptr.dtype.element_ty), mask=mask)


@triton.jit
def adam(chunks, table, grad_scale, found_inf, DTYPE: tl.constexpr, NHP: tl.constexpr,
         ROW: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
         HAS_SCALE: tl.constexpr, HAS_INF: tl.constexpr,
         DECOUPLED: tl.constexpr, AMSGRAD: tl.constexpr):
    row, offs, full, n = _chunk(chunks, table, NHP, ROW, 5, BLOCK)
    if _go(found_inf, HAS_INF):
        w = _ptr(row, 0, DTYPE, ALIGNED)
        g = _ptr(row, 1, DTYPE, ALIGNED)
        v = _ptr(row, 2, DTYPE, ALIGNED)
        s = _ptr(row, 3, DTYPE, ALIGNED)
        x = _ptr(row, 4, DTYPE, ALIGNED)
        if full:
            _adam_block(w, g, v, s, x, offs, None, table, row, grad_scale, HAS_SCALE,
                        DECOUPLED, AMSGRAD)
        else:
            _adam_block(w, g, v, s, x, offs, offs < n, table, row, grad_scale, HAS_SCALE,
                        DECOUPLED, AMSGRAD)


# ---- AdaGrad: table = [ε, λ, sign]; row = [w, g, s, n, −η/(1 + (t−1)·lr_decay)] ----------
@triton.jit
def _adagrad_block(w_ptr, g_ptr, s_ptr, offs, mask, table, row, grad_scale,
                   HAS_SCALE: tl.constexpr):
    eps, wd, sign = _hp(table, 0), _hp(table, 1), _hp(table, 2)
    step_size = _hp(row, 4)
    w = tl.load(w_ptr + offs, mask=mask).to(tl.float32)
    g = _decay(_grad(g_ptr, offs, mask, grad_scale, sign, HAS_SCALE), w, wd)
    s = tl.load(s_ptr + offs, mask=mask).to(tl.float32) + g * g     # s ← s + g²
    tl.store(s_ptr + offs, s.to(s_ptr.dtype.element_ty), mask=mask)
    tl.store(w_ptr + offs, (w + step_size * (g / (tl.sqrt(s) + eps))).to(w_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def adagrad(chunks, table, grad_scale, found_inf, DTYPE: tl.constexpr, NHP: tl.constexpr,
            ROW: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
            HAS_SCALE: tl.constexpr, HAS_INF: tl.constexpr):
    row, offs, full, n = _chunk(chunks, table, NHP, ROW, 3, BLOCK)
    if _go(found_inf, HAS_INF):
        w = _ptr(row, 0, DTYPE, ALIGNED)
        g = _ptr(row, 1, DTYPE, ALIGNED)
        s = _ptr(row, 2, DTYPE, ALIGNED)
        if full:
            _adagrad_block(w, g, s, offs, None, table, row, grad_scale, HAS_SCALE)
        else:
            _adagrad_block(w, g, s, offs, offs < n, table, row, grad_scale, HAS_SCALE)
