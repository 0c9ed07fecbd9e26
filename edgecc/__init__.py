"""edgecc: a compiler toolkit for efficient CNN inference at the edge."""
from .api import interpret, load
from .errors import EdgeccError

__version__ = "0.1.0"
__all__ = ["load", "interpret", "EdgeccError", "__version__"]
