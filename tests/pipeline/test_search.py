"""tfcompress.search: space from registered stages, recipes of trials, Pareto front, a study
shared by two processes, and a killed search that resumes to the same front."""

import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import tfcompress
from tfcompress import errors
from tfcompress.pipeline import recipe
from tfcompress.pipeline.search import check_config, default_config, search
from tfcompress.pipeline.search_records import pareto_front
from tfcompress.pipeline.search_space import parse_params, space, trial_recipe
from tfcompress.pipeline.search_trials import recipe_source

import search_workers as workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODES = ("float16", "dynamic", "int8")  # three: a process slow to open the study still gets one


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_public_name_is_the_function():
    assert tfcompress.search is search and callable(tfcompress.search)


def test_space_holds_only_dimensions_with_a_choice():
    config = check_config(default_config())
    assert {"sparsity", "clusters"} <= set(space(config))
    assert all(tfcompress.pipeline.search_space.DIMENSIONS[d][0]
               in tfcompress.pipeline.stages.STAGES
               for d in space(config) if d != "mode")
    config.space.sparsity, config.space.clusters = (0.0,), (0,)
    dims = space(config)
    assert "sparsity" not in dims and "clusters" not in dims
    assert dims["mode"] == ("float16", "dynamic", "int8")


def test_trial_recipe_order_sections_and_qat():
    config = check_config(default_config())
    params = {"mode": "int8", "sparsity": 0.9, "clusters": 8, "distill_width": 0.5,
              "channel_ratio": 0.0, "factorize_energy": 0.0}
    r = trial_recipe(config, params, "/m.keras", qat=True)
    assert r.stages == ("distill", "prune", "cluster", "qat")
    assert r.prune.target_sparsity == 0.9 and r.cluster.number_of_clusters == 8
    assert r.cluster.preserve_sparsity and r.qat.preserve == "sparsity_and_clusters"
    assert r.distill.width == 0.5 and r.convert.modes == ("int8",) and r.model.path == "/m.keras"
    only = trial_recipe(config, {"mode": "float16", "sparsity": 0.0, "clusters": 0}, "/m.keras")
    assert only.stages == ()


def test_depth_and_spatial_svd_dimensions():
    config = check_config(default_config())
    assert space(config)["factorize_conv"] == ("channel", "spatial")
    r = trial_recipe(config, {"mode": "int8", "block_fraction": 0.25, "factorize_energy": 0.9,
                              "factorize_conv": "spatial"}, "/m.keras")
    assert r.stages == ("prune_blocks", "factorize")
    assert r.prune_blocks.fraction == 0.25 and r.factorize.conv == "spatial"
    alone = trial_recipe(config, {"mode": "int8", "factorize_conv": "spatial"}, "/m.keras")
    assert alone.stages == ()  # the kind of SVD needs an energy to act on


def test_recovery_dimension_adds_the_recover_stage_for_its_mode():
    config = check_config(default_config())
    assert space(config)["recovery"] == (0, 1)
    r = trial_recipe(config, {"mode": "dynamic_wi4", "sparsity": 0.5, "recovery": 1}, "/m.keras")
    assert r.stages == ("prune", "recover") and r.recover.mode == "dynamic_wi4"
    assert trial_recipe(config, {"mode": "float16", "recovery": 1}, "/m.keras").stages == ()
    assert "recover" not in trial_recipe(config, {"mode": "int8", "recovery": 1}, "/m.keras",
                                         qat=True).stages  # QAT learns its own grid


def test_budget_needs_the_upper_bound_of_the_drop():
    from tfcompress.pipeline import stats

    base = [True] * 300
    lucky = [True] * 292 + [False] * 4 + [True] * 4  # 4 lost, 0 gained: 1.33 points
    mixed = [True] * 280 + [False] * 10 + [True] * 10  # the same 10 lost...
    gained = [False] * 10 + [True] * 290  # ...against 10 others gained
    d = stats.paired_difference(base, lucky)
    assert d["difference_points"] == pytest.approx(-4 / 3)
    assert stats.drop_upper_bound(d, 0.5) == pytest.approx(4 / 3)
    assert stats.drop_upper_bound(d, 0.9) > 4 / 3 + 0.5
    # Two models with the same observed drop: the one with more discordant images is riskier.
    swap = stats.paired_difference(mixed, gained)
    assert swap["difference_points"] == pytest.approx(0.0)
    assert stats.drop_upper_bound(swap, 0.9) > 1.0 > stats.drop_upper_bound(
        stats.paired_difference(base, base), 0.9)
    with pytest.raises(errors.ConfigError, match="budget_confidence=1.5"):
        check_config({"budget_confidence": 1.5})


