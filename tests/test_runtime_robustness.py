"""Bad use of a compiled model, through Python and through the C API (ctypes): wrong
inputs, odd arrays, reused outputs, NULL / closed / made-up handles, wrong sizes, small or
misaligned workspaces, bad thread counts -> a clear error, never a crash or a wrong
number. A failing compile into an existing directory leaves the old artifact intact."""
from __future__ import annotations

import ctypes as C
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgecc.runtime
from edgecc.compiler import compile as compile_module
from edgecc.compiler.codegen import build as build_module
from edgecc.errors import EdgeccError, InputError
from edgecc.runtime.interpreter import interpret

import fuzz_c_api as F  # tests/fuzz, on sys.path through conftest.py


@pytest.fixture(scope="module")
def built(two_input_model):
    return two_input_model


@pytest.fixture(scope="module")
def api(built):
    return F.CApi(built / "model.so")


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 2, 5, 5)).astype(np.float32), rng.standard_normal((1, 3, 5, 5)).astype(np.float32)


# ---- Python runtime -------------------------------------------------------------------
def test_matches_the_interpreter(built):
    x, z = _inputs()
    got = edgecc.runtime.load(built).run(x, z)
    want = interpret(F.two_input_graph(), x, z)
    assert len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert np.array_equal(got[1], got[2]) and not np.shares_memory(got[1], got[2])


def test_wrong_count_dtype_shape(built):
    m = edgecc.runtime.load(built)
    x, z = _inputs()
    with pytest.raises(InputError, match=r"takes 2 input\(s\) \(x, z\), got 1"):
        m.run(x)
    with pytest.raises(InputError, match="got 3"):
        m.run(x, z, z)
    with pytest.raises(InputError, match="input 'z': expected dtype f32.*float64"):
        m.run(x, z.astype(np.float64))
    with pytest.raises(InputError, match="input 'x': expected dtype f32.*int32"):
        m.run(x.astype(np.int32), z)
    with pytest.raises(InputError, match="input 'x': expected dtype f32.*float16"):
        m.run(x.astype(np.float16), z)
    with pytest.raises(InputError, match=r"input 'z': expected shape \[1, 3, 5, 5\], got \[3, 5, 5\]"):
        m.run(x, z[0])
    with pytest.raises(InputError, match=r"input 'x': expected shape .* got \[\]"):
        m.run(np.float32(1), z)
    with pytest.raises(InputError, match="expected dtype"):
        m.run(x.tolist(), z)           # nested lists become float64: refused, not guessed


@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed", "readonly", "unaligned"])
def test_non_contiguous_inputs(built, layout):
    m = edgecc.runtime.load(built)
    x, z = _inputs(1)
    want = m.run(x, z)
    if layout == "strided":
        big = np.zeros((1, 2, 5, 10), np.float32)
        big[..., ::2] = x
        xv = big[..., ::2]
    elif layout == "fortran":
        xv = np.asfortranarray(x)
    elif layout == "reversed":
        xv = x[..., ::-1].copy()[..., ::-1]
    elif layout == "readonly":
        xv = x.copy()
        xv.setflags(write=False)
    else:   # float32 data at an odd address
        raw = np.zeros(x.nbytes + 1, np.uint8)
        xv = np.frombuffer(raw.data, np.float32, count=x.size, offset=1).reshape(x.shape)
        xv[...] = x
    assert np.array_equal(xv, x)
    got = m.run(xv, z)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def test_outputs_are_fresh_and_inputs_untouched(built):
    m = edgecc.runtime.load(built)
    x, z = _inputs(2)
    x0, z0 = x.copy(), z.copy()
    first = m.run(x, z)
    keep = [a.copy() for a in first]
    for a in first:
        a[...] = 12345.0          # the caller scribbles on the results it got
    second = m.run(x, z)
    assert all(np.array_equal(a, b) for a, b in zip(second, keep))
    assert not any(np.shares_memory(a, b) for a in first for b in second)
    assert np.array_equal(x, x0) and np.array_equal(z, z0)


