"""Compiled models under concurrency: one handle shared by 4 threads (runs are serialized
by a lock, in the Python runtime and in the C library), one handle per thread (parallel),
several models loaded at once, OpenMP thread counts changed between runs, a handle closed
while another thread uses it: always the serial results, bit for bit, and never a crash.
(Leak check: tests/test_c_app.py runs the C example under valgrind memcheck.)"""
from __future__ import annotations

import ctypes as C
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import edgecc.runtime
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph

import fuzz_c_api as F  # tests/fuzz, on sys.path through conftest.py

THREADS = 4
RUNS = 6   # per thread


def _conv_net(seed: int) -> Graph:
    """Big enough that runs overlap in time: two 3x3 convs on 16x24x24, pool, gemm."""
    rng = np.random.default_rng(seed)
    g = Graph(f"net{seed}")
    x = g.add_input("x", (2, 8, 24, 24))
    w1 = Graph.constant("w1", (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32))
    w2 = Graph.constant("w2", (rng.standard_normal((16, 16, 3, 3)) * 0.2).astype(np.float32))
    wf = Graph.constant("wf", rng.standard_normal((10, 16)).astype(np.float32))
    y = g.add_node("conv2d", [x, w1], dict(pads=1), name="conv1").outputs[0]
    y = g.add_node("relu", [y], name="relu1").outputs[0]
    y = g.add_node("conv2d", [y, w2], dict(pads=1, strides=2), name="conv2").outputs[0]
    y = g.add_node("relu", [y], name="relu2").outputs[0]
    y = g.add_node("global_avg_pool", [y], name="pool").outputs[0]
    y = g.add_node("flatten", [y], dict(axis=1), name="flat").outputs[0]
    g.outputs = [g.add_node("gemm", [y, wf], dict(trans_b=1), name="fc").outputs[0]]
    return g


def _compile(graph, out):
    extra = {"onednn": False} if "onednn" in inspect.signature(compile_model).parameters else {}
    compile_model(graph, out, scheme="fp32", **extra)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conc")
    return _compile(_conv_net(0), tmp / "a"), _compile(_conv_net(1), tmp / "b")


def _inputs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 8, 24, 24)).astype(np.float32) for _ in range(n)]


def _thread(fn, errors: list) -> threading.Thread:
    """A thread whose exception (a failed assert) is kept for the main thread to raise."""
    def body():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised by the test
            errors.append(e)
    return threading.Thread(target=body)


def _same(a, b) -> bool:
    return all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b))


def test_one_handle_four_python_threads(models):
    model = edgecc.runtime.load(models[0])
    xs = _inputs(THREADS * RUNS)
    serial = [model.run(x) for x in xs]

    def worker(t):
        return [(i, model.run(xs[i])) for i in range(t, len(xs), THREADS)]

    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for part in pool.map(worker, range(THREADS)) for r in part]
    assert len(results) == len(xs)
    assert all(_same(out, serial[i]) for i, out in results)


def test_threads_setter_and_profile_during_runs(models):
    model = edgecc.runtime.load(models[0])
    xs = _inputs(8, seed=1)
    serial = [model.run(x) for x in xs]
    stop = threading.Event()

    def fiddle():
        k = 0
        while not stop.is_set():
            model.threads = (0, 1, 2, 3)[k % 4]
            if k % 5 == 0:
                rows = model.profile(xs[0], runs=1, warmup=0)
                assert rows[0]["node"] == "conv1"
            k += 1

    errors = []
    side = _thread(fiddle, errors)
    side.start()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            outs = list(pool.map(model.run, xs * 2))
    finally:
        stop.set()
        side.join()
    assert not errors, errors
    assert all(_same(o, serial[i % len(xs)]) for i, o in enumerate(outs))


def test_one_c_handle_four_threads(models):
    """Straight through ctypes (which drops the GIL): the C library's own lock makes
    concurrent edgecc_model_run calls on one handle safe."""
    api = F.CApi(models[0] / "model.so")
    xs = _inputs(THREADS * RUNS, seed=2)
    serial = edgecc.runtime.load(models[0])
    want = [serial.run(x) for x in xs]
    status, h = api.open_handle()
    assert status == F.OK
    try:
        def worker(t):
            got = []
            for i in range(t, len(xs), THREADS):
                out = np.empty((2, 10), np.float32)
                s = api.run(h, F.pointer_array([xs[i].ctypes.data]), F.pointer_array([out.ctypes.data]))
                got.append((i, s, out))
            return got

        with ThreadPoolExecutor(THREADS) as pool:
            results = [r for part in pool.map(worker, range(THREADS)) for r in part]
        assert all(s == F.OK and _same([out], want[i]) for i, s, out in results)
    finally:
        api.close(h)


