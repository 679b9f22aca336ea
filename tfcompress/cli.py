"""The ``tfcompress`` console command: compress · search · inspect · validate · android.

    tfcompress compress [--config=NAME_OR_FILE[:variant]] [--workdir=DIR] [--config.FIELD=VALUE]
    tfcompress search --config=digits_search --workdir=DIR
    tfcompress inspect model.tflite [--json]
    tfcompress validate model.tflite --data=data.npz [--reference=model.keras] [--json]
    tfcompress android model.tflite --out=DIR

absl flags and ml_collections ``config_flags`` underneath (``--config`` takes a bundled recipe
name, see ``tfcompress.configs``, or a file; any field is overridable). Bad input ends with one
line on stderr naming it, exit status 2. Native libraries' INFO chatter (TensorFlow's start-up
lines, the converter's and the LiteRT interpreter's prints) is filtered out of fd 1 and 2 unless
``--verbosity=1`` (or more) asks for it.

The console is written for people (``tfcompress.console``): one line per stage saying what it
did and its validation accuracy, a progress bar (with the time left) for fine-tuning, AdaRound
and conversion, warnings as plain ``warning: ...`` sentences, then a compact table; the whole
report is report.md. ``--verbosity=1`` brings back Keras' per-epoch lines and absl's log lines
with their prefixes.

The library never parses flags: this module and ``scripts/`` do.
"""

import ast
import json
import os
import re
import sys
from typing import Callable, NoReturn, Optional


COMMANDS = {
    "compress": "run a recipe (default: the default job): train or load, compress, convert, "
                "validate, report",
    "search": "search compression recipes under an accuracy budget (Optuna)",
    "inspect": "per-layer ops, dtypes and weight widths, sizes, XNNPACK coverage, GPU verdict "
               "of a .tflite",
    "validate": "accuracy, agreement and latency of a .tflite on an .npz's x_test/y_test",
    "android": "write an Android bundle (model.tflite, labels.txt, model.json, README.md)",
}
PROG = "tfcompress"
SYNOPSIS = {
    "compress": "[--config=NAME_OR_FILE[:variant]] [--workdir=DIR] [--config.FIELD=VALUE ...]",
    "search": "[--config=NAME_OR_FILE[:variant]] [--workdir=DIR] [--config.FIELD=VALUE ...]",
    "inspect": "MODEL.tflite [--json]",
    "validate": "MODEL.tflite --data=DATA.npz [--reference=MODEL.keras] [--json]",
    "android": "MODEL.tflite --out=DIR [--labels=a,b,...] [--overwrite]",
}


def usage() -> str:
    """The top-level help: every subcommand with one line."""
    lines = [f"usage: {PROG} COMMAND [flags]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    lines += ["", f"'{PROG} COMMAND --help' lists a command's flags; --verbosity=1 shows the "
              "native libraries' log lines too."]
    return "\n".join(lines)


def fail(message) -> NoReturn:
    """Ends the command with one line naming what was wrong (no traceback), exit status 2."""
    text = str(message)
    while text[:1] in "'\"":  # KeyError wraps its message in quotes, sometimes twice
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            break
    if "has no attribute 'get_config'" in text:
        text = (f"the config file defines no get_config ({text}); accepted: a Python file "
                "whose get_config() returns the recipe (tfcompress.pipeline.recipe."
                "default_config() changed), or a bundled recipe's name")
    elif isinstance(message, (KeyError, AttributeError)):
        text = f"unknown recipe field {text}"
    if "invalid literal for int()" in text or "could not convert string to float" in text:
        text += "; accepted: " + ("a whole number" if "int()" in text else "a number")
    ours = re.findall(r"tfcompress\.errors\.\w+: (.+)", text)
    raised = re.findall(r"^(\w+(?:Error|Exception)): (.+)$", text, re.M)
    if "Traceback" in text and (ours or raised):  # config_flags quotes a config file's traceback
        text = ours[-1] if ours else "the config file raised " + ": ".join(raised[-1])
    sys.stdout.flush()
    print("error: " + " ".join(str(text).split()), file=sys.stderr, flush=True)
    sys.exit(2)


