"""Graph IR: the contract between frontends, passes and backends."""
from .dtypes import DType
from .graph import Graph, Node, TensorType, Value
from .ops import OPS, infer_node_types
from .printer import format_graph
from .serialize import load, save
from .verifier import verify

__all__ = ["DType", "Graph", "Node", "TensorType", "Value", "OPS", "infer_node_types",
           "format_graph", "load", "save", "verify"]
