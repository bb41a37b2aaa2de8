"""optimlab: the lecture's SGD, Momentum, RMSprop and Adam, and more optimizers, from scratch
for PyTorch, and a lab to compare them."""

__version__ = "0.1.0"

__all__ = ["compare", "suite", "sweep"]


def __getattr__(name: str) -> object:
    """`optimlab.compare`, `optimlab.sweep` and `optimlab.suite` (the Python API), imported
    on first use so that `import optimlab` stays cheap (no torch)."""
    if name in __all__:
        from optimlab import api

        return getattr(api, name)
    raise AttributeError(f"module 'optimlab' has no attribute {name!r}")
