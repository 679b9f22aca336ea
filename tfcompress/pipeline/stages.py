"""The table of recipe stages: each stage's config section and its adapter to a technique.

A stage is ``fn(model, section, ctx) -> model``: it calls one technique's public function with
the fields of its recipe section (``config.<name>``), fine-tunes through ``ctx.fit``, records its
measured figures in ``ctx.stats[name]``, and returns the model for the next stage. The techniques
know nothing of recipes; the recipe runner and the search know the stages only through
``STAGES``. Every accuracy a stage records is measured on the validation split (``ctx.accuracy``).
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow_model_optimization as tfmot
from absl import logging
from ml_collections import ConfigDict

from tfcompress import console, data, errors, models, profiling, progress, wrappers
import tfcompress.surgery.blocks as blocks
import tfcompress.tasks as tasks
import tfcompress.training.clustering as clustering
import tfcompress.export.conversion as conversion
import tfcompress.export.modes as modes
import tfcompress.training.distillation as distillation
import tfcompress.training.finetune as finetune
import tfcompress.ptq.equalization as equalization
import tfcompress.surgery.factorization as factorization
import tfcompress.training.pruning as pruning
import tfcompress.training.qat as quantization
import tfcompress.surgery.recalibration as recalibration
import tfcompress.ptq.recovery as recovery
import tfcompress.ptq.rounding as rounding
import tfcompress.surgery.channels as surgery
from tfcompress._compat.keras import keras
from tfcompress._surgery_report import attach
from tfcompress.pipeline.workdir import Workdir


@dataclasses.dataclass
class Context:
    """What a stage may use besides the model: the data splits, the recipe, a fit helper."""

    config: ConfigDict
    splits: data.DataSplits
    workdir: str
    stats: dict = dataclasses.field(default_factory=dict)  # stage name -> measured figures
    step: str = ""  # the stage running now (the runner sets it; names its progress bar)
    task: str = "classification"  # "binary", "regression" (tfcompress.tasks): loss and score

    @property
    def metric(self) -> str:
        """The name of the task's score: ``accuracy``, or ``r2`` for regression."""
        return tasks.PRIMARY[self.task]

    @property
    def train(self) -> data.Split:
        return self.splits.train

    @property
    def validation(self) -> data.Split:
        return self.splits.validation

    @property
    def num_classes(self) -> int:
        return int(max(int(y.max()) for _, y in self.splits)) + 1

    @property
    def steps_per_epoch(self) -> int:
        return int(np.ceil(len(self.train[0]) / self.config.train.batch_size))

    def fit(self, model, epochs: int, *, learning_rate: Optional[float] = None,
            callbacks=(), loss=None):
        """Compiles ``model`` and fits it on the training split for ``epochs`` (the validation
        split is passed as ``validation_data``, so callbacks decide on it). The loss follows
        the task: sparse cross-entropy for classification, binary cross-entropy for binary,
        mean squared error for regression."""
        train = self.config.train
        regression = self.task == "regression"
        task_loss = (keras.losses.MeanSquaredError() if regression else
                     keras.losses.BinaryCrossentropy(from_logits=train.from_logits)
                     if self.task == "binary" else
                     keras.losses.SparseCategoricalCrossentropy(from_logits=train.from_logits))
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate or train.learning_rate),
            loss=loss or task_loss,
            metrics=["mae"] if regression else ["accuracy"],
        )
        if epochs:
            (x, y), val = self.train, self.validation
            # The command's console for people: one progress line instead of Keras' epochs.
            quiet = console.current().for_people
            what = "train" if self.step in ("", "baseline") else "fine-tune"
            bar = [progress.ProgressBar(f"{self.step or 'model'}: {what}")] if quiet else []
            model.fit(x, y, batch_size=train.batch_size, epochs=epochs, validation_data=val,
                      callbacks=list(callbacks) + bar, verbose=0 if quiet else 2)
        return model

    def accuracy(self, model) -> float:
        """The task's score of the Keras model on the validation split (the split decisions
        are taken on): accuracy, or R^2 for regression (``metric`` names it)."""
        x, y = self.validation
        return tasks.score(model.predict(x, verbose=0), y, self.task)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A recipe stage: its adapter, its section's fields with defaults, its saved file suffix."""

    fn: Callable
    defaults: dict
    suffix: str = ".keras"  # where .keras cannot hold the result (tfmot QAT: only .h5 loads)
    # What the technique refuses, checked before anything trains: ``check_values(section)``
    # with the recipe (no model), ``check_model(model, section, ctx, zeros) -> zeros`` on the
    # baseline, ``zeros`` {layer: share of zeros} the stages before leave. A stage with
    # ``check_model`` keeps the model's layers, so the next stage's may run on it too.
    check_values: Optional[Callable] = None
    check_model: Optional[Callable] = None


