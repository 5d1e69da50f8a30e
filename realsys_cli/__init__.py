"""realsys: the classic real systems of deep learning, as a JAX command-line toolkit."""

__version__ = "0.1.0"
