"""Every error edgecc raises on bad input derives from EdgeccError, so callers can
catch one type; each message names the node, op, shape or flag at fault."""


class EdgeccError(Exception):
    """Base class of all edgecc errors."""


class ModelLoadError(EdgeccError):
    """A model file is missing, truncated, malformed or of an unknown kind."""


class UnsupportedOpsError(EdgeccError):
    """The model uses operators edgecc does not support; lists every one of them."""

    def __init__(self, unsupported):
        # unsupported: list of (op, domain/opset text, [node names])
        self.unsupported = list(unsupported)
        # str(): a corrupt ONNX file can carry non-UTF-8 names, which protobuf returns as bytes
        lines = [f"  {op} ({where}): nodes {', '.join(map(str, names[:8]))}" + (" ..." if len(names) > 8 else "")
                 for op, where, names in self.unsupported]
        super().__init__(f"{len(self.unsupported)} unsupported operator(s):\n" + "\n".join(lines))


class ShapeError(EdgeccError):
    """Shape or dtype inference failed for a node."""


class VerifyError(EdgeccError):
    """The graph is inconsistent; the message names the first node at fault."""


class InputError(EdgeccError):
    """Inputs given to a graph, kernel or compiled model do not match what it expects."""
