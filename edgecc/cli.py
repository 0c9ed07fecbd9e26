"""The `edgecc` command line.

    edgecc inspect MODEL [--json] [--passes] [--input-shape NAME=1,3,224,224]
    edgecc import MODEL -o OUT.ecir [--no-passes] [--input-shape ...]
    edgecc analyze MODEL [--cost | --pa M,N] [--memory --batch B] [--3drf] [--organize] [--json]
    edgecc compile MODEL --scheme fp32|int8|int16|pa|binary -o OUTDIR [--target host|avx512|avx2|generic]
                   [--pa M,N] [--calib DATA.npz|data-free] [--tune] [--no-onednn] [--override FILE.json]
    edgecc run OUTDIR --input X.npy [--expected Y.npy --atol A --rtol R] [--profile RUNS]
    edgecc bench OUTDIR [--runs N] [--min-time T] [--max-time CAP] [--threads K] [--compare] [--plot P.png] [--json]

Each subcommand is a pair: `_add_<cmd>(subparsers)` declares its arguments and
`_cmd_<cmd>(args) -> exit code` runs it; register new ones in SUBCOMMANDS.
Exit codes: 0 ok, 1 model error (bad file, unsupported op, ...), 2 usage error.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from . import __version__
from .errors import EdgeccError


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""

    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of sys.exit so main() returns the code
        raise UsageError(message, self.format_usage())


# ---- shared helpers -------------------------------------------------------------
def _parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, sep, dims = spec.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 0:
            raise UsageError(f"--input-shape {spec!r}: expected NAME=D1,D2,... with "
                             "non-negative integers, e.g. input=1,3,224,224")
        if name in shapes:
            raise UsageError(f"--input-shape given twice for input {name!r}")
        shapes[name] = shape
    return shapes


def _load_model(args):
    """MODEL path -> IR graph, with --input-shape applied to ONNX models."""
    from .api import load

    shapes = _parse_input_shapes(args.input_shape)
    ext = os.path.splitext(args.model)[1].lower()
    if shapes and ext != ".onnx":
        raise UsageError(f"--input-shape applies to .onnx models only, not {args.model!r}")
    if shapes:
        if not os.path.exists(args.model):
            from .errors import ModelLoadError
            raise ModelLoadError(f"{args.model}: no such file")
        from .compiler.frontends.onnx import import_onnx
        return import_onnx(args.model, input_shapes=shapes)
    try:
        return load(args.model)
    except EdgeccError as e:
        if ext == ".onnx" and "symbolic dim" in str(e):  # the importer speaks Python API
            raise type(e)(f"{e}\n(on the command line: --input-shape NAME=D1,D2,...)") from None
        raise


def _run_default_passes(graph) -> None:
    from .compiler.passes import default_pipeline
    default_pipeline().run(graph)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model file (.onnx or .ecir)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                   help="fix the shape of an ONNX input with symbolic dimensions "
                        "(repeatable)")


# ---- inspect --------------------------------------------------------------------
def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="print the per-layer params/MACs table of a model")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--passes", action="store_true",
                   help="run the default pass pipeline first and list what it changed")


def _cmd_inspect(args) -> int:
    from .compiler.analysis import analyze

    graph = _load_model(args)
    if args.passes:
        _run_default_passes(graph)
    report = analyze(graph)
    if args.json:
        import json
        doc = report.to_dict()
        if args.passes:
            doc["pass_log"] = graph.meta.get("pass_log", [])
        print(json.dumps(doc, indent=2))
        return 0
    print(report)
    if args.passes:
        log = graph.meta.get("pass_log", [])
        print(f"passes: {len(log)} record(s)")
        for rec in log:
            print(f"  [{rec['pass']}] {rec['message']}")
    return 0


# ---- import ---------------------------------------------------------------------
def _add_import(sub) -> None:
    p = sub.add_parser("import", help="import a model and save it as an .ecir IR file")
    _add_model_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.ecir", help="file to write")
    p.add_argument("--no-passes", action="store_true", help="skip the default pass pipeline")


def _cmd_import(args) -> int:
    from .compiler.ir import save

    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UsageError(f"-o {args.output}: directory {out_dir} does not exist")
    graph = _load_model(args)
    if not args.no_passes:
        _run_default_passes(graph)
    save(graph, args.output)
    n_log = len(graph.meta.get("pass_log", []))
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {len(graph.constants())} constants"
          + ("" if args.no_passes else f", {n_log} pass record(s)"))
    return 0


# ---- analyze --------------------------------------------------------------------
def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="static analyses: binary cost model, peak memory, 3DRF")
    p.add_argument("model", metavar="MODEL",
                   help="model file (.onnx or .ecir) or zoo:NAME (e.g. zoo:vgg16_cifar)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                   help="fix the shape of an ONNX input with symbolic dimensions")
    p.add_argument("--cost", action="store_true", help="binary cost model (thesis ch.5 rules)")
    p.add_argument("--pa", metavar="M,N", help="cost with PA rules: M weight / N activation "
                   "bases, downsample binarized (thesis ch.3)")
    p.add_argument("--memory", action="store_true", help="peak run-time memory by liveness")
    p.add_argument("--batch", type=int, default=None, help="batch size for --memory")
    p.add_argument("--act-bits", type=int, default=32, help="bits per activation (--memory)")
    p.add_argument("--weights", choices=("all", "layer", "none"), default="all",
                   help="weights counted in --memory")
    p.add_argument("--3drf", dest="rf3d", action="store_true", help="3D receptive field")
    p.add_argument("--organize", action="store_true", help="3DRF stage-level organizer advice")
    p.add_argument("--theta", type=float, default=0.0, help="organizer threshold")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _load_analyze_model(args):
    if not args.model.startswith("zoo:"):
        return _load_model(args)
    if args.input_shape:
        raise UsageError("--input-shape does not apply to zoo: models")
    import torch

    from . import zoo
    from .api import load
    name, classes = args.model[4:], None
    for suffix, n in (("_cifar100", 100), ("_cifar", 10)):
        if name.endswith(suffix):
            name, classes = name[:-len(suffix)], n
            break
    cifar = classes is not None
    if name not in zoo.names():
        raise UsageError(f"{args.model}: unknown zoo model; available: {', '.join(zoo.names())}"
                         " (append _cifar or _cifar100 for a CIFAR variant)")
    model = None
    for kw in ({"dataset": "cifar"}, {"stem": "cifar"}) if cifar else ({},):
        if cifar:
            kw["num_classes"] = classes
        try:
            model = zoo.get(name, **kw)
            break
        except TypeError:
            continue
    if model is None:
        raise UsageError(f"{args.model}: zoo model {name!r} has no CIFAR variant")
    size = 32 if cifar else 224
    return load(model.eval(), (torch.zeros(1, 3, size, size),))


def _cmd_analyze(args) -> int:
    import json

    from .compiler.passes import cost_model as cm
    from .compiler.passes.peak_memory import peak_memory
    from .compiler.passes.receptive_field_3d import receptive_field_3d
    from .compiler.passes.stage_organizer import organize_stages

    if not (args.cost or args.pa or args.memory or args.rf3d or args.organize):
        args.cost = args.memory = True
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    policy = cm.CH5
    if args.pa:
        try:
            m, n = (int(t) for t in args.pa.split(","))
            policy = cm.pa_policy(m, n, count_bn="affine")
        except (ValueError, EdgeccError):
            raise UsageError(f"--pa {args.pa!r}: expected M,N positive integers, e.g. 4,5") \
                from None
    graph = _load_analyze_model(args)
    reports = {}
    if args.cost or args.pa:
        reports["cost"] = cm.cost_model(graph, policy)
    if args.memory:
        reports["memory"] = peak_memory(graph, batch=args.batch, act_bits=args.act_bits,
                                        weights=args.weights,
                                        policy=policy if (args.cost or args.pa) else None)
    if args.rf3d:
        reports["3drf"] = receptive_field_3d(graph)
    if args.organize:
        reports["organizer"] = organize_stages(graph, theta=args.theta)
    if args.json:
        print(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2))
    else:
        print("\n\n".join(str(r) for r in reports.values()))
    return 0


# ---- compile --------------------------------------------------------------------
def _add_compile(sub) -> None:
    p = sub.add_parser("compile", help="compile a model into model.so + model.h + model.json")
    _add_model_args(p)
    p.add_argument("--scheme", choices=("fp32", "int8", "int16", "pa", "binary"), default="fp32",
                   help="fp32: float kernels; int8/int16: integer convs (needs --calib); pa: PA(M,N) "
                        "binary kernels (the model's own PA layers, or a post-training conversion of a "
                        "float model); binary: sign-binarized (+-1) layers")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="directory to write")
    p.add_argument("--target", choices=("host", "avx512", "avx2", "generic", "cuda", "tvm-llvm"),
                   default="host",
                   help="instruction set the library is built for (host: -march=native); cuda / tvm-llvm: "
                        "a TVM-built library (NVIDIA GPU / CPU) run by edgecc.runtime through TVM's runtime")
    p.add_argument("--pa", default="4,5", metavar="M,N",
                   help="weight and activation bases of the post-training PA conversion (default 4,5)")
    p.add_argument("--calib", metavar="DATA.npz|data-free",
                   help="calibration samples (one array per model input, N first) or data-free: inputs "
                        "synthesized from the model's batch-norm statistics")
    p.add_argument("--tune", action="store_true",
                   help="time the integer kernels per conv on this machine (direct, DFNT, and oneDNN for int8), "
                        "keep the fastest")
    p.add_argument("--no-onednn", action="store_true",
                   help="float layers with edgecc's own kernels: a library with no oneDNN dependency")
    p.add_argument("--override", metavar="FILE.json",
                   help='per-layer choices: {"layers": {"NODE": {"precision": "fp32"} or '
                        '{"kernel": "direct"|"dfnt"|"onednn"}}}')


def _cmd_compile(args) -> int:
    from .compiler.compile import compile as compile_model

    try:
        bases = tuple(int(v) for v in args.pa.split(","))
    except ValueError:
        bases = ()
    if len(bases) != 2:
        raise UsageError(f"--pa {args.pa!r}: expected M,N (two integers), e.g. --pa 4,5")
    graph = _load_model(args)
    meta = compile_model(graph, args.output, scheme=args.scheme, target=args.target, pa_bases=bases,
                         calib=args.calib, tune=args.tune, onednn=False if args.no_onednn else None,
                         overrides=args.override, source_path=args.model, log=print)
    if meta.get("backend") == "tvm":
        print(f"wrote {args.output}: lib.so, params.npz, model.json (TVM, target {meta['target']})")
    else:
        print(f"wrote {args.output}: model.so, model.h, model.json "
              f"(workspace {meta['memory_plan']['arena_bytes']:,} bytes)")
    return 0


# ---- run ------------------------------------------------------------------------
def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a compiled model on .npy inputs, optionally check outputs")
    p.add_argument("outdir", metavar="OUTDIR", help="directory written by edgecc compile")
    p.add_argument("--input", action="append", required=True, metavar="X.npy",
                   help="input array, one per model input in order (repeatable)")
    p.add_argument("--expected", action="append", metavar="Y.npy",
                   help="expected output, one per model output in order (repeatable)")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    p.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (default 1e-5)")
    p.add_argument("--output", action="append", metavar="OUT.npy", help="save outputs (repeatable)")
    p.add_argument("--threads", type=int, default=0, help="threads (0 = OpenMP default)")
    p.add_argument("--profile", type=int, default=0, metavar="RUNS",
                   help="also time every layer over RUNS runs and print the table (C++ libraries)")


def _print_profile(rows: list[dict]) -> None:
    total = sum(r["ms"] for r in rows) or 1.0
    print(f"{'step':>4}  {'node':<28} {'op':<16} {'median ms':>10} {'share':>6}  kernel")
    for r in rows:
        print(f"{r['step']:>4}  {r['node'][:28]:<28} {r['op'][:16]:<16} {r['ms']:>10.4f} "
              f"{100 * r['ms'] / total:>5.1f}%  {r.get('kernel', '')}")
    print(f"      total of medians {total:.4f} ms")


def _cmd_run(args) -> int:
    import numpy as np

    from .errors import InputError
    from .runtime import load as load_compiled

    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    model = load_compiled(args.outdir, threads=args.threads)
    arrays = []
    for path in args.input:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise InputError(f"--input {path}: cannot read a .npy array ({e})") from None
    if args.profile < 0:
        raise UsageError(f"--profile must be >= 0, got {args.profile}")
    outs = model.run(*arrays)
    for d, y in zip(model.outputs, outs):
        print(f"output {d['name']!r}: f32{list(y.shape)} min {y.min():.6g} max {y.max():.6g}")
    if args.profile:
        if not hasattr(model, "profile"):
            raise UsageError(f"--profile: {args.outdir} is a TVM artifact; per-layer profiling is for "
                             "edgecc's C++ libraries")
        _print_profile(model.profile(*arrays, runs=args.profile))
    for path, y in zip(args.output or [], outs):
        np.save(path, y)
    if not args.expected:
        return 0
    if len(args.expected) > len(outs):
        raise UsageError(f"--expected given {len(args.expected)} times, the model has {len(outs)} output(s)")
    ok = True
    for path, d, y in zip(args.expected, model.outputs, outs):
        ref = np.load(path, allow_pickle=False)
        if ref.shape != y.shape:
            print(f"output {d['name']!r}: expected shape {list(ref.shape)}, got {list(y.shape)}")
            ok = False
            continue
        err = np.abs(y.astype(np.float64) - ref)
        bad = err > args.atol + args.rtol * np.abs(ref)
        print(f"output {d['name']!r}: max |diff| {err.max():.3e}, {int(bad.sum())} of {y.size} element(s) "
              f"outside atol {args.atol:g} + rtol {args.rtol:g} -> {'ok' if not bad.any() else 'MISMATCH'}")
        ok = ok and not bad.any()
    return 0 if ok else 1


# ---- bench ----------------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency of a compiled model; --compare: against PyTorch and ONNX Runtime")
    p.add_argument("outdir", metavar="OUTDIR", help="directory written by edgecc compile")
    p.add_argument("--runs", type=int, default=20, help="at least this many timed runs (default 20)")
    p.add_argument("--min-time", type=float, default=1.0, metavar="T",
                   help="and at least T seconds of timed runs per engine (default 1)")
    p.add_argument("--max-time", type=float, default=10.0, metavar="CAP",
                   help="stop after CAP seconds per engine even if --runs is not reached (default 10)")
    p.add_argument("--threads", type=int, default=1, help="threads for every engine (0 = OpenMP default; default 1)")
    p.add_argument("--input", action="append", metavar="X.npy",
                   help="input array, one per model input (default: seeded random normals)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--compare", action="store_true",
                   help="also time PyTorch fp32/int8 and ONNX Runtime fp32/int8 on the source model")
    p.add_argument("--plot", metavar="OUT.png", help="bar chart of median latency per engine (matplotlib)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _cmd_bench(args) -> int:
    import json

    from .runtime import bench as B
    from .runtime.compiled import load as load_compiled

    if args.runs < 1:
        raise UsageError(f"--runs must be >= 1, got {args.runs}")
    if args.min_time < 0 or args.max_time <= 0 or args.max_time < args.min_time:
        raise UsageError(f"--min-time {args.min_time} / --max-time {args.max_time}: need "
                         "0 <= min-time <= max-time and max-time > 0")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0, got {args.threads}")
    if not os.path.isdir(args.outdir):
        from .errors import ModelLoadError
        raise ModelLoadError(f"{args.outdir}: no such directory (expected the output of edgecc compile)")
    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        raise UsageError(f"--plot {args.plot}: directory does not exist")
    inputs = None
    if args.input:
        inputs = B.read_inputs(load_compiled(args.outdir), args.input)
    report = B.bench(args.outdir, runs=args.runs, min_time=args.min_time, max_time=args.max_time,
                     threads=args.threads, inputs=inputs, seed=args.seed)
    rows = [B.report_row(report)]
    if args.compare:
        from .runtime.compare import compare_compiled
        model = load_compiled(args.outdir, threads=report["threads"])
        xs = inputs if inputs is not None else B.random_inputs(model, args.seed)
        rows = compare_compiled(model, xs, threads=report["threads"], runs=args.runs,
                                min_time=args.min_time, max_time=args.max_time)
        report["compare"] = rows
        report["versions"] = B.versions(model.meta, extra=("torch", "onnxruntime", "onnx"))
    if args.plot:
        from .runtime.compare import plot
        plot(rows, args.plot, title=f"{report['model']} ({report['scheme']}), {report['threads']} thread(s)")
        report["plot"] = args.plot
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(B.format_report(report))
    if args.compare:
        from .runtime.compare import format_table
        print()
        print(format_table(rows))
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


SUBCOMMANDS = {
    "inspect": (_add_inspect, _cmd_inspect),
    "import": (_add_import, _cmd_import),
    "analyze": (_add_analyze, _cmd_analyze),
    "compile": (_add_compile, _cmd_compile),
    "run": (_add_run, _cmd_run),
    "bench": (_add_bench, _cmd_bench),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = _Parser(prog="edgecc", parents=[common],
                     description="edgecc: a compiler toolkit for efficient CNN inference")
    parser.add_argument("--version", action="version", version=f"edgecc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add, _ in SUBCOMMANDS.values():
        add(_SubparsersWithCommon(sub, common))
    return parser


class _SubparsersWithCommon:
    """Gives every subcommand the common options (so `edgecc inspect m --debug` works)."""

    def __init__(self, sub, common):
        self._sub, self._common = sub, common

    def add_parser(self, name, **kw):
        return self._sub.add_parser(name, parents=[self._common], **kw)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return SUBCOMMANDS[args.command][1](args)
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except UsageError as e:
        print(f"{e.usage}edgecc: error: {e}", file=sys.stderr)
        return 2
    except (EdgeccError, OSError) as e:
        if debug:
            traceback.print_exc()
        print(f"edgecc: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