def _prune_args(section, ctx) -> dict:
    """``pruning.prune``'s arguments (and ``pruning.check``'s) from the stage's section."""
    return dict(target_sparsity=section.target_sparsity, epochs=section.epochs,
                steps_per_epoch=ctx.steps_per_epoch, schedule=section.schedule,
                layers=section.layers or None, m_by_n=section.m_by_n or None,
                keep_first_last=section.keep_first_last)


def _check_prune(model, section, ctx, zeros: dict) -> dict:
    """``pruning.check`` on the baseline; ``zeros`` with the share each pruned layer will hold."""
    plan, pair, chosen = pruning.check(model, **_prune_args(section, ctx))
    return {**zeros, **{name: pair[0] / pair[1] if pair else plan.target_sparsity
                        for name in chosen}}


def _prune(model, section, ctx):
    """Prune, fine-tune for ``epochs``, strip; records measured sparsity."""
    before = ctx.accuracy(model)
    pruned = pruning.prune(model, **_prune_args(section, ctx))
    info = pruning.pruning_info(pruned)
    ctx.fit(pruned, section.epochs, learning_rate=section.learning_rate or None,
            callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = wrappers.strip(pruned)
    report = pruning.sparsity_report(stripped)
    # tfmot wraps layers it prunes no weight of (BatchNormalization): the figures are those of
    # the sparsity report's own layers that were wrapped, never a lookup by pruning_info's names.
    wrapped = set(info["pruned"])
    ctx.stats["prune"] = {
        "target_sparsity": section.target_sparsity,
        "global_sparsity": report["global"],
        "accuracy_before": before,
        "accuracy_after": ctx.accuracy(stripped),
        "frequency": info["schedule"]["frequency"],
        "end_step": info["schedule"]["end_step"],
        "sparsity": {k: v for k, v in report["layers"].items() if k in wrapped},
        "skipped": info["skipped"],
        # the skipped layers holding more than wrappers.LEFT_ALONE_SHARE each: [name, share]
        "left_alone": [list(item) for item in info["left_alone"]],
    }
    return stripped


def _cluster_args(section) -> dict:
    """``clustering.cluster``'s arguments (and ``clustering.check``'s) from the section."""
    return dict(number_of_clusters=section.number_of_clusters, init=section.init,
                preserve_sparsity=section.preserve_sparsity, layers=section.layers or None,
                keep_first_last=section.keep_first_last)


def _check_cluster(model, section, ctx, zeros: dict) -> dict:
    """``clustering.check`` on the baseline, with the zeros a prune stage before leaves."""
    clustering.check(model, **_cluster_args(section), zeros=zeros)
    return zeros


def _cluster(model, section, ctx):
    """Cluster, fine-tune, strip; records unique weights and sparsity."""
    before = ctx.accuracy(model)
    clustered = clustering.cluster(model, **_cluster_args(section))
    info = clustering.clustering_info(clustered)
    names = set(info.get("clustered", {}))
    ctx.fit(clustered, section.epochs, learning_rate=section.learning_rate or None)
    stripped = wrappers.strip(clustered)
    uniques = clustering.unique_weights_report(stripped)
    sparsity = pruning.sparsity_report(stripped)
    # Each report's own layers that were clustered (a wrapped layer without weights is in none).
    unique_weights = {n: v for n, v in uniques["layers"].items() if n in names}
    ctx.stats["cluster"] = {
        "number_of_clusters": section.number_of_clusters,
        "max_unique_weights": max(unique_weights.values(), default=0),
        "global_sparsity": sparsity["global"],
        "accuracy_before": before,
        "accuracy_after": ctx.accuracy(stripped),
        "unique_weights": unique_weights,
        "sparsity": {n: v for n, v in sparsity["layers"].items() if n in names},
        "left_alone": [list(item) for item in info.get("left_alone", [])],
    }
    return stripped


def _short(tensor_name: str) -> str:
    """'model/quant_dense/MatMul;...' -> 'quant_dense/MatMul' (readable report keys)."""
    first = tensor_name.split(";")[0]
    return "/".join(first.split("/")[1:]) or first


def _qat(model, section, ctx):
    """QAT (or PQAT/CQAT/PCQAT), fine-tune; the QAT model stays for conversion.

    Records the accuracy and, measured inside the int8 flatbuffer, the share of zeros and the
    distinct values of every weight tensor.
    """
    before = ctx.accuracy(model)
    qat = quantization.quantize_aware(model, preserve=section.preserve or None,
                                      layers=section.layers or None)
    ctx.fit(qat, section.epochs, learning_rate=section.learning_rate or None)
    qat = wrappers.strip(qat)  # CQAT/PCQAT: drops the clustering variables, so it saves as .h5
    flatbuffer = conversion.convert(
        qat, "int8", representative_data=ctx.train[0],
        representative_samples=ctx.config.convert.representative_samples)
    tensors = pruning.flatbuffer_sparsity(flatbuffer)
    ctx.stats["qat"] = {
        "preserve": section.preserve or "none",
        "accuracy_before": before,
        "accuracy_after": ctx.accuracy(qat),
        "int8_min_zeros": min((t["zeros"] for t in tensors.values()), default=0.0),
        "int8_max_distinct_per_channel": max(
            (t["distinct_per_channel"] for t in tensors.values()), default=0),
        "int8_zeros": {_short(k): t["zeros"] for k, t in tensors.items()},
        "int8_distinct": {_short(k): t["distinct"] for k, t in tensors.items()},
        "int8_distinct_per_channel": {
            _short(k): t["distinct_per_channel"] for k, t in tensors.items()},
    }
    return qat


def _distill(teacher, section, ctx):
    """The incoming model is the teacher; returns the distilled student.

    Section: the student (``student`` model name and ``width``), ``alpha``, ``temperature``,
    ``epochs``, ``learning_rate`` (0: the recipe's), ``hints`` ("t:s,..."), ``hint_weight``,
    ``precompute`` (teacher outputs once) and ``scratch`` (also train the same student from the
    same initial weights on the labels alone, for comparison in the report).
    """
    x, y = ctx.train
    lr = section.learning_rate or ctx.config.train.learning_rate
    keras.utils.set_random_seed(ctx.config.seed)
    student = models.build(section.student, x.shape[1:], ctx.num_classes, section.width)
    initial = student.get_weights()
    stats = {"teacher_accuracy": ctx.accuracy(teacher),
             "teacher_params": int(teacher.count_params()),
             "student_params": int(student.count_params())}
    stats["param_ratio"] = stats["teacher_params"] / stats["student_params"]
    if section.scratch:
        scratch = keras.models.clone_model(student)
        scratch.set_weights(initial)
        keras.utils.set_random_seed(ctx.config.seed)
        ctx.fit(scratch, section.epochs, learning_rate=lr)
        stats["scratch_accuracy"] = ctx.accuracy(scratch)
    keras.utils.set_random_seed(ctx.config.seed)
    distillation.distill(
        student, teacher, x, y, epochs=section.epochs, batch_size=ctx.config.train.batch_size,
        learning_rate=lr, precompute=section.precompute, alpha=section.alpha,
        verbose=0 if console.current().for_people else 2,
        callbacks=([progress.ProgressBar("distill: fine-tune")]
                   if console.current().for_people else []),
        temperature=section.temperature, hints=section.hints or None,
        hint_weight=section.hint_weight)
    stats["distilled_accuracy"] = ctx.accuracy(student)
    if section.scratch and stats["teacher_accuracy"] > stats["scratch_accuracy"]:
        stats["gap_recovered"] = ((stats["distilled_accuracy"] - stats["scratch_accuracy"])
                                  / (stats["teacher_accuracy"] - stats["scratch_accuracy"]))
    rows = [("teacher", teacher, "teacher_accuracy"),
            ("student from scratch (labels only)", student, "scratch_accuracy"),
            ("distilled student", student, "distilled_accuracy")]
    stats["models"] = [{"model": label, "parameters": int(model.count_params()),
                        "validation accuracy": stats[key]}
                       for label, model, key in rows if key in stats]
    ctx.stats["distill"] = stats
    return student


def _costs(model) -> dict:
    p = profiling.profile(model)
    return {"params": p["params"], "macs": p["macs"]}


def _surgery_stats(name, cut, before, acc_before, acc_cut, model, ctx, **extra) -> None:
    after = _costs(model)
    ctx.stats[name] = {
        **extra, "accuracy_before": acc_before,
        f"accuracy_{cut}_no_finetune": acc_cut, "accuracy_after": ctx.accuracy(model),
        "params_before": before["params"], "params_after": after["params"],
        "params_ratio": after["params"] / before["params"],
        "macs_before": before["macs"], "macs_after": after["macs"],
        "macs_ratio": after["macs"] / max(before["macs"], 1),
        "batchnorm_recalibrated": len(getattr(model, "batchnorm_recalibration", {})),
    }


def _attention_layers(model) -> list:
    return [layer.name for layer in model.layers
            if isinstance(layer, keras.layers.MultiHeadAttention)]


def _prune_channels(model, section, ctx):
    """Prunes channels, fine-tunes, and records params, MACs and accuracy before and after.

    Attention heads are ranked by their output on ``samples`` training samples (the surgery's
    data-driven importance; without attention no data is passed). ``heads_only``: only whole
    heads go (``ratio`` of each MultiHeadAttention's heads, or of those named in ``layers``);
    every width stays (``round_to`` above any width leaves every channel group whole).
    """
    before, acc_before = _costs(model), ctx.accuracy(model)
    layers, round_to = list(section.layers) or None, section.round_to
    attention = _attention_layers(model)
    if section.heads_only:
        layers = [n for n in attention if layers is None or n in layers]
        if not layers:
            raise errors.ConfigError(
                f"prune_channels.heads_only=True on model {model.name!r} without "
                f"MultiHeadAttention{' among ' + repr(section.layers) if section.layers else ''}"
                "; accepted: heads_only=False, or a model with attention layers")
        round_to = _WHOLE
    x = _calibration(ctx, section.samples) if attention else None
    pruned = _recalibrated(surgery.prune_channels(
        model, section.ratio, criterion=section.criterion, layers=layers,
        round_to=round_to, x=x), section, ctx)
    report = pruned.surgery_report
    acc_cut = ctx.accuracy(pruned)
    ctx.fit(pruned, section.epochs, learning_rate=section.learning_rate)
    _surgery_stats("prune_channels", "pruned", before, acc_before, acc_cut, pruned, ctx,
                   ratio=section.ratio, round_to=section.round_to,
                   heads_only=bool(section.heads_only), heads=_heads(report.changed),
                   not_followed=list(report.not_followed), changed=report.changed)
    return pruned


# A round_to above any width: prune_channels leaves every channel group whole (heads only).
_WHOLE = 2 ** 31 - 1


def _heads(changed: dict) -> dict:
    """{attention layer: [heads before, heads after]} of a prune_channels report."""
    return {name: [c["heads_before"], c["heads_after"]] for name, c in changed.items()
            if "heads_before" in c}


def _factorize(model, section, ctx):
    """Factorizes (``rank`` > 0 wins over ``energy``; ``conv``: ``channel`` SVD of Dense and
    1x1-style convolutions, ``spatial`` k x k -> k x 1 then 1 x k), fine-tunes, records."""
    before, acc_before = _costs(model), ctx.accuracy(model)
    kwargs = {"rank": section.rank} if section.rank else {"energy": section.energy}
    new = _recalibrated(factorization.factorize(model, layers=list(section.layers) or None,
                                                conv=section.conv, **kwargs), section, ctx)
    report = new.surgery_report
    acc_cut = ctx.accuracy(new)
    ctx.fit(new, section.epochs, learning_rate=section.learning_rate)
    _surgery_stats("factorize", "factorized", before, acc_before, acc_cut, new, ctx, **kwargs,
                   conv=section.conv, changed=report.changed, kept=list(report.notes))
    return new


def _prune_blocks(model, section, ctx):
    """Removes the residual blocks whose absence raises the validation loss least (``n``
    blocks, or ``fraction`` of them when ``n`` is 0; ``max_macs_ratio`` > 0 bounds the MACs
    left; ``unit``: ``"residual"`` blocks, or whole Transformer ``"encoder"`` blocks),
    fine-tunes, records the figures."""
    before, acc_before = _costs(model), ctx.accuracy(model)
    new = _recalibrated(blocks.prune_blocks(model, section.n or section.fraction, *ctx.validation,
                                            criterion=section.criterion, unit=section.unit,
                                            max_macs_ratio=section.max_macs_ratio or None),
                        section, ctx)
    report = new.surgery_report
    acc_cut = ctx.accuracy(new)
    ctx.fit(new, section.epochs, learning_rate=section.learning_rate)
    _surgery_stats("prune_blocks", "removed", before, acc_before, acc_cut, new, ctx,
                   n_or_fraction=section.n or section.fraction, criterion=section.criterion,
                   unit=section.unit,
                   blocks_removed=list(report.changed), notes=list(report.notes))
    return new


def _recalibrated(model, section, ctx):
    """The cut model with its BatchNormalization statistics re-estimated on 512 training
    images (``recalibrate_bn``), before it is measured and fine-tuned; the surgery report
    stays attached. A model the layer-by-layer pass cannot run is left as it is (logged)."""
    if not section.recalibrate_bn or not any(
            isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        return model
    try:
        new = recalibration.recalibrate_batchnorm(model, _calibration(ctx, 512))
    except errors.ModelError as e:
        logging.warning("BatchNormalization statistics not recalibrated: %s", e)
        return model
    return attach(new, model.surgery_report)


def _calibration(ctx, samples: int) -> np.ndarray:
    """A fixed random subset of the training images (PTQ recovery fits nothing else)."""
    x = ctx.train[0]
    return x[np.random.default_rng(ctx.config.seed).permutation(len(x))[:samples]]


def _recover(model, section, ctx):
    """Equalization, AdaRound and bias correction for ``section.mode``'s grid (chained: bias
    correction is measured against the equalized float model). Not fine-tuned afterwards: that
    would move the weights off the grid; convert with the same mode."""
    before = ctx.accuracy(model)
    settings = modes.recovery_settings(section.mode)
    steps = [s for s in section.steps if s in recovery.steps_for(settings.get("block", 0))]
    if len(steps) < len(section.steps):  # a block-wise grid: bias correction, no AdaRound
        logging.info("recover: mode %s takes %s", section.mode, ", ".join(steps) or "no step")
    out = recovery.recover(
        model, _calibration(ctx, section.samples), steps=tuple(steps),
        relu6=section.relu6, samples=section.samples, iterations=section.iterations,
        checkpoint_dir=Workdir(ctx.workdir).checkpoints("adaround"), **settings)
    ctx.stats["recover"] = {"mode": section.mode, "steps": steps,
                            "accuracy_before": before, "accuracy_after": ctx.accuracy(out),
                            **{f"{k}_seconds": v["seconds"] for k, v in out.recovery.items()}}
    return out


def _equalize(model, section, ctx):
    """Cross-layer equalization (BatchNormalization folded); the float outputs are unchanged."""
    out = equalization.equalize(model, relu6=section.relu6)
    ctx.stats["equalize"] = {"accuracy_after": ctx.accuracy(out),
                             "pairs": len(getattr(out, "equalization", {}).get("pairs", []))}
    return out


def _correct_bias(model, section, ctx):
    """Bias correction of round-to-nearest weights (use ``recover`` after AdaRound)."""
    out = rounding.correct_bias(model, _calibration(ctx, section.samples),
                                samples=section.samples, **modes.recovery_settings(section.mode))
    ctx.stats["correct_bias"] = {"mode": section.mode, "accuracy_after": ctx.accuracy(out)}
    return out


def _adaround(model, section, ctx):
    """Learned rounding onto ``section.mode``'s grid, per layer, resumable per layer."""
    out = rounding.adaround(
        model, _calibration(ctx, section.samples), samples=section.samples,
        iterations=section.iterations, layers=list(section.layers) or None,
        checkpoint_dir=Workdir(ctx.workdir).checkpoints("adaround"),
        **modes.recovery_settings(section.mode))
    ctx.stats["adaround"] = {"mode": section.mode, "accuracy_after": ctx.accuracy(out)}
    return out


def _finetune_quantized(model, section, ctx):
    """Label-free quantization-aware fine-tuning for ``section.mode`` (the model before it is
    the teacher; training images without their labels; from equalized weights unless
    ``equalize`` is off; ``learning_rate`` 0: the mode's default); convert with the same mode:
    int8 gets the QAT model, the int4 modes a float model on the int4 grid."""
    before = ctx.accuracy(model)
    out = finetune.finetune_quantized(
        model, _calibration(ctx, section.samples), section.mode,
        start=equalization.equalize(model) if section.equalize else None,
        epochs=section.epochs, learning_rate=section.learning_rate or None)
    report = out.finetune
    ctx.stats["finetune_quantized"] = {
        "mode": section.mode, "accuracy_before": before, "accuracy_after": ctx.accuracy(out),
        "held_out_before": dict(report["before"]), "held_out_after": dict(report["after"]),
        "epochs": report["epochs"], "seconds": report["seconds"]}
    return out


# The order here is the order the search chains stages in.
STAGES: dict[str, Stage] = {
    "distill": Stage(_distill, dict(
        student="digits_cnn", width=0.25, alpha=0.5, temperature=2.0, epochs=15,
        learning_rate=0.0, hints="", hint_weight=1.0, precompute=True, scratch=False)),
    "prune_blocks": Stage(_prune_blocks, dict(
        fraction=0.25, n=0, criterion="loss", max_macs_ratio=0.0, unit="residual",
        recalibrate_bn=True, epochs=5, learning_rate=5e-4)),
    "prune_channels": Stage(_prune_channels, dict(
        ratio=0.5, criterion="l1", layers=(), round_to=8, heads_only=False, samples=512,
        recalibrate_bn=True, epochs=5, learning_rate=5e-4)),
    "factorize": Stage(_factorize, dict(
        energy=0.9, rank=0, layers=(), conv="channel", recalibrate_bn=True, epochs=5,
        learning_rate=5e-4)),
    "prune": Stage(_prune, dict(
        target_sparsity=0.8, epochs=2, schedule="polynomial", layers="", m_by_n="",
        keep_first_last=False, learning_rate=1e-4),
        check_values=lambda s: pruning.check_options(s.target_sparsity, s.schedule,
                                                     s.m_by_n or None),
        check_model=_check_prune),
    "cluster": Stage(_cluster, dict(
        number_of_clusters=16, init="kmeans++", preserve_sparsity=True, epochs=2, layers="",
        keep_first_last=False, learning_rate=1e-4),
        check_values=lambda s: clustering.check_options(s.number_of_clusters, s.init,
                                                        s.preserve_sparsity),
        check_model=_check_cluster),
    "qat": Stage(_qat, dict(preserve="", epochs=2, layers="", learning_rate=1e-4), suffix=".h5"),
    # PTQ recovery: last, with no fine-tuning after it (convert with the same mode).
    "equalize": Stage(_equalize, dict(relu6="keep")),
    "correct_bias": Stage(_correct_bias, dict(mode="int8", samples=512)),
    "adaround": Stage(_adaround, dict(mode="int8", samples=512, iterations=300, layers=())),
    "recover": Stage(_recover, dict(mode="int8", steps=recovery.STEPS, relu6="keep",
                                    samples=512, iterations=300)),
    # Label-free QAT: last too (it may start from the recovered weights); same mode at convert.
    "finetune_quantized": Stage(_finetune_quantized, dict(
        mode="int8", samples=256, epochs=12, learning_rate=0.0, equalize=True), suffix=".h5"),
}
