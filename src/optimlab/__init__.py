"""optimlab: SGD, Momentum, RMSprop and Adam from scratch for PyTorch, and a lab to compare them."""

__version__ = "0.1.0"
