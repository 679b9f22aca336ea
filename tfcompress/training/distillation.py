"""Knowledge distillation: a ``keras.Model`` that trains a small student from a frozen teacher.

``Distiller`` is compiled and fitted like any model. Its loss (Hinton et al. 2015) is

    alpha * student_loss(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))
      + hint_weight * sum_i MSE(teacher_feature_i, projection_i(student_feature_i))

where ``t`` and ``s`` are the teacher's and student's logits. For a regression (or binary,
sigmoid) student the distillation term is the mean squared difference of the two models'
outputs (no temperature) and the default student loss MSE (binary cross-entropy): the task is
read from the student's last layer (``task=`` overrides it). Models that end in a softmax
(e.g. ``tfcompress.models.digits_cnn``, whose ``probs`` softmax follows the ``logits`` Dense)
are detected and their pre-softmax tensor is used, so probabilities are never softmaxed twice.

What it adds over a hand-written train step: logits/probabilities detection, feature (hint)
matching with learned projections, pseudo-labels on unlabeled data, teacher outputs precomputed
once, losses scaled correctly under ``tf.distribute`` strategies, a serializable config, and
the recipe stage ``distill``.
"""

from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfcompress import errors
import tfcompress.tasks as tasks_lib
from tfcompress._compat.keras import is_functional, keras, unwrap
from tfcompress.keras3 import ensure_keras2

LABELS = "labels"  # keys of the target dict ``Distiller.precompute`` returns
TEACHER_LOGITS = "teacher_logits"
PSEUDO_LABELS = ("hard", "soft")
_EPSILON = 1e-7


def _hint_key(i: int) -> str:
    return f"teacher_hint_{i}"


def _ends_in_softmax(model: keras.Model) -> bool:
    last = unwrap(model.layers[-1])
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or getattr(
        activation, "__name__", "") == "softmax"


def _activation_name(model: keras.Model) -> str:
    last = unwrap(model.layers[-1])
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") or ""


def _task_of(model: keras.Model) -> str:
    """The task a model's output shows: softmax (or several logits) -> classification,
    sigmoid -> binary, one linear output -> regression."""
    name = _activation_name(model)
    if name == "softmax":
        return "classification"
    if name == "sigmoid":
        return "binary"
    return "regression" if model.outputs[0].shape[-1] == 1 else "classification"


def _check_graph(model: keras.Model, role: str) -> keras.Model:
    model = ensure_keras2(model)
    if not is_functional(model) or not model.inputs:
        raise errors.ModelError(
            f"{role} {model.name!r} is a subclassed or unbuilt model; accepted: a functional or "
            "Sequential model built on keras.Input (its layers must be reachable)")
    if len(model.outputs) > 1:
        raise errors.ModelError(
            f"{role} {model.name!r} has {len(model.outputs)} outputs "
            f"({', '.join(model.output_names)}); accepted: a model with one output (distill "
            "one head: keras.Model(model.input, model.get_layer(NAME).output))")
    return model


def _logits_tensor(model: keras.Model, from_logits: Optional[bool]):
    """(symbolic logits-like tensor, whether the model outputs logits).

    For a model ending in a separate softmax layer the tensor is that layer's input; for one
    whose last layer has a softmax activation, ``log(p)``, which softmax maps back to ``p``.
    """
    output = model.outputs[0]
    is_logits = (not _ends_in_softmax(model)) if from_logits is None else bool(from_logits)
    if is_logits:
        return output, True
    last = model.layers[-1]
    inner = unwrap(last)
    if isinstance(inner, keras.layers.Softmax) or (
            isinstance(inner, keras.layers.Activation) and _ends_in_softmax(model)):
        return last.input, False
    log_p = keras.layers.Lambda(
        lambda p: tf.math.log(tf.clip_by_value(p, _EPSILON, 1.0)), name=f"{model.name}_log_p")
    return log_p(output), False


