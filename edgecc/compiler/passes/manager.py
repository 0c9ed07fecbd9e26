"""Run graph passes in order, verify after each one, and log what they changed.

A pass is a callable `(graph) -> bool` (True when it changed the graph); its name is
its `name` attribute or, for a plain function, its `__name__`. Passes describe their
changes with `log_change`; the records collect in `graph.meta["pass_log"]` as
`{"pass": name, "message": text}` dicts for the compile report.
"""
from __future__ import annotations

from typing import Callable, Iterable

from ...errors import EdgeccError, VerifyError
from ..ir import Graph, verify

Pass = Callable[[Graph], bool]


def pass_name(p: Pass) -> str:
    return getattr(p, "name", None) or getattr(p, "__name__", None) or type(p).__name__


def log_change(graph: Graph, pass_: str, message: str) -> None:
    """Append one human-readable record (identical repeats, e.g. from fixed-point
    iterations, are kept once)."""
    log = graph.meta.setdefault("pass_log", [])
    rec = {"pass": pass_, "message": message}
    if rec not in log:
        log.append(rec)


class PassManager:
    """`PassManager([p1, p2]).run(graph)` runs p1, p2 once; with `fixed_point=True`
    the whole list repeats until no pass reports a change (at most `max_rounds`)."""

    def __init__(self, passes: Iterable[Pass], *, fixed_point: bool = False,
                 max_rounds: int = 10, verify_each: bool = True):
        self.passes = list(passes)
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        self.fixed_point = fixed_point
        self.max_rounds = max_rounds
        self.verify_each = verify_each

    def run(self, graph: Graph) -> bool:
        """Returns True when any pass changed the graph."""
        changed_any = False
        for _ in range(self.max_rounds if self.fixed_point else 1):
            changed = False
            for p in self.passes:
                changed |= self._run_one(p, graph)
            changed_any |= changed
            if not changed:
                break
        return changed_any

    def _run_one(self, p: Pass, graph: Graph) -> bool:
        name = pass_name(p)
        try:
            changed = p(graph)
        except EdgeccError:
            raise
        except Exception as e:  # a pass bug: say which pass, keep the cause chained
            raise EdgeccError(f"pass {name!r} failed on graph {graph.name!r}: "
                              f"{type(e).__name__}: {e}") from e
        if not isinstance(changed, bool):
            raise EdgeccError(f"pass {name!r} returned {changed!r}; a pass must return "
                              "True (changed) or False")
        if self.verify_each:
            try:
                verify(graph)
            except VerifyError as e:
                raise VerifyError(f"graph {graph.name!r} does not verify after pass "
                                  f"{name!r}: {e}") from None
        return changed


def default_pipeline() -> PassManager:
    """The foundation's clean-up pipeline, repeated until nothing changes."""
    from .constant_folding import fold_constants
    from .dead_code import eliminate_dead_code
    from .discover_shared_weights import discover_shared_weights
    from .fold_activation_into_thresholds import fold_activation_into_thresholds
    from .fold_batchnorm_shared import fold_batchnorm_shared_weight, fold_batchnorm_slices
    from .fold_batchnorm import fold_batchnorm
    from .fold_bn_into_binary import fold_bn_into_binary
    from .identity_elimination import eliminate_identities
    from .merge_pa_coefficients import merge_pa_coefficients

    # Dead code goes before BN folding so a dead second user does not block a fold;
    # phi must be one constant before a BN can fold into a binary layer; BN + ReLU in
    # front of a binary layer become its thresholds, and DCE then drops them.
    # Shared weights (DACNN) keep one copy: their BNs become per-layer scale/shift.
    return PassManager([eliminate_identities, fold_constants, merge_pa_coefficients,
                        discover_shared_weights, eliminate_dead_code, fold_bn_into_binary,
                        fold_batchnorm, fold_batchnorm_slices, fold_batchnorm_shared_weight,
                        fold_activation_into_thresholds], fixed_point=True)
