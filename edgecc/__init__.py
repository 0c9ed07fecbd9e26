"""edgecc: a compiler toolkit for efficient CNN inference at the edge."""
__version__ = "0.1.0"  # first: submodules import it

from .api import interpret, load  # noqa: E402
from .compiler.compile import compile  # noqa: E402,A004  (edgecc.compile, like torch.compile)
from .errors import EdgeccError  # noqa: E402

__all__ = ["load", "interpret", "compile", "EdgeccError", "__version__"]