# ---------------------------------------------------------------- flags of each command

def _config_args(argv) -> list:
    """``--config=NAME[:variant]`` with a bundled name becomes that file's path."""
    from tfcompress import configs, errors

    out = list(argv)
    for i, arg in enumerate(out):
        spec = None
        if arg.startswith("--config="):
            spec, prefix = arg[len("--config="):], "--config="
        elif arg == "--config" and i + 1 < len(out):
            spec, prefix = out[i + 1], None
        if spec is None:
            continue
        try:
            resolved = configs.path(spec)
            if os.path.dirname(resolved.partition(":")[0]) == configs.HERE:  # a bundled recipe:
                configs.load(resolved)  # its variant checked here, before config_flags wraps it
        except errors.ConfigError as e:
            fail(e)
        if prefix:
            out[i] = prefix + resolved
        else:
            out[i + 1] = resolved
    return out


def _unknown_override(args, error) -> Optional[str]:
    """The line for a ``--config.A.B=value`` naming a field the recipe lacks (``error``: the
    KeyError or AttributeError parsing it raised): its whole path and the fields accepted
    there; None where no override names it."""
    from tfcompress import configs

    text = str(error)  # the field's name, quoted, then config_flags' 'Did you mean "x"?'
    name, guess = re.search(r"[\w-]*", text.strip("'\"\\")), re.search(r'mean "([\w-]+)"', text)
    key = name.group(0)
    spec = next((a.partition("=")[2] for a in args if a.startswith("--config=")),
                configs.path(configs.DEFAULT))
    for arg in args:
        fields = arg.partition("=")[0][len("--config."):].split(".")
        if not arg.startswith("--config.") or key not in fields:
            continue
        where = fields[:fields.index(key)]
        try:
            node = configs.load(spec)
            for name in where:
                node = node[name]
            accepted = ", ".join(sorted(node.keys()))
        except Exception:  # noqa: BLE001  (the line then names the field only)
            accepted = None
        return (f"unknown recipe field {'.'.join(where + [key])} (in {arg})"
                + (f"; did you mean {guess.group(1)}?" if guess else "")
                + (f"; accepted in {'.'.join(where) or 'the recipe'}: {accepted}"
                   if accepted else ""))
    return None


