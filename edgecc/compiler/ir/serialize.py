"""Save/load a graph with its weights to one `.ecir` file.

The file is a zip archive: `graph.json` (structure, attributes, metadata) and one
`.npy` entry per distinct constant, so a weight shared by several nodes is stored
once. zip's per-entry CRC32 catches corrupted bytes on load.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from ...errors import ModelLoadError, VerifyError
from .dtypes import DType
from .graph import Graph, Node, TensorType, Value
from .verifier import verify

FORMAT = "edgecc-ir"
VERSION = 1


def _to_json(v: Any) -> Any:
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x) for x in v]}
    if isinstance(v, list):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {"__dict__": [[k, _to_json(x)] for k, x in v.items()]}
    if isinstance(v, np.ndarray):
        return {"__array__": v.tolist(), "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot serialize attribute value of type {type(v).__name__}")


def _from_json(v: Any) -> Any:
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, dict):
        if "__tuple__" in v:
            return tuple(_from_json(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: _from_json(x) for k, x in v["__dict__"]}
        if "__array__" in v:
            return np.array(v["__array__"], dtype=v["dtype"])
        raise ValueError(f"unknown JSON object with keys {sorted(v)}")
    return v


def save(graph: Graph, path: str | os.PathLike) -> None:
    """Write atomically: a failure never leaves a half-written file at `path`."""
    consts = graph.constants()
    cidx = {id(c): i for i, c in enumerate(consts)}

    def vref(v: Value):
        return {"const": cidx[id(v)]} if v.is_constant else v.name

    doc = {
        "format": FORMAT, "version": VERSION, "name": graph.name, "meta": _to_json(graph.meta),
        "inputs": [{"name": v.name, "shape": list(v.shape), "dtype": str(v.dtype)}
                   for v in graph.inputs],
        "constants": [{"name": c.name, "meta": _to_json(c.meta)} for c in consts],
        "nodes": [{"name": n.name, "op": n.op, "inputs": [vref(v) for v in n.inputs],
                   "outputs": [{"name": v.name, "shape": list(v.shape), "dtype": str(v.dtype),
                                "meta": _to_json(v.meta)} for v in n.outputs],
                   "attrs": _to_json(n.attrs), "meta": _to_json(n.meta)} for n in graph.nodes],
        "outputs": [vref(v) for v in graph.outputs],
    }
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".ecir-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            z.writestr("graph.json", json.dumps(doc))
            for i, c in enumerate(consts):
                buf = io.BytesIO()
                np.save(buf, c.data, allow_pickle=False)
                z.writestr(f"weights/{i}.npy", buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> Graph:
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            doc = json.loads(z.read("graph.json"))
            if doc.get("format") != FORMAT:
                raise ModelLoadError(f"{path}: not an edgecc IR file (format {doc.get('format')!r})")
            if doc.get("version") != VERSION:
                raise ModelLoadError(f"{path}: IR version {doc.get('version')} is not supported "
                                     f"(this edgecc reads version {VERSION})")
            consts = []
            for i, c in enumerate(doc["constants"]):
                raw = z.read(f"weights/{i}.npy")
                try:
                    data = np.load(io.BytesIO(raw), allow_pickle=False)
                except Exception as e:  # noqa: BLE001 - a mangled .npy header can raise tokenize.TokenError
                    raise ModelLoadError(f"{path}: weights/{i}.npy is corrupt ({type(e).__name__}: {e})") from None
                v = Graph.constant(c["name"], data)
                v.meta = _from_json(c["meta"])
                consts.append(v)
    except ModelLoadError:
        raise
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, ValueError, EOFError, OSError,
            TypeError, AttributeError,  # graph.json that is not an object of lists
            NotImplementedError, RuntimeError, zlib.error) as e:  # unknown compression, encrypted, bad deflate
        raise ModelLoadError(f"{path}: corrupt or truncated edgecc IR file ({e})") from None

    try:
        g = Graph(doc["name"], meta=_from_json(doc["meta"]))
        values: dict[str, Value] = {}
        for v in doc["inputs"]:
            values[v["name"]] = g.add_input(v["name"], v["shape"], DType(v["dtype"]))

        def resolve(r):
            if isinstance(r, dict):
                return consts[r["const"]]
            if r not in values:
                raise ModelLoadError(f"{path}: reference to undefined value {r!r}")
            return values[r]

        for nd in doc["nodes"]:
            outs = []
            for o in nd["outputs"]:
                v = Value(o["name"], TensorType(o["shape"], DType(o["dtype"])))
                v.meta = _from_json(o["meta"])
                outs.append(v)
            n = Node(nd["name"], nd["op"], [resolve(r) for r in nd["inputs"]], outs,
                     _from_json(nd["attrs"]), _from_json(nd["meta"]))
            for v in outs:
                v.producer = n
                values[v.name] = v
            g.nodes.append(n)
        g.outputs = [resolve(r) for r in doc["outputs"]]
        verify(g)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ModelLoadError(f"{path}: malformed graph description ({e!r})") from None
    except VerifyError as e:
        raise ModelLoadError(f"{path}: graph does not verify: {e}") from None
    return g