def _view(model: keras.Model, from_logits, layer_names: Sequence[str], role: str):
    """A model sharing ``model``'s layers: [output, logits, named intermediate outputs...]."""
    logits, is_logits = _logits_tensor(model, from_logits)
    by_name = {layer.name: layer for layer in model.layers}
    for layer in model.layers:  # a wrapped layer is also found by its own name
        by_name.setdefault(unwrap(layer).name, layer)
    features = []
    for name in layer_names:
        if name not in by_name:
            raise errors.ConfigError(errors.unknown(
                f"{role} layer", name, [layer.name for layer in model.layers]))
        features.append(by_name[name].output)
    view = keras.Model(model.inputs, [model.outputs[0], logits] + features,
                       name=f"{model.name}_distill_view")
    return view, is_logits


def _per_example(loss):
    """A loss callable that returns one value per example (Loss objects lose their reduction)."""
    if loss is None:
        return None
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        config = dict(loss.get_config(), reduction=keras.losses.Reduction.NONE)
        loss = type(loss).from_config(config)

    def per_example(y_true, y_pred):
        value = loss(y_true, y_pred)
        rank = value.shape.rank
        return tf.reduce_mean(value, axis=list(range(1, rank))) if rank and rank > 1 else value
    return per_example


def _serialize_loss(loss):
    """A loss as config: names stay names, Loss objects and registered functions serialize."""
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, keras.losses.Loss):
        return keras.losses.serialize(loss)
    return keras.saving.serialize_keras_object(loss)


def _parse_hints(hints) -> list:
    if not hints:
        return []
    if isinstance(hints, str):
        pairs = [p.split(":") for p in hints.split(",") if p.strip()]
    elif isinstance(hints, dict):
        pairs = list(hints.items())
    else:
        pairs = [tuple(p) for p in hints]
    if any(len(p) != 2 for p in pairs):
        raise errors.ConfigError(
            f"hints={hints!r}; accepted: pairs (teacher_layer, student_layer), a dict "
            "teacher_layer -> student_layer or a string 'teacher_layer:student_layer,...'")
    return [(str(t).strip(), str(s).strip()) for t, s in pairs]