def _define(command: str) -> dict:
    """Defines the flags of ``command``; returns their holders by name."""
    from absl import flags
    from ml_collections import config_flags

    from tfcompress import configs

    f = {}
    if command in ("compress", "search"):
        default = configs.path(configs.DEFAULT if command == "compress" else "digits_search")
        try:
            f["config"] = config_flags.DEFINE_config_file(
                "config", default, "Recipe: a bundled name (" + ", ".join(configs.names())
                + ") or a .py file, optionally :variant (e.g. digits_pcqat:smoke).")
        except (KeyError, AttributeError) as e:  # an override config_flags read in sys.argv
            fail(_unknown_override(sys.argv, e) or e)
        except (TypeError, ValueError, OSError) as e:
            fail(e)
        f["workdir"] = flags.DEFINE_string(
            "workdir", f"workdir/{'default' if command == 'compress' else 'search'}",
            "Where outputs are written.")
    if command == "compress":
        f["android_dir"] = flags.DEFINE_string(
            "android_dir", None, "Also write an Android bundle (model.tflite, labels.txt, "
            "model.json, README.md with the Kotlin lines) into this folder.")
        import tfcompress.export.modes as modes  # the registry of conversion modes

        f["android_mode"] = flags.DEFINE_enum(
            "android_mode", None, modes.names(), "Conversion mode of the Android bundle "
            "(default: the last of --config.convert.modes).")
        f["explorer"] = flags.DEFINE_bool(
            "explorer", True, "Write int8.quant_error.json beside int8.tflite: the per-layer "
            "int8 quantization error as Model Explorer node data (--node_data_paths).")
    if command in ("inspect", "validate"):
        f["json"] = flags.DEFINE_bool("json", False, "Print JSON instead of tables.")
    if command == "validate":
        f["data"] = flags.DEFINE_string("data", None, "An .npz holding x_test and y_test.")
        f["reference"] = flags.DEFINE_string(
            "reference", None, "A Keras model (.keras/.h5/SavedModel) to compare outputs with.")
        f["latency_runs"] = flags.DEFINE_integer("latency_runs", 50, "Timed invokes (0: none).")
        f["compiled_model"] = flags.DEFINE_list(
            "compiled_model", ["xnnpack"], "CPU kernel modes to run on LiteRT's CompiledModel "
            "and compare with the Interpreter (xnnpack, reference, builtin; empty: none).")
        f["ynnpack"] = flags.DEFINE_bool("ynnpack", False, "Also run each kernel mode with "
                                         "YNNPACK enabled.")
        f["litert_benchmark"] = flags.DEFINE_bool(
            "litert_benchmark", True, "Also time the file with LiteRT's own "
            "benchmark_litert_model (its median beside ours).")
    if command == "android":
        f["out"] = flags.DEFINE_string("out", None, "Folder of the bundle (new or empty).")
        f["overwrite"] = flags.DEFINE_bool(
            "overwrite", False, "Write into a non-empty --out folder, replacing model.tflite, "
            "labels.txt, model.json and README.md there.")
        f["labels"] = flags.DEFINE_list("labels", None, "Class names, in output order.")
        f["mean"] = flags.DEFINE_float("mean", None, "Input normalization x = (value - mean) / "
                                       "std (default 0).")
        f["std"] = flags.DEFINE_float("std", None, "Its std (default 255 for an image input, "
                                      "else 1: features fed as they are).")
    return f


def _positional(argv, command: str) -> Optional[str]:
    """The one model path of inspect/validate/android (none for compress/search)."""
    args = argv[1:]
    if command in ("compress", "search"):
        if args:
            fail(f"unexpected arguments: {args}")
        return None
    if len(args) != 1:
        fail(f"{PROG} {command} takes one .tflite path, got {len(args)} arguments: {args}")
    if not os.path.isfile(args[0]):
        fail(f"model file {args[0]!r} "
             + ("is a folder" if os.path.isdir(args[0]) else "does not exist")
             + "; accepted: a .tflite file")
    return args[0]


# ---------------------------------------------------------------- the commands

def _compress(f: dict, _path) -> None:
    from absl import logging

    import tfcompress.pipeline.recipe as recipe
    import tfcompress.pipeline.report as report_lib

    from tfcompress import console

    out = console.current()
    workdir = f["workdir"].value
    out.line(_compress_header(f["config"].value, workdir))
    result = recipe.run(f["config"].value, workdir, android_dir=f["android_dir"].value,
                        android_mode=f["android_mode"].value)
    if f["explorer"].value and any(row.format == "int8" for row in result.formats):
        _explorer_data(f["config"].value, workdir)
    logging.info("outputs in %s", os.path.abspath(workdir))
    if out.verbose:
        print(report_lib.markdown(result))
    else:
        print("\n" + report_lib.summary_table([r.to_dict() for r in result.formats]) + "\n")
    wd = os.path.abspath(workdir)
    print(f"report: {os.path.join(wd, 'report.md')} (also report.json"
          + (f", {result.plot}" if result.plot else "") + "); models: " + ", ".join(
              os.path.basename(r.path) for r in result.formats if r.path))
    if result.android:
        print(f"android bundle: {result.android['dir']}")


def _compress_header(config, workdir: str) -> str:
    """The first line of ``compress``: data, model, stages, modes and the workdir."""
    import tfcompress.pipeline.recipe as recipe

    c = recipe.check_config(config)
    model = os.path.basename(c.model.path) if c.model.path else c.model.name
    stages = " -> ".join(c.stages) if c.stages else "no stage"
    return (f"compress {model} on {c.data.name} data: {stages}; convert to "
            f"{', '.join(c.convert.modes)}; outputs in {os.path.abspath(workdir)}")


