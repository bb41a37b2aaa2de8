"""An independent float64 NumPy reference of the lecture formulas (README.md), for tests.

Written separately from `optimlab.optim`: one class per optimizer, state as
NumPy arrays, one `step(w, g)` per call returning the new weights.
"""

from __future__ import annotations

import numpy as np


class SGD:
    """w ← w − η g; with momentum μ: torch's heavy ball (v₁ = g, v ← μv + (1−τ)g)."""

    def __init__(self, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        self.lr, self.mu, self.tau, self.wd = lr, momentum, dampening, weight_decay
        self.nesterov, self.maximize, self.v = nesterov, maximize, None

    def step(self, w, g):
        g = -g if self.maximize else g
        g = g + self.wd * w
        if self.mu:
            self.v = g.copy() if self.v is None else self.mu * self.v + (1 - self.tau) * g
            g = g + self.mu * self.v if self.nesterov else self.v
        return w - self.lr * g


class Momentum:
    """v ← βv + (1−β)g, v₀ = 0; w ← w − η v (nesterov: w ← w − η(βv + (1−β)g))."""

    def __init__(self, lr, momentum=0.9, weight_decay=0.0, nesterov=False, maximize=False):
        self.lr, self.beta, self.wd = lr, momentum, weight_decay
        self.nesterov, self.maximize, self.v = nesterov, maximize, 0.0

    def step(self, w, g):
        g = -g if self.maximize else g
        g = g + self.wd * w
        self.v = self.beta * self.v + (1 - self.beta) * g
        d = self.beta * self.v + (1 - self.beta) * g if self.nesterov else self.v
        return w - self.lr * d


class RMSprop:
    """s ← βs + (1−β)g²; w ← w − η g/(√s + ε); centered and momentum as in torch."""

    def __init__(self, lr, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False):
        self.lr, self.beta, self.eps, self.wd = lr, alpha, eps, weight_decay
        self.mu, self.centered, self.maximize = momentum, centered, maximize
        self.s = self.m = self.b = 0.0

    def step(self, w, g):
        g = -g if self.maximize else g
        g = g + self.wd * w
        self.s = self.beta * self.s + (1 - self.beta) * g * g
        if self.centered:
            self.m = self.beta * self.m + (1 - self.beta) * g
            # s ≥ m² in exact arithmetic; clamp what rounding makes negative
            denom = np.sqrt(np.maximum(self.s - self.m * self.m, 0.0)) + self.eps
        else:
            denom = np.sqrt(self.s) + self.eps
        if self.mu > 0:
            self.b = self.mu * self.b + g / denom
            return w - self.lr * self.b
        return w - self.lr * g / denom


def decayed(w, g, lr, wd, decoupled, maximize):
    """(w, g) after the gradient's sign and the weight decay: decoupled, w shrinks by ηλ
    (AdamW); else L2, g grows by λw."""
    g = -g if maximize else g
    return (w * (1 - lr * wd), g) if decoupled else (w, g + wd * w)


class Adam:
    """v̂ = v/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ); w ← w − η v̂/(√ŝ + ε); AdamW decays w by (1 − ηλ)."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, decoupled=False, bias_correction=True):
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.amsgrad, self.maximize, self.decoupled = amsgrad, maximize, decoupled
        self.bias_correction = bias_correction
        self.v = self.s = self.s_max = 0.0
        self.t = 0

    def step(self, w, g):
        self.t += 1
        w, g = decayed(w, g, self.lr, self.wd, self.decoupled, self.maximize)
        self.v = self.b1 * self.v + (1 - self.b1) * g
        self.s = self.b2 * self.s + (1 - self.b2) * g * g
        s = self.s
        if self.amsgrad:
            self.s_max = np.maximum(self.s_max, self.s)
            s = self.s_max
        v_hat, s_hat = self.v, s  # without bias correction
        if self.bias_correction:
            v_hat = self.v / (1 - self.b1**self.t)
            s_hat = s / (1 - self.b2**self.t)
        return w - self.lr * v_hat / (np.sqrt(s_hat) + self.eps)


def AdamW(lr, weight_decay=1e-2, **kw):  # noqa: N802 - mirrors the class name under test
    return Adam(lr, weight_decay=weight_decay, decoupled=True, **kw)


class Adagrad:
    """s ← s + g², s₀ = initial_accumulator_value; w ← w − η_t g/(√s + ε),
    η_t = η/(1 + (t−1)·lr_decay) (torch's learning-rate decay)."""

    def __init__(self, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, maximize=False):
        self.lr, self.decay, self.wd, self.eps = lr, lr_decay, weight_decay, eps
        self.s, self.maximize, self.t = initial_accumulator_value, maximize, 0

    def step(self, w, g):
        self.t += 1
        g = -g if self.maximize else g
        g = g + self.wd * w
        self.s = self.s + g * g
        lr_t = self.lr / (1 + (self.t - 1) * self.decay)
        return w - lr_t * g / (np.sqrt(self.s) + self.eps)


class Lion:
    """Chen et al. 2023, Algorithm 2: c ← β₁m + (1−β₁)g; w ← w − η(sign(c) + λw);
    m ← β₂m + (1−β₂)g, m₀ = 0."""

    def __init__(self, lr, betas=(0.9, 0.99), weight_decay=0.0):
        self.lr, (self.b1, self.b2), self.wd, self.m = lr, betas, weight_decay, 0.0

    def step(self, w, g):
        c = self.b1 * self.m + (1 - self.b1) * g
        self.m = self.b2 * self.m + (1 - self.b2) * g
        return w - self.lr * (np.sign(c) + self.wd * w)


class NAdam:
    """Dozat 2016 as torch.optim.NAdam: μₜ = β₁(1 − ½·0.96^{tψ}), its running product kept
    step by step; w ← w − η(1−μₜ)/(1−∏μ) ĝ − ημₜ₊₁/(1−∏μ·μₜ₊₁) v̂, both over √ŝ + ε."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, maximize=False):
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.psi, self.decoupled, self.maximize = momentum_decay, decoupled_weight_decay, maximize
        self.v = self.s = 0.0
        self.t, self.mu_product = 0, 1.0

    def step(self, w, g):
        self.t += 1
        w, g = decayed(w, g, self.lr, self.wd, self.decoupled, self.maximize)
        mu = self.b1 * (1 - 0.5 * 0.96 ** (self.t * self.psi))
        mu_next = self.b1 * (1 - 0.5 * 0.96 ** ((self.t + 1) * self.psi))
        self.mu_product *= mu
        self.v = self.b1 * self.v + (1 - self.b1) * g
        self.s = self.b2 * self.s + (1 - self.b2) * g * g
        denom = np.sqrt(self.s / (1 - self.b2**self.t)) + self.eps
        w = w - self.lr * (1 - mu) / (1 - self.mu_product) * g / denom
        return w - self.lr * mu_next / (1 - self.mu_product * mu_next) * self.v / denom


class AdamWScheduleFree:
    """Defazio et al. 2024, Algorithm 1 with Adam's normalisation, x and z kept apart:
    z ← z − ηₜ(g/(√ŝ+ε) + λy), x ← (1−cₜ)x + cₜz, y = (1−β₁)z + β₁x (returned: the
    parameter while training); ηₜ warms up linearly, cₜ = t^r·max(η)^p / Σ weights."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0,
                 r=0.0, weight_lr_power=2.0):
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.warmup, self.r, self.power = warmup_steps, r, weight_lr_power
        self.t, self.s, self.x, self.z = 0, 0.0, None, None
        self.lr_max, self.weight_sum = 0.0, 0.0

    def step(self, y, g):
        if self.x is None:
            self.x, self.z = y.copy(), y.copy()
        self.t += 1
        lr = self.lr * min(1.0, self.t / self.warmup) if self.warmup else self.lr
        self.lr_max = max(self.lr_max, lr)
        weight = self.t**self.r * self.lr_max**self.power
        self.weight_sum += weight
        c = weight / self.weight_sum
        self.s = self.b2 * self.s + (1 - self.b2) * g * g
        u = g / (np.sqrt(self.s / (1 - self.b2**self.t)) + self.eps) + self.wd * y
        self.z = self.z - lr * u
        self.x = (1 - c) * self.x + c * self.z
        return (1 - self.b1) * self.z + self.b1 * self.x

    def evaluated(self):
        """x: what the parameter holds after eval()."""
        return self.x


REFERENCES = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW,
              "adagrad": Adagrad, "lion": Lion,
              "nadam": NAdam, "adamw-schedulefree": AdamWScheduleFree}