def test_threads_and_profile_arguments(built):
    m = edgecc.runtime.load(built)
    for bad in (-1, 1.5, True, "2", None, 1025, 2**40):
        with pytest.raises(InputError, match="threads"):
            m.threads = bad
    m.threads = 1024
    assert m.threads == 1024
    m.threads = 0
    x, z = _inputs()
    for bad in (0, -1, 1.0, True):
        with pytest.raises(InputError, match="runs"):
            m.profile(x, z, runs=bad)
    with pytest.raises(InputError, match="warmup"):
        m.profile(x, z, warmup=-1)
    with pytest.raises(InputError, match="input 'x'"):
        m.profile(x[0], z)


def test_profile_rows_follow_model_json(built):
    m = edgecc.runtime.load(built)
    x, z = _inputs()
    want = m.run(x, z)
    rows = m.profile(x, z, runs=3)
    layers = m.meta["layers"]
    assert [(r["node"], r["op"]) for r in rows[:-1]] == [(layer["node"], layer["op"]) for layer in layers]
    assert [r["kernel"] for r in rows[:-1]] == [layer["kernel"] for layer in layers]
    assert rows[-1]["op"] == "copy_outputs" and [r["step"] for r in rows] == list(range(len(layers) + 1))
    assert all(r["runs"] == 3 and 0 <= r["ms_min"] <= r["ms"] and r["ms"] > 0 for r in rows[:-1])
    assert sum(r["ms"] for r in rows) < 10_000
    assert all(np.array_equal(a, b) for a, b in zip(m.run(x, z), want))   # profiling changes nothing


def test_close_and_calls_after_close(built):
    x, z = _inputs()
    with edgecc.runtime.load(built) as m:
        want = m.run(x, z)
        assert not m.closed
    assert m.closed
    for call in (lambda: m.run(x, z), lambda: m.profile(x, z), lambda: m.threads,
                 lambda: setattr(m, "threads", 1)):
        with pytest.raises(InputError, match="is closed"):
            call()
    m.close()                                   # idempotent
    again = edgecc.runtime.load(built)
    assert all(np.array_equal(a, b) for a, b in zip(again.run(x, z), want))
    for bad in (-1, 1025, 1.5, True, "2"):
        with pytest.raises(InputError, match="threads"):
            edgecc.runtime.load(built, threads=bad)


# ---- C API through ctypes ---------------------------------------------------------------
def _run(api, h, ins, outs):
    return api.run(h, F.pointer_array([a.ctypes.data for a in ins]), F.pointer_array([a.ctypes.data for a in outs]))


def _outs(api):
    return [np.zeros(tuple(d.shape[r] for r in range(d.rank)), np.float32) for d in api.outputs]


def test_c_api_describes_itself(api, built):
    assert api.abi_version() == 1 and api.num_inputs() == 2 and api.num_outputs() == 3
    assert [d.name for d in api.inputs] == [b"x", b"z"] and [d.bytes for d in api.inputs] == [200, 300]
    assert not api.input(2) and not api.input(-1) and not api.output(3) and not api.output(-2**31)
    meta = edgecc.runtime.load(built).meta
    assert api.weights_sha256().decode() == meta["weights"]["sha256"]
    assert api.num_steps() == len(meta["layers"]) + 1


def test_c_api_null_and_closed_handles(api):
    x, z = _inputs()
    outs = _outs(api)
    status, h = api.open_handle()
    assert status == F.OK and api.open_error() == b""
    assert _run(api, h, [x, z], outs) == F.OK
    api.close(h)
    for bad in (0, h, 0xDEADBEEF0, 8):       # NULL, closed, made up (never dereferenced)
        assert _run(api, bad, [x, z], outs) == F.INVALID
        assert api.set_threads(bad, 1) == F.INVALID
        assert api.threads(bad) == -1
        assert F.NOT_OPEN in api.error(bad)
        assert api.set_profiling(bad, 1) == F.INVALID
        assert api.step_profile(bad, 0, C.byref(F.StepProfile())) == F.INVALID
        assert api.run_checked(bad, None, None, None, None) == F.INVALID
        api.close(bad)                        # closing twice or closing garbage: nothing happens
    assert api.open(None, None, 0) == F.INVALID and b"out is NULL" in api.open_error()


