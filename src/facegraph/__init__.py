"""facegraph: face recognition with adaptive (ConvNet-AIG) and interpretable (ConvNet-IIG) inference graphs."""

__version__ = "0.1.0"