class Distiller(keras.Model):
    """Trains ``student`` to match a frozen ``teacher`` (and the labels); compile and fit it.

    ``compile(optimizer, metrics=...)`` as usual (a ``loss`` given there replaces
    ``student_loss``); metrics measure the student's outputs against the labels.
    ``fit``/``evaluate``/callbacks behave normally; logs hold ``loss``, ``student_loss``,
    ``distillation_loss`` (and ``hint_loss``). ``predict``/``call`` run the student.
    ``.student`` is the trained student model.

    Batches are ``(x, y)`` with labels, ``x`` alone (pseudo-labels from the teacher), or
    ``(x, targets)`` with ``targets = distiller.precompute(x, y)`` (teacher outputs computed
    once: use it only when the inputs are fed unchanged, i.e. without augmentation).

    Args:
        student: functional or Sequential tf_keras model being trained (may be wrapped for
            pruning or quantization-aware training).
        teacher: trained functional or Sequential model; used in inference mode, never updated.
        alpha: weight of the student (label) loss; ``1 - alpha`` weighs the distillation loss.
        temperature: softmax temperature ``T`` for the distillation loss. The defaults (0.5,
            2) keep the labels audible: on an example a confident teacher gets wrong, the
            soft term pulls the student's logits by up to ``(1 - alpha) * T`` (the ``T^2``
            factor equalizes gradients only when the logits are small next to ``T``) against
            the label's ``alpha``. With the former (0.1, 4) a half-width 12-keyword student
            learned its teacher's mistakes (0.63 test accuracy vs 0.81 from scratch, 8
            epochs), and alpha=0.1 was the worst choice at every temperature on validation
            (benchmarks/distillation.py). Choose both on validation data.
        distillation_loss: ``loss(teacher_probs, student_probs)`` at temperature T
            (default: KL divergence).
        student_loss: loss on the student's outputs and the labels (default: sparse
            categorical cross-entropy with ``from_logits`` matching the student).
        student_from_logits, teacher_from_logits: whether the model outputs logits; ``None``
            detects it (a final softmax means probabilities).
        hints: intermediate layers to match, pairs ``(teacher_layer, student_layer)`` (or a
            dict, or ``"t1:s1,t2:s2"``); a learned Dense projection maps the student feature to
            the teacher's width when they differ.
        hint_weight: weight of the hint (feature MSE) loss.
        pseudo_labels: for unlabeled batches, ``"hard"`` (teacher argmax, ``student_loss``) or
            ``"soft"`` (teacher probabilities, categorical cross-entropy); a regression or
            binary student learns the teacher's outputs as they are.
        task: ``"classification"``, ``"binary"`` or ``"regression"``; read from the student's
            last layer when None (softmax or several outputs: classification, sigmoid: binary,
            one linear output: regression).

    Raises:
        ConfigError: alpha/temperature/hints/pseudo_labels out of range or unknown layers.
        ModelError: a subclassed model, or models whose inputs or outputs do not match.
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        *,
        alpha: float = 0.5,
        temperature: float = 2.0,
        distillation_loss=None,
        student_loss=None,
        student_from_logits: Optional[bool] = None,
        teacher_from_logits: Optional[bool] = None,
        hints=None,
        hint_weight: float = 1.0,
        pseudo_labels: str = "hard",
        task: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(alpha) <= 1.0:
            raise errors.ConfigError(f"alpha={alpha!r}; accepted: a number in [0, 1]")
        if float(temperature) <= 0:
            raise errors.ConfigError(f"temperature={temperature!r}; accepted: a number > 0")
        if pseudo_labels not in PSEUDO_LABELS:
            raise errors.ConfigError(errors.unknown("pseudo_labels", pseudo_labels, PSEUDO_LABELS))
        self.student = _check_graph(student, "student")
        self.teacher = _check_graph(teacher, "teacher")
        self.task = _task_of(self.student) if task is None else tasks_lib.check(task)
        if self.task != "classification":  # outputs are matched as they are
            student_from_logits = teacher_from_logits = True
        if self.student.outputs[0].shape[-1] != self.teacher.outputs[0].shape[-1]:
            raise errors.ModelError(
                f"student has {self.student.outputs[0].shape[-1]} outputs but teacher has "
                f"{self.teacher.outputs[0].shape[-1]}; accepted: the same number of classes")
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.hint_weight, self.pseudo_labels = float(hint_weight), pseudo_labels
        self.hints = _parse_hints(hints)
        self._distillation_loss_spec = distillation_loss or keras.losses.KLDivergence()
        self._distillation_loss = _per_example(self._distillation_loss_spec)
        t_view, self.teacher_from_logits = _view(
            self.teacher, teacher_from_logits, [t for t, _ in self.hints], "teacher")
        s_view, self.student_from_logits = _view(
            self.student, student_from_logits, [s for _, s in self.hints], "student")
        # The views share the models' layers; kept out of Keras tracking so weights and
        # saved files list each variable once (under .student / .teacher).
        object.__setattr__(self, "_views", {"teacher": t_view, "student": s_view})
        self.set_student_loss(student_loss)
        self.projections = []
        for i, (t_feat, s_feat) in enumerate(zip(t_view.outputs[2:], s_view.outputs[2:])):
            t_shape, s_shape = t_feat.shape[1:], s_feat.shape[1:]
            if t_shape[:-1] != s_shape[:-1]:
                raise errors.ConfigError(
                    f"hint {self.hints[i]} pairs shapes {tuple(t_shape)} and {tuple(s_shape)}; "
                    "accepted: layers whose outputs differ at most in the last (channel) axis")
            projection = None
            if t_shape[-1] != s_shape[-1]:
                projection = keras.layers.Dense(int(t_shape[-1]), name=f"hint_projection_{i}")
                projection.build(s_feat.shape)
            self.projections.append(projection)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in
                          ("loss", "student_loss", "distillation_loss")
                          + (("hint_loss",) if self.hints else ())}

    # -- configuration -------------------------------------------------------------------

    def set_student_loss(self, student_loss) -> None:
        """Sets the loss on (labels, student outputs); ``None`` picks the default."""
        self._student_loss_spec = student_loss
        if student_loss is None and self.task == "regression":
            student_loss = keras.losses.MeanSquaredError()
        elif student_loss is None and self.task == "binary":
            student_loss = keras.losses.BinaryCrossentropy()
        elif student_loss is None:
            student_loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=self.student_from_logits)
        self._student_loss = _per_example(student_loss)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """As ``keras.Model.compile``; ``loss``, if given, becomes the student loss."""
        if loss is not None:
            self.set_student_loss(loss)
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def fit(self, x=None, y=None, *args, **kwargs):
        """As ``keras.Model.fit``; numpy labels that are not whole numbers (regression targets)
        for a classification or binary distiller are refused first, in one line (the loss would
        fail inside TensorFlow)."""
        if y is not None and self.task != "regression" and isinstance(y, (np.ndarray, list)):
            labels = np.asarray(y)
            if labels.dtype.kind in "biuf" and not tasks_lib.is_whole(labels):
                raise errors.DataError(
                    f"the labels are not whole numbers (e.g. {labels.ravel()[0]!r}) but the "
                    f"distiller's task is {self.task!r} (read from the student's output: "
                    f"{self.student.outputs[0].shape[-1]} linear units); accepted: "
                    "Distiller(..., task='regression') for targets, or class labels")
        return super().fit(x, y, *args, **kwargs)

    def get_config(self) -> dict:
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "student": serialize(self.student),
            "teacher": serialize(self.teacher),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "distillation_loss": _serialize_loss(self._distillation_loss_spec),
            "student_loss": _serialize_loss(self._student_loss_spec),
            "student_from_logits": self.student_from_logits,
            "teacher_from_logits": self.teacher_from_logits,
            "hints": [list(h) for h in self.hints],
            "hint_weight": self.hint_weight,
            "pseudo_labels": self.pseudo_labels,
            "task": self.task,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "Distiller":
        config = dict(config)
        for key in ("student", "teacher"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects)
        for key in ("distillation_loss", "student_loss"):
            if isinstance(config.get(key), dict):
                config[key] = keras.losses.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)

    # -- running -------------------------------------------------------------------------

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return list(self._trackers.values()) + [
            m for m in super().metrics if m not in self._trackers.values()]

    def precompute(self, x, y=None, *, batch_size: int = 256) -> dict:
        """Teacher outputs for ``x``, computed once: pass the result as ``fit``'s targets.

        Returns:
            A dict of numpy arrays: ``labels`` (when ``y`` is given), ``teacher_logits`` and
            one ``teacher_hint_<i>`` per hint, aligned with ``x`` (Keras shuffles them together).
        """
        outputs = self._views["teacher"].predict(x, batch_size=batch_size, verbose=0)
        targets = {TEACHER_LOGITS: np.asarray(outputs[1], np.float32)}
        for i, feature in enumerate(outputs[2:]):
            targets[_hint_key(i)] = np.asarray(feature, np.float32)
        if y is not None:
            targets[LABELS] = np.asarray(y)
        return targets

    def _teacher(self, x, y):
        """(labels or None, teacher logits, teacher hint features)."""
        if isinstance(y, dict) and TEACHER_LOGITS in y:
            hints = [y[_hint_key(i)] for i in range(len(self.hints))]
            return y.get(LABELS), y[TEACHER_LOGITS], hints
        outputs = self._views["teacher"](x, training=False)
        outputs = [tf.stop_gradient(o) for o in outputs]
        return y, outputs[1], outputs[2:]

    def _loss_terms(self, x, y, sample_weight, training: bool):
        labels, t_logits, t_hints = self._teacher(x, y)
        s_out, s_logits, *s_hints = self._views["student"](x, training=training)
        if self.task != "classification":
            return self._output_terms(labels, t_logits, t_hints, s_out, s_hints)
        if labels is None:  # unlabeled: the teacher's pseudo-labels
            if self.pseudo_labels == "soft":
                labels = tf.nn.softmax(t_logits)
                student = keras.losses.categorical_crossentropy(
                    labels, s_out, from_logits=self.student_from_logits)
            else:
                labels = tf.argmax(t_logits, axis=-1)
                student = self._student_loss(labels, s_out)
        else:
            student = self._student_loss(labels, s_out)
        temp = self.temperature
        distill = self._distillation_loss(
            tf.nn.softmax(tf.cast(t_logits, s_logits.dtype) / temp),
            tf.nn.softmax(s_logits / temp)) * temp ** 2
        terms = self._with_hints({"student_loss": student, "distillation_loss": distill},
                                 t_hints, s_hints)
        if labels.shape.rank == s_out.shape.rank and labels.shape[-1] != 1:
            labels = tf.argmax(labels, axis=-1)  # soft pseudo-labels: metrics on the argmax
        return terms, labels, s_out

    def _output_terms(self, labels, t_out, t_hints, s_out, s_hints):
        """Regression and binary: MSE between the two models' outputs; unlabeled batches
        learn the teacher's outputs."""
        t_out = tf.cast(t_out, s_out.dtype)
        if labels is None:
            labels = t_out
        student = self._student_loss(labels, s_out)
        diff = tf.square(t_out - s_out)
        distill = tf.reduce_mean(diff, axis=list(range(1, diff.shape.rank)))
        terms = self._with_hints({"student_loss": student, "distillation_loss": distill},
                                 t_hints, s_hints)
        return terms, labels, s_out

    def _with_hints(self, terms: dict, t_hints, s_hints) -> dict:
        """``terms`` with the hint loss and the weighted ``loss`` total added."""
        total = self.alpha * terms["student_loss"] + (1.0 - self.alpha) * terms[
            "distillation_loss"]
        if self.hints:
            hint = 0.0
            for projection, t_feat, s_feat in zip(self.projections, t_hints, s_hints):
                if projection is not None:
                    s_feat = projection(s_feat)
                diff = tf.square(tf.cast(t_feat, s_feat.dtype) - s_feat)
                hint += tf.reduce_mean(diff, axis=list(range(1, diff.shape.rank)))
            terms["hint_loss"] = hint
            total += self.hint_weight * hint
        terms["loss"] = total
        return terms

    def _update_metrics(self, terms, labels, s_out, sample_weight) -> dict:
        for name, value in terms.items():
            self._trackers[name].update_state(value, sample_weight=sample_weight)
        self.compiled_metrics.update_state(labels, s_out, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def _train_variables(self) -> list:
        variables = list(self.student.trainable_variables)
        for projection in self.projections:
            if projection is not None:
                variables += projection.trainable_variables
        return variables

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            terms, labels, s_out = self._loss_terms(x, y, sample_weight, training=True)
            total = terms["loss"]
            if sample_weight is not None:
                total = total * tf.cast(tf.reshape(sample_weight, tf.shape(total)), total.dtype)
            loss = tf.reduce_mean(total)
            if self.student.losses:
                loss += tf.add_n(self.student.losses)
            # Gradients are summed over replicas: each replica contributes its share.
            loss /= tf.distribute.get_strategy().num_replicas_in_sync
        self.optimizer.minimize(loss, self._train_variables(), tape=tape)
        return self._update_metrics(terms, labels, s_out, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        terms, labels, s_out = self._loss_terms(x, y, sample_weight, training=False)
        return self._update_metrics(terms, labels, s_out, sample_weight)


def pseudo_labels(teacher: keras.Model, x, *, soft: bool = False,
                  from_logits: Optional[bool] = None, batch_size: int = 256) -> np.ndarray:
    """The teacher's labels for unlabeled ``x``: class ids, or probabilities when ``soft``.

    ``from_logits`` says whether the teacher outputs logits (``None`` detects a final softmax).
    """
    view, _ = _view(_check_graph(teacher, "teacher"), from_logits, [], "teacher")
    logits = view.predict(x, batch_size=batch_size, verbose=0)[1]
    if soft:
        return tf.nn.softmax(logits).numpy()
    return np.argmax(logits, axis=-1)


def distill(student: keras.Model, teacher: keras.Model, x, y=None, *, epochs: int,
            batch_size: int = 32, learning_rate: float = 1e-3, precompute: bool = True,
            validation_data=None, callbacks=(), verbose: Union[int, str] = 0,
            **distiller_kwargs) -> keras.Model:
    """Distills ``teacher`` into ``student`` with Adam and returns the trained student.

    ``precompute`` computes the teacher outputs once (the data here is fed unaugmented);
    ``y=None`` trains on the teacher's pseudo-labels. Other keyword arguments go to
    ``Distiller``.
    """
    distiller = Distiller(student, teacher, **distiller_kwargs)
    distiller.compile(keras.optimizers.Adam(learning_rate),
                      metrics=["mae"] if distiller.task == "regression" else ["accuracy"])
    targets = distiller.precompute(x, y) if precompute else y
    distiller.fit(x, targets, batch_size=batch_size, epochs=epochs,
                  validation_data=validation_data, callbacks=list(callbacks), verbose=verbose)
    return distiller.student