def test_c_api_null_buffers_and_wrong_sizes(api):
    x, z = _inputs()
    outs = _outs(api)
    _, h = api.open_handle()
    try:
        assert api.run(h, None, F.pointer_array([a.ctypes.data for a in outs])) == F.INVALID
        assert "inputs or outputs array is NULL" in api.error(h)
        assert api.run(h, F.pointer_array([x.ctypes.data, None]), F.pointer_array([a.ctypes.data for a in outs])) \
            == F.INVALID
        assert "input 'z' is NULL" in api.error(h)
        assert api.run(h, F.pointer_array([x.ctypes.data, z.ctypes.data]),
                       F.pointer_array([outs[0].ctypes.data, None, outs[2].ctypes.data])) == F.INVALID
        assert "output 'act' is NULL" in api.error(h)
        ins_p = F.pointer_array([x.ctypes.data, z.ctypes.data])
        outs_p = F.pointer_array([a.ctypes.data for a in outs])
        sizes_in, sizes_out = F.size_array([200, 300]), F.size_array([12, 300, 300])
        assert api.run_checked(h, ins_p, F.size_array([200, 296]), outs_p, sizes_out) == F.INVALID
        assert "input 'z' is 296 bytes, expected 300" in api.error(h)
        assert api.run_checked(h, ins_p, sizes_in, outs_p, F.size_array([12, 300, 0])) == F.INVALID
        assert "is 0 bytes, expected 300" in api.error(h)
        assert api.run_checked(h, ins_p, None, outs_p, sizes_out) == F.INVALID
        aliased = F.pointer_array([outs[0].ctypes.data, outs[1].ctypes.data, z.ctypes.data + 8])
        z0 = z.copy()
        assert api.run_checked(h, ins_p, sizes_in, aliased, sizes_out) == F.INVALID
        assert "output 'act' overlaps input 'z'" in api.error(h) and np.array_equal(z, z0)
        same = F.pointer_array([outs[0].ctypes.data, outs[1].ctypes.data, outs[1].ctypes.data])
        assert api.run_checked(h, ins_p, sizes_in, same, sizes_out) == F.INVALID
        assert "overlaps output 'act'" in api.error(h)
        assert api.run_checked(h, ins_p, sizes_in, outs_p, sizes_out) == F.OK and api.error(h) == ""
        assert np.array_equal(outs[1], np.maximum(outs[1], 0)) and np.array_equal(outs[1], outs[2])
    finally:
        api.close(h)


def test_c_api_workspace(api, built):
    need = api.workspace_size()
    assert need > 0
    x, z = _inputs(3)
    want = edgecc.runtime.load(built).run(x, z)
    owner, addr = F.aligned_buffer(need)
    status, h = api.open_handle(addr, need - 1)
    assert status == F.INVALID and h == 0
    assert f"workspace of {need - 1} bytes is smaller than the {need}" in api.open_error().decode()
    status, h = api.open_handle(addr + 4, need)
    assert status == F.INVALID and "64-byte aligned" in api.open_error().decode()
    status, h = api.open_handle(addr, need)
    assert status == F.OK
    try:
        owner[:] = 0xFF                      # the arena's old contents do not leak into results
        outs = _outs(api)
        assert _run(api, h, [x, z], outs) == F.OK
        assert all(np.array_equal(a, b) for a, b in zip(outs, want))
    finally:
        api.close(h)


def test_c_api_threads(api, built):
    x, z = _inputs(4)
    want = edgecc.runtime.load(built).run(x, z)
    _, h = api.open_handle()
    try:
        for bad in (-1, -2**31, F.MAX_THREADS + 1, 2**31 - 1):
            assert api.set_threads(h, bad) == F.INVALID and f"threads={bad}" in api.error(h)
            assert api.threads(h) == 0       # unchanged
        for t in (1, 2, 3, 0):
            assert api.set_threads(h, t) == F.OK and api.threads(h) == t
            outs = _outs(api)
            assert _run(api, h, [x, z], outs) == F.OK
            assert all(np.array_equal(a, b) for a, b in zip(outs, want))
    finally:
        api.close(h)


