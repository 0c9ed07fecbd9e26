"""Runtimes: the reference interpreter, the engine, and compiled models (`load`)."""
from .compiled import CompiledModel, load

__all__ = ["CompiledModel", "load"]