def _explorer_data(config, workdir: str) -> None:
    """int8.quant_error.json beside int8.tflite (the final Keras model's per-layer error)."""
    from absl import logging

    from tfcompress import console, errors, models, wrappers
    import tfcompress.export.explorer as explorer
    import tfcompress.pipeline.recipe as recipe
    import tfcompress.pipeline.stages as stages
    from tfcompress.pipeline.workdir import Workdir

    config = recipe.check_config(config)
    wd = Workdir(workdir)
    final = wd.final_model([(name, stages.STAGES[name].suffix) for name in config.stages])
    try:
        model = models.load_model(final)
        if wrappers.is_quantize_aware(model):  # the converter's debugger takes float models
            logging.info("no Model Explorer node data for int8.tflite: a QAT model")
            return
        path = explorer.write_quantization_error(
            model, recipe.load_data(config).train[0], wd.flatbuffer("int8"),
            representative_samples=config.convert.representative_samples,
            path=wd.explorer_data("int8"))
    except (errors.TfcompressError, ValueError, RuntimeError) as e:
        logging.warning("no Model Explorer node data for int8.tflite: %s", e)
        return
    logging.info("Model Explorer: model-explorer %s --node_data_paths=%s",
                 wd.flatbuffer("int8"), path)
    console.current().line(f"Model Explorer view of int8.tflite's quantization error: "
                           f"model-explorer {wd.flatbuffer('int8')} --node_data_paths={path}")


def _search(f: dict, _path) -> None:
    from absl import logging

    import tfcompress.pipeline.search as study

    logging.set_verbosity(logging.INFO)
    workdir = f["workdir"].value
    summary = study.search(f["config"].value, workdir)
    with open(os.path.join(workdir, "report.md")) as fh:
        print(fh.read())
    best = summary["best"]
    if best:
        print(f"best within budget: {best['model']} (recipe {best['config_file']})")
    print(f"outputs: {os.path.abspath(workdir)}")


def inspect_model(path: str) -> dict:
    """What ``tfcompress inspect`` shows, as a dict (JSON-ready)."""
    import numpy as np

    from tfcompress import profiling
    import tfcompress._compat.litert as _litert
    import tfcompress.export.conversion as conversion
    import tfcompress.export.lowbit as lowbit
    import tfcompress.export.validation as validation

    content = validation.verify(path)
    info = conversion.conversion_info(content)
    interp = _litert.interpreter(content, delegates=False, allocate=False)
    layers = lowbit.weight_layers(content)
    rows = []
    for op in _litert.ops(interp):
        outs = [_litert.tensor_name(interp, i) for i in op["outputs"] if i >= 0]
        layer = next((l for l in layers if outs and l.op == op["op_name"]
                      and outs[0] in l.scope), None)
        rows.append({
            "index": op["index"], "op": op["op_name"],
            "output_dtype": ",".join(sorted({np.dtype(t).name for t in op["result_types"]})),
            "output": outs[0] if outs else "",
            "layer": layer.name if layer else None,
            "weight_dtype": layer.dtype if layer else None,
            "weight_bits": layer.bits if layer else None,
            "weight_shape": list(layer.shape) if layer else None,
            "weight_bytes": layer.weight_bytes if layer else None,
        })
    return {"file": os.path.abspath(path), **profiling.tflite_sizes(content),
            "mode": info["mode"], "facts": {k: v for k, v in info["facts"].items()
                                            if k != "recipe"},
            "inputs": info["inputs"], "outputs": info["outputs"], "op_counts": info["ops"],
            "weight_dtypes": info["weight_dtypes"], "activation_dtype": info["activation_dtype"],
            "layers": rows, "xnnpack": validation.xnnpack_coverage(content),
            "gpu": validation.gpu_compatibility(content)}