def test_c_api_profiling(api):
    x, z = _inputs()
    _, h = api.open_handle()
    try:
        n, p = api.num_steps(), F.StepProfile()
        assert api.step_profile(h, 0, C.byref(p)) == F.OK and p.runs == 0     # off by default
        assert _run(api, h, [x, z], _outs(api)) == F.OK
        assert api.step_profile(h, 0, C.byref(p)) == F.OK and p.runs == 0 and p.total_ms == 0
        assert api.set_profiling(h, 1) == F.OK
        for _ in range(2):
            assert _run(api, h, [x, z], _outs(api)) == F.OK
        rows = []
        for i in range(n):
            assert api.step_profile(h, i, C.byref(p)) == F.OK
            rows.append((p.node.decode(), p.op.decode(), p.runs, p.last_ms, p.total_ms))
        assert [r[:2] for r in rows] == [("conv", "conv2d"), ("skip", "add"), ("act", "relu"),
                                         ("pool", "global_avg_pool"), ("", "copy_outputs")]
        assert all(r[2] == 2 and 0 <= r[3] <= r[4] for r in rows)
        for bad in (-1, n, 2**31 - 1):
            assert api.step_profile(h, bad, C.byref(p)) == F.INVALID and f"index {bad}" in api.error(h)
        assert api.step_profile(h, 0, None) == F.INVALID
        assert api.set_profiling(h, 0) == F.OK                               # off: counters reset
        assert api.step_profile(h, 0, C.byref(p)) == F.OK and p.runs == 0
    finally:
        api.close(h)


@pytest.fixture(scope="module")
def reference(api, built):
    inputs = F.reference_inputs(api)
    model = edgecc.runtime.load(built, threads=1)
    return inputs, [model.run(*xs) for xs in inputs]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.lists(st.tuples(st.sampled_from(F.OPS), st.integers(0, 2**32 - 1)), min_size=1, max_size=10))
def test_c_api_call_sequences(api, reference, seq):
    """Small in-process version of tests/fuzz/fuzz_c_api.py (scripts/fuzz.sh runs 10,000)."""
    session = F.Session(api, *reference)
    try:
        session.start(len(seq))
        for op, arg in seq:
            session.apply(op, arg)
    finally:
        session.close_all()


def test_the_fuzz_oracle_catches_wrong_outputs(api, reference):
    inputs, expected = reference
    wrong = [[a.copy() for a in outs] for outs in expected]
    wrong[0][0].flat[0] = np.nextafter(wrong[0][0].flat[0], np.float32(np.inf))   # one ulp off
    session = F.Session(api, inputs, wrong)
    try:
        session.op_open(1)
        with pytest.raises(F.Violation, match="outputs differ"):
            session.op_run(0)
    finally:
        session.close_all()


# ---- compile atomicity ------------------------------------------------------------------
def _snapshot(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


class Boom(Exception):
    pass


@pytest.mark.parametrize("stage", ["build", "build_partial", "metadata", "interrupt"])
def test_failed_compile_leaves_old_artifact(built, tmp_path, monkeypatch, stage):
    import shutil
    d = tmp_path / "model"
    shutil.copytree(built, d)
    before = _snapshot(d)

    real_build = build_module.build_library

    def failing_build(workdir, target, *args, **kwargs):
        if stage == "build_partial":            # a half-written library, then the failure
            (Path(workdir) / "model.so").write_bytes(b"\x7fELF half")
            raise EdgeccError("linking model.so failed (simulated)")
        if stage == "interrupt":
            raise KeyboardInterrupt
        if stage == "build":
            raise EdgeccError("compiling the model failed (simulated)")
        return real_build(workdir, target, *args, **kwargs)

    def failing_metadata(*args, **kwargs):
        raise Boom("metadata failed (simulated)")

    monkeypatch.setattr(build_module, "build_library", failing_build)
    if stage == "metadata":
        monkeypatch.setattr(compile_module, "_metadata", failing_metadata)
    g = F.two_input_graph(seed=5)               # different weights: a different artifact
    with pytest.raises(KeyboardInterrupt if stage == "interrupt" else (EdgeccError, Boom),
                       match=None if stage == "interrupt" else "simulated"):
        compile_module.compile(g, d, scheme="fp32")
    assert _snapshot(d) == before
    assert sorted(os.listdir(tmp_path)) == ["model"]     # no temporary directory left behind
    x, z = _inputs()
    want = edgecc.runtime.load(built).run(x, z)
    assert all(np.array_equal(a, b) for a, b in zip(edgecc.runtime.load(d).run(x, z), want))