def test_recipe_source_runs_as_a_config_file(tmp_path):
    config = check_config(default_config())
    r = trial_recipe(config, {"mode": "int8", "sparsity": 0.75, "clusters": 16}, "/m.keras",
                     qat=True)
    path = tmp_path / "trial_3.py"
    path.write_text(recipe_source(r, "trial 3"))
    module = _load(str(path))
    assert "scripts/compress.py" in module.__doc__
    assert recipe.check_config(module.get_config()).to_dict() == r.to_dict()


def test_pareto_front_drops_dominated_and_duplicate_points():
    rec = lambda n, a, o, s="COMPLETE": {"number": n, "state": s, "accuracy": a, "objective": o}  # noqa: E731
    records = [rec(0, 0.98, 100), rec(1, 0.97, 50), rec(2, 0.96, 60), rec(3, 0.97, 50),
               rec(4, 0.90, 10), rec(5, 0.99, 5, "PRUNED"), rec(6, 0.98, 120)]
    assert [r["number"] for r in pareto_front(records)] == [4, 1, 0]


@pytest.mark.parametrize("field,value,words", [
    ("objective", "energy", "unknown objective 'energy'; accepted: size, latency, macs"),
    ("max_drop", -1.0, "max_drop=-1.0"),
    ("seeds", ("mode=int8,depth=3",), "unknown seed field 'depth'"),
    ("colour", 1, "unknown search field 'colour'"),
    ("seeds", ("mode=int8,sparsity=0.85",), "sparsity=0.85 is not among space.sparsity"),
])
def test_bad_config_names_the_value(field, value, words):
    config = default_config().to_dict()
    config[field] = value
    with pytest.raises(errors.ConfigError, match=words.replace("(", r"\(")):
        check_config(config)


def test_a_recipe_given_as_search_config_says_so():
    """``tfcompress search --config=text`` passes a recipe (its --help lists every config)."""
    from tfcompress import configs
    with pytest.raises(errors.ConfigError, match=r"is a recipe \(it has stages\), not a "
                                                 r"search config; accepted: a search config"):
        check_config(configs.load("text:smoke"))


def test_recipe_convert_options_reach_each_trials_mode_and_bad_ones_fail_early():
    """No options dimension: ``recipe.convert.options`` go to each trial's mode that takes them;
    a space.mode that cannot take them is one line at check time, not a failed trial."""
    from tfcompress.export.conversion import options_from_section

    config = default_config()
    config.space.mode = ("int8", "dynamic_wi4")
    config.recipe.convert.options.algorithm = "octav"
    config = check_config(config)
    got = {m: options_from_section(m, trial_recipe(config, {"mode": m}, "/m.keras").convert)
           for m in config.space.mode}
    assert got == {"int8": None, "dynamic_wi4": {"algorithm": "octav"}}
    assert type(got["dynamic_wi4"]) is dict
    config.space.mode = ("dynamic_wi4", "static_wi8_ai8")
    config.recipe.convert.options.algorithm = "gptq"
    with pytest.raises(errors.ConfigError, match="space.mode 'static_wi8_ai8' with recipe.conv"
                                                 "ert: quantizer algorithm 'gptq' does not apply"
                       ) as e:
        check_config(config)
    assert "\n" not in str(e.value)


def test_parse_params():
    assert parse_params("mode=int8, sparsity=0.9,clusters=16") == {
        "mode": "int8", "sparsity": 0.9, "clusters": 16}


# ---------------------------------------------------------------- processes sharing a study