def _inspect(f: dict, path: str) -> None:
    result = inspect_model(path)
    if f["json"].value:
        print(json.dumps(result, indent=2, default=str))
        return
    print(inspect_text(result))


def inspect_text(r: dict) -> str:
    """The Markdown of ``inspect_model``'s result."""
    io = lambda d: f"{d['dtype']} {tuple(d['shape'])}" + (  # noqa: E731
        f" (scale {d['scale']:.6g}, zero point {d['zero_point']})" if d["scale"] else "")
    lines = [f"# {r['file']}", "",
             f"bytes {r['bytes']:,}, gzip bytes {r['gzip_bytes']:,}; mode {r['mode']}; "
             f"activations {r['activation_dtype'] or '-'}",
             "inputs: " + "; ".join(io(d) for d in r["inputs"]),
             "outputs: " + "; ".join(io(d) for d in r["outputs"]), "",
             "| # | op | output dtype | layer | weight dtype | weight bits | weight shape "
             "| weight bytes |", "|---|---|---|---|---|---|---|---|"]
    cell = lambda v: "-" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))  # noqa: E731
    for row in r["layers"]:
        shape = "x".join(map(str, row["weight_shape"])) if row["weight_shape"] else None
        lines.append("| " + " | ".join(cell(v) for v in (
            row["index"], row["op"], row["output_dtype"], row["layer"], row["weight_dtype"],
            row["weight_bits"], shape, row["weight_bytes"])) + " |")
    x = r["xnnpack"]
    fell = ", ".join(f"{op} x{n}" for op, n in x["fallback_ops"].items())
    gpu = r["gpu"]
    bad = ", ".join(o["op"] for o in gpu["incompatible_ops"])
    lines += ["", f"XNNPACK: {x['delegated']}/{x['nodes']} nodes in {x['partitions']} "
              f"partition(s)" + (f"; fell back: {fell}" if fell else ""),
              "GPU analyzer: " + ("compatible" if gpu["compatible"] else
                                  f"not compatible ({bad or '; '.join(gpu['warnings'][:3])})")]
    return "\n".join(lines)


def _validate(f: dict, path: str) -> None:
    from tfcompress import data, models
    import tfcompress.export.validation as validation
    import tfcompress.pipeline.report as report_lib

    if not f["data"].value:
        fail(f"{PROG} validate needs --data=FILE.npz (arrays x_test, y_test)")
    (x_test, y_test), = data.load_npz(f["data"].value, splits=("test",))
    reference = models.load_model(f["reference"].value) if f["reference"].value else None
    result = validation.validate(
        path, x_test, y_test, reference=reference, latency_runs=f["latency_runs"].value,
        compiled_model=tuple(f["compiled_model"].value or ()), ynnpack=f["ynnpack"].value,
        litert_benchmark=f["litert_benchmark"].value and f["latency_runs"].value > 0).to_dict()
    if f["json"].value:
        print(json.dumps(result, indent=2, default=str))
        return
    row = {"format": os.path.basename(path), **result}
    print(report_lib.table([row]))
    print(report_lib.format_notes([row]))


def _android(f: dict, path: str) -> None:
    import tfcompress.export.android as android

    if not f["out"].value:
        fail(f"{PROG} android needs --out=DIR")
    mean, std = f["mean"].value, f["std"].value
    android.export_android(path, f["out"].value, labels=f["labels"].value,
                           overwrite=f["overwrite"].value,
                           normalization=None if mean is None and std is None else {
                               "mean": mean or 0.0, "std": 255.0 if std is None else std})
    print(f"android bundle: {os.path.abspath(f['out'].value)}")