def test_handle_per_thread_in_parallel(models):
    xs = _inputs(THREADS * RUNS, seed=3)
    want = [edgecc.runtime.load(models[0]).run(x) for x in xs]
    handles = [edgecc.runtime.load(models[0], threads=1) for _ in range(THREADS)]

    def worker(t):
        return [(i, handles[t].run(xs[i])) for i in range(t, len(xs), THREADS)]

    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for part in pool.map(worker, range(THREADS)) for r in part]
    assert all(_same(out, want[i]) for i, out in results)


def test_several_models_at_once(models):
    a1, a2, b = (edgecc.runtime.load(models[0]), edgecc.runtime.load(models[0]), edgecc.runtime.load(models[1]))
    xs = _inputs(6, seed=4)
    want_a = [a1.run(x) for x in xs]
    want_b = [b.run(x) for x in xs]
    assert not _same(want_a[0], want_b[0])          # really two different models
    jobs = [(m, i) for i in range(len(xs)) for m in (a1, a2, b)]
    with ThreadPoolExecutor(THREADS) as pool:
        outs = list(pool.map(lambda job: job[0].run(xs[job[1]]), jobs))
    for (m, i), out in zip(jobs, outs):
        assert _same(out, want_b[i] if m is b else want_a[i])


def test_thread_counts_between_runs(models):
    model = edgecc.runtime.load(models[0])
    xs = _inputs(2, seed=5)
    model.threads = 1
    want = [model.run(x) for x in xs]
    for t in (2, 3, 4, 0, 1, 7, 2):
        model.threads = t
        assert model.threads == t
        assert all(_same(model.run(x), w) for x, w in zip(xs, want))


def test_close_while_another_thread_runs(models):
    """A handle closed by one thread while another keeps calling it: the caller gets
    EDGECC_ERROR_INVALID_ARGUMENT from then on, the runs before are complete and exact."""
    api = F.CApi(models[0] / "model.so")
    x = _inputs(1, seed=6)[0]
    want = edgecc.runtime.load(models[0]).run(x)
    status, h = api.open_handle()
    assert status == F.OK
    started = threading.Event()
    statuses, exact, errors = [], [], []

    def runner():
        for _ in range(200):
            out = np.full((2, 10), np.nan, np.float32)
            s = api.run(h, F.pointer_array([x.ctypes.data]), F.pointer_array([out.ctypes.data]))
            statuses.append(s)
            exact.append(s != F.OK or _same([out], want))
            started.set()
            if s != F.OK:
                assert F.NOT_OPEN in api.error(h)
                return

    t = _thread(runner, errors)
    t.start()
    started.wait(60)
    api.close(h)
    t.join(120)
    assert not t.is_alive() and not errors, errors
    assert all(exact)
    assert statuses[0] == F.OK and set(statuses) <= {F.OK, F.INVALID}
    assert api.run(h, F.pointer_array([x.ctypes.data]), None) == F.INVALID


def test_step_profile_is_consistent_under_concurrency(models):
    """Reading profile counters while other threads run never tears a row."""
    api = F.CApi(models[0] / "model.so")
    x = _inputs(1, seed=7)[0]
    status, h = api.open_handle()
    assert status == F.OK and api.set_profiling(h, 1) == F.OK
    try:
        def runs():
            for _ in range(RUNS):
                out = np.empty((2, 10), np.float32)
                assert api.run(h, F.pointer_array([x.ctypes.data]), F.pointer_array([out.ctypes.data])) == F.OK

        errors = []
        threads = [_thread(runs, errors) for _ in range(THREADS)]
        for t in threads:
            t.start()
        p = F.StepProfile()
        while any(t.is_alive() for t in threads):
            assert api.step_profile(h, 0, C.byref(p)) == F.OK
            assert p.last_ms <= p.total_ms + 1e-9 and (p.runs > 0 or p.total_ms == 0)
        for t in threads:
            t.join()
        assert not errors, errors
        assert api.step_profile(h, 0, C.byref(p)) == F.OK and p.runs == THREADS * RUNS
    finally:
        api.close(h)