CONFIG = """
from tfcompress.pipeline.search import default_config


def get_config():
    c = default_config()
    c.recipe.model.path = {model!r}
    c.recipe.convert.representative_samples = 16
    c.recipe.validate.latency_runs = 2
    c.recipe.validate.compiled_model = ()  # checked in tests/export
    c.space.mode = {modes!r}
    for dim in ("distill_width", "channel_ratio", "factorize_energy", "sparsity"):
        c.space[dim] = (0.0,)
    c.space.clusters = (0,)
    c.space.recovery = (0,)
    c.n_trials = {n}
    c.heartbeat_interval = 1
    return c
"""


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, trained_cnn):
    folder = tmp_path_factory.mktemp("search")
    model = str(folder / "baseline.keras")
    tfcompress.models.save_model(trained_cnn, model)
    path = folder / "search_config.py"
    path.write_text(CONFIG.format(model=model, modes=MODES, n=len(MODES)))
    return str(path)


def _start(config_file, workdir):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "search.py"), f"--config={config_file}",
         f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)


def _records(workdir):
    path = os.path.join(workdir, "trials.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _states(workdir):
    """The trial states in the study database now (read only)."""
    path = os.path.join(workdir, "study.db")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=10)) as db:
            return [row[0] for row in db.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # not created yet
        return []


def _points(front):
    return sorted((r["params"]["mode"], r["accuracy"], r["objective"]) for r in front)


@pytest.fixture(scope="module")
def shared_study(config_file, tmp_path_factory):
    """Two processes run one SQLite study in one workdir at the same time.

    The test holds the study lock until both wait on it, so both reach the first trials
    together (otherwise a process slow to import TensorFlow may find nothing left to run).
    """
    workdir = str(tmp_path_factory.mktemp("shared"))
    lock, logs = os.path.join(workdir, ".study.lock"), [f"{workdir}.{i}.log" for i in range(2)]
    with workers.hold_lock(lock):
        procs = [workers.start(config_file, workdir, log) for log in logs]
        workers.wait_until(lambda: workers.waiting_on(lock) == 2, procs, logs, 300,
                           "both processes wait to open the study")
    for p, log in zip(procs, logs):
        assert p.wait(timeout=300) == 0, workers.tail(log)
    with open(os.path.join(workdir, "search.json")) as f:
        return workdir, json.load(f), [workers.worker(p) for p in procs]


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(shared_study):
    workdir, summary, procs = shared_study
    records = _records(workdir)
    done = [r for r in records if r["state"] == "COMPLETE"]
    assert sorted(r["params"]["mode"] for r in done) == sorted(MODES)  # each candidate once
    assert {r["worker"] for r in done} == set(procs)  # both processes ran trials
    assert all(r["state"] == "COMPLETE" for r in records), [r["state"] for r in records]
    assert len({r["folder"] for r in done}) == len(MODES)
    # Outputs: every front point's recipe runs as a config; the best model was re-validated.
    for point in summary["front"]:
        cfg = recipe.check_config(_load(point["config_file"]).get_config())
        assert cfg.convert.modes == (point["params"]["mode"],) and os.path.exists(cfg.model.path)
    best = summary["best"]
    assert best["held_out"]["accuracy"] == pytest.approx(best["test_accuracy"])  # test, again
    assert best["accuracy"] >= summary["accuracy_floor"]
    assert best["gzip_bytes"] == min(r["gzip_bytes"] for r in done if r["feasible"])
    with open(os.path.join(workdir, "pareto.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(workdir, "report.md")) as f:
        assert "![accuracy against size and latency](pareto.png)" in f.read()


@pytest.mark.slow
def test_killed_search_resumes_to_the_same_front(config_file, shared_study, tmp_path):
    workdir = str(tmp_path / "killed")
    proc = _start(config_file, workdir)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not {"COMPLETE", "RUNNING"} <= set(
            _states(workdir)):
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be killed mid-trial"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len([r for r in _records(workdir) if r["state"] == "COMPLETE"]) < len(MODES)
    time.sleep(3)  # past the heartbeat grace period: the trial in flight is stale
    summary = search(_load(config_file).get_config(), workdir)
    records = _records(workdir)
    done = [r for r in records if r["state"] == "COMPLETE"]
    assert sorted(r["params"]["mode"] for r in done) == sorted(MODES)
    # The trial in flight at the kill was marked failed (stale heartbeat) and run again.
    assert [r["state"] for r in records].count("FAIL") == 1
    assert _points(summary["front"]) == _points(shared_study[1]["front"])
    failed = next(r for r in records if r["state"] == "FAIL")
    retry = next(r for r in done if r.get("retry_of") is not None)
    assert retry["retry_of"] == failed["number"]
    # the same candidate, from the killed process (a trial killed before it recorded its
    # worker and drew its parameters has neither)
    if "worker" in failed:
        assert failed["worker"] == workers.worker(proc)
    assert retry["params"] == failed["params"] or failed["params"] == {}
    assert retry["worker"] == f"{workers.HOST}:{os.getpid()}"


def test_script_bad_objective_is_one_line_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "search.py"),
         "--config.objective=energy", f"--workdir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [  # the whole output is this one line
        "error: unknown objective 'energy'; accepted: size, latency, macs"]
    assert not os.listdir(tmp_path)  # nothing trained or written


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")  # ask()
def test_a_trial_killed_before_its_first_heartbeat_is_retried(tmp_path):
    import optuna

    from tfcompress.pipeline.search import _storage
    from tfcompress.pipeline.shared_storage import fail_stale

    config = check_config({"heartbeat_interval": 1})
    storage = _storage(config, str(tmp_path))
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    study.enqueue_trial({"mode": "int8"})
    trial = study.ask()  # RUNNING, and no heartbeat: its process died before the first beat
    trial.suggest_categorical("mode", ["float16", "int8"])
    time.sleep(2.5)  # past the grace period (2 x heartbeat_interval)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)
    assert study.trials[0].state.name == "RUNNING"  # Optuna alone would wait for it for ever
    fail_stale(study, storage, 2.0)  # it gets a heartbeat: stale one grace period later
    assert study.trials[0].state.name == "RUNNING"
    time.sleep(3.1)  # SQLite's clock for heartbeats counts whole seconds
    fail_stale(study, storage, 2.0)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"], states
    assert study.trials[1].system_attrs["failed_trial"] == 0
    assert study.trials[1].params == {"mode": "int8"}


def _int8_only(tmp_path, model_path: str):
    c = default_config()
    c.recipe.model.path = model_path
    c.recipe.data.limit = 400
    c.recipe.convert.representative_samples = 16
    c.recipe.validate.latency_runs = 0
    c.recipe.validate.compiled_model = ()  # checked in tests/export
    c.recipe.qat.epochs = 1
    c.space.mode = ("int8",)
    for dim in ("distill_width", "channel_ratio", "factorize_energy", "sparsity"):
        c.space[dim] = (0.0,)
    c.space.clusters = (0,)
    c.space.recovery = (0,)
    c.max_drop = 0.0
    c.qat_recover = 100.0  # every miss of the budget gets QAT
    return check_config(c)


@pytest.mark.slow
def test_a_trial_that_tries_qat_keeps_each_folder_self_consistent(tmp_path, trained_cnn):
    """PTQ and QAT run into sibling folders; each folder's report figures are those of the
    flatbuffer beside it (validated again here), and the trial points at the one it chose."""
    import optuna

    import tfcompress.pipeline.search as search_lib
    import tfcompress.pipeline.search_trials as search_trials
    from tfcompress.export.validation import validate

    model_path = str(tmp_path / "model.keras")
    tfcompress.models.save_model(trained_cnn, model_path)
    config = _int8_only(tmp_path, model_path)
    workdir = str(tmp_path / "search")
    baseline = search_lib._baseline(config, workdir)
    baseline = {**baseline, "accuracy": 1.01}  # a budget no PTQ meets: the trial tries QAT
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({"mode": "int8"})
    run = search_trials.TrialRunner(config, workdir, baseline, study)
    study.optimize(run.objective, n_trials=1)
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert trial.state.name == "COMPLETE" and "qat_accuracy" in attrs, attrs
    folder = attrs["folder"]
    assert sorted(os.listdir(folder)) == ["ptq", "qat"]
    splits = recipe.load_data(config.recipe)
    figures = {}
    for name in ("ptq", "qat"):
        with open(os.path.join(folder, name, "report.json")) as f:
            row = next(r for r in json.load(f)["formats"] if r["format"] == "int8")
        tflite = os.path.join(folder, name, "int8.tflite")
        test = validate(tflite, *splits.test, latency_runs=0)
        val = validate(tflite, *splits.validation, latency_runs=0)
        assert (row["accuracy"], row["bytes"], row["gzip_bytes"]) == (
            test.accuracy, test.bytes, test.gzip_bytes), name
        assert row["validation"]["accuracy"] == val.accuracy, name
        assert os.path.exists(os.path.join(folder, name, "recipe.py"))
        figures[name] = row["validation"]["accuracy"]
    with open(os.path.join(folder, "qat", "report.json")) as f:
        assert json.load(f)["config"]["stages"] == ["qat"]
    assert (attrs["ptq_accuracy"], attrs["qat_accuracy"]) == (figures["ptq"], figures["qat"])
    chosen = "qat" if figures["qat"] > figures["ptq"] else "ptq"
    assert attrs["chosen"] == chosen and attrs["accuracy"] == figures[chosen]
    assert attrs["tflite"] == os.path.join(folder, chosen, "int8.tflite")
    assert attrs["recipe"] == os.path.join(folder, chosen, "recipe.py")


# ---------------------------------------------------------------- sequence models (issue 26)

def _kind_layers(kind):
    import model_kinds

    from tfcompress.pipeline import sequence_space
    return sequence_space.read(model_kinds.KINDS[kind]()[0])


def test_sequence_dimensions_are_offered_where_the_model_has_the_layers():
    """Read from the model: the Transformer gets units (its feed-forward), heads, its one
    encoder block, an Embedding rank below its width 16, table widths and the int4 table
    modes; the LSTM units, rank and widths (no heads, no blocks); the DS-CNN none of them."""
    from tfcompress.pipeline import sequence_space
    config = check_config(default_config())
    config.space.embedding_rank = (0, 4, 16, 32)  # 16 and 32 are not below the tables' widths
    seq = set(sequence_space.DIMENSIONS)
    transformer = space(config, _kind_layers("transformer"))
    assert transformer["unit_ratio"] == (0.0, 0.25, 0.5) and transformer["head_ratio"] == (0.0, 0.5)
    assert transformer["encoder_blocks"] == (0, 1) and transformer["embedding_rank"] == (0, 4)
    assert transformer["embedding_bits"] == (0, 8, 4)
    assert transformer["mode"][-2:] == ("dynamic_wi4", "dynamic_wi4_block32")
    lstm = space(config, _kind_layers("lstm"))
    assert seq & set(lstm) == {"unit_ratio", "embedding_rank", "embedding_bits"}
    cnn = space(config, _kind_layers("dscnn"))
    assert not seq & set(cnn) and cnn["mode"] == tuple(config.space.mode)
    assert cnn == space(config)  # no sequence layer: the space without the model
    config.space.mode, config.space.embedding_modes = ("int8",), ()
    assert "embedding_bits" not in space(config, _kind_layers("lstm"))  # no low-bit mode


def test_sequence_trial_recipes_set_their_stage_sections():
    config = check_config(default_config())
    layers = _kind_layers("transformer")
    r = trial_recipe(config, {"mode": "dynamic_wi8", "unit_ratio": 0.5, "embedding_rank": 4,
                              "embedding_bits": 4}, "/m.keras", layers=layers)
    assert r.stages == ("prune_channels", "factorize")
    assert r.prune_channels.ratio == 0.5 and r.prune_channels.layers == ("ffn1",)
    assert r.factorize.rank == 4 and r.factorize.layers == ("embedding",)
    assert r.convert.overrides == ("EMBEDDING_LOOKUP=4",)
    heads = trial_recipe(config, {"mode": "int8", "head_ratio": 0.5, "encoder_blocks": 0,
                                  "embedding_bits": 8}, "/m.keras", layers=layers)
    assert heads.stages == ("prune_channels",) and heads.prune_channels.heads_only
    assert heads.convert.overrides == ()  # int8 (the converter): no table override
    blocks = trial_recipe(config, {"mode": "float16", "encoder_blocks": 1, "head_ratio": 0.5},
                          "/m.keras", layers=layers)
    assert blocks.stages == ("prune_blocks",)  # blocks first: no heads pruned by name
    assert blocks.prune_blocks.unit == "encoder" and blocks.prune_blocks.n == 1
    # A general dimension of the same stage wins; the values that would not act are 0.
    both = {"mode": "dynamic_wi4_block32", "channel_ratio": 0.25, "unit_ratio": 0.5,
            "embedding_bits": 8}
    assert _effective(both) == {**both, "unit_ratio": 0.0, "embedding_bits": 0}
    r = trial_recipe(config, both, "/m.keras", layers=layers)
    assert r.prune_channels.ratio == 0.25 and r.prune_channels.layers == ()
    assert parse_params("mode=dynamic_wi4,encoder_blocks=1,unit_ratio=0.5") == {
        "mode": "dynamic_wi4", "encoder_blocks": 1, "unit_ratio": 0.5}


def _effective(params):
    from tfcompress.pipeline import sequence_space
    return sequence_space.effective(params)


@pytest.mark.slow
def test_search_smoke_on_a_transformer_text_model(tmp_path):
    """Two trials on a tiny Transformer (int32 token ids): int4 weights with per-row tables,
    then half its heads removed with int8 tables; both complete and the result is written."""
    import numpy as np
    import model_kinds

    import tfcompress.export.lowbit as lowbit
    model, (x, y), (xt, yt) = model_kinds.trained("transformer")
    path = str(tmp_path / "transformer.keras")
    tfcompress.models.save_model(model, path)
    npz = str(tmp_path / "tokens.npz")
    np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
    config = default_config()
    config.recipe.model.path = path
    config.recipe.data.name, config.recipe.data.path = "npz", npz
    config.recipe.convert.representative_samples = 16
    config.recipe.validate.latency_runs = 0
    config.recipe.validate.litert_benchmark = False
    config.recipe.validate.compiled_model = ()
    config.recipe.prune_channels.epochs = 1
    config.space.mode, config.space.embedding_modes = ("dynamic_wi4",), ()
    for dim in ("distill_width", "channel_ratio", "factorize_energy", "sparsity"):
        config.space[dim] = (0.0,)
    config.space.clusters, config.space.recovery = (0,), (0,)
    config.seeds = ("mode=dynamic_wi4,head_ratio=0.5,embedding_bits=8",)
    config.n_trials = 2
    workdir = str(tmp_path / "search")
    summary = search(config, workdir, max_drop=100.0)
    assert {"unit_ratio", "head_ratio", "encoder_blocks", "embedding_bits"} <= set(
        summary["space"])
    assert summary["states"] == {"COMPLETE": 2}
    records = _records(workdir)
    plain, heads = sorted(records, key=lambda r: r["number"])
    assert plain["stages"] == [] and heads["stages"] == ["prune_channels"]
    with open(os.path.join(os.path.dirname(heads["tflite"]), "report.json")) as f:
        assert json.load(f)["stages"]["prune_channels"]["heads"] == {"attention": [2, 1]}
    tables = {r["tflite"]: [l for l in lowbit.weight_layers(r["tflite"])
                            if l.op == "EMBEDDING_LOOKUP"] for r in (plain, heads)}
    assert [l.bits for l in tables[plain["tflite"]]] == [4]
    assert [l.bits for l in tables[heads["tflite"]]] == [8]
    with open(os.path.join(workdir, "search.json")) as f:
        assert json.load(f)["best"]["number"] in (0, 1)


def test_finetune_dimension_adds_label_free_qat_after_recovery():
    config = check_config(default_config())
    assert "finetune" not in space(config)  # off unless the space offers it
    config.space.finetune = (0, 1)
    assert space(config)["finetune"] == (0, 1)
    r = trial_recipe(config, {"mode": "dynamic_wi4", "recovery": 1, "finetune": 1}, "/m.keras")
    assert r.stages == ("recover", "finetune_quantized")
    assert r.finetune_quantized.mode == "dynamic_wi4" and not r.finetune_quantized.equalize
    alone = trial_recipe(config, {"mode": "int8", "finetune": 1}, "/m.keras")
    assert alone.stages == ("finetune_quantized",) and alone.finetune_quantized.equalize
    assert trial_recipe(config, {"mode": "float16", "finetune": 1}, "/m.keras").stages == ()