def _console_for_people() -> None:
    """Turns on ``tfcompress.console``. Below ``--verbosity=1``: absl's handler leaves the root
    logger and warnings (anyone's) become plain ``warning: ...`` lines on the console, INFO lines
    are dropped (the console's lines say what happens). ``--verbosity=1`` keeps absl's lines,
    prefixes and all, and Keras' per-epoch lines."""
    import logging

    from absl import logging as absl_logging

    from tfcompress import console

    if absl_logging.get_verbosity() >= 1:
        console.enable(verbose=True)
        return
    out = console.enable()
    root = logging.getLogger()
    root.removeHandler(absl_logging.get_absl_handler())
    root.addHandler(console.LogHandler(out))
    logging.captureWarnings(True)  # Python warnings (Keras' UserWarning) as plain lines too


_RUN: dict[str, Callable] = {"compress": _compress, "search": _search, "inspect": _inspect,
                             "validate": _validate, "android": _android}


def main(argv=None) -> None:
    """The console entry point (``tfcompress = tfcompress.cli:main`` in setup.cfg)."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2:
        fail(f"missing command; accepted: {', '.join(COMMANDS)} ({PROG} --help lists them)")
    command = argv[1]
    if command in ("-h", "--help", "help", "--helpfull"):
        print(usage())
        sys.exit(0)
    if command not in COMMANDS:
        fail(f"unknown command {command!r}; accepted: {', '.join(COMMANDS)}")
    try:
        _run(command, argv)
    except KeyboardInterrupt:  # while TensorFlow loads or flags parse
        fail(INTERRUPTED)


INTERRUPTED = ("interrupted (Ctrl-C); rerun the same command to resume: finished stages are "
               "kept in the workdir")


def _run(command: str, argv) -> None:
    from absl import app, flags

    rest = argv[2:]
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in rest):
        f = _define(command)
        print(f"usage: {PROG} {command} {SYNOPSIS[command]}\n\n{COMMANDS[command]}.\n")
        print(flags.FLAGS.module_help(sys.modules[__name__]) or "")
        if command in ("compress", "search"):
            from tfcompress import configs

            print("\nbundled recipes (--config=NAME): " + ", ".join(configs.names()))
        sys.exit(0)
    rest = _config_args(rest)
    f = _define(command)

    def parse(args):
        try:
            return flags.FLAGS(args)
        except (KeyError, AttributeError) as e:
            fail(_unknown_override(args, e) or e)
        except (flags.Error, TypeError, ValueError, OSError) as e:
            fail(e)
        except Exception as e:  # noqa: BLE001  (the user's --config file raised or is not Python)
            fail(_config_file_error(e))

    def guarded(args):
        import tfcompress

        path = _positional(args, command)
        tfcompress.quiet_tensorflow()
        _console_for_people()
        try:
            _RUN[command](f, path)
        except tfcompress.TfcompressError as e:
            fail(e)
        except KeyboardInterrupt:
            fail(INTERRUPTED)
        except OSError as e:  # config_flags reports a missing or broken --config file this way
            fail(" ".join(str(e).split()))

    _warn_repeated(rest)
    app.run(guarded, argv=[f"{PROG} {command}"] + rest, flags_parser=parse)


def _config_file_error(e: BaseException) -> str:
    """One line for a ``--config`` file that raised or does not parse: where, and what."""
    import traceback

    if isinstance(e, SyntaxError):
        return (f"--config file {e.filename}:{e.lineno}: {type(e).__name__}: {e.msg}; accepted: "
                "a Python file defining get_config()")
    frames = [fr for fr in traceback.extract_tb(e.__traceback__)
              if not fr.filename.startswith(("<", os.path.dirname(sys.modules["absl"].__file__)))]
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    return (f"--config file raised {type(e).__name__}: {e} ({where.rstrip(': ') or 'loading'}); "
            "accepted: a Python file whose get_config() returns a ConfigDict")


def _warn_repeated(args) -> None:
    """One warning line for each flag given twice (absl keeps the last value silently)."""
    seen = {}
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]  # --name VALUE
        if name in seen:
            print(f"warning: --{name} given twice ({seen[name] or '(no value)'}, then "
                  f"{value or '(no value)'}); the last is used", file=sys.stderr, flush=True)
        seen[name] = value


if __name__ == "__main__":
    main()
