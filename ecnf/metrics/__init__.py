"""Sample-quality metrics."""

from .toy import mmd2, wasserstein2

__all__ = ["mmd2", "wasserstein2"]
