"""The report of a surgery (what changed, what was left whole), kept with the model it describes.

In process the report is the model's ``surgery_report`` attribute. To survive saving it is also
written into the model's own config: ``attach`` makes that model's ``get_config()`` return the
Keras config plus one JSON-safe entry, ``"tfcompress_surgery_report"``. Keras writes the config
into every file it saves (``config.json`` of a ``.keras`` file, the ``model_config`` attribute of
an ``.h5`` file) and ignores unknown entries when it loads, so the saved model stays a plain Keras
model that anyone can load; ``report_of(path)`` (and ``tfcompress.models.load_model``, which
re-attaches it) read the entry back.
"""

import dataclasses
import json
import os
import zipfile
from typing import Optional

import numpy as np

REPORT_KEY = "tfcompress_surgery_report"  # the model config entry holding the report


@dataclasses.dataclass(frozen=True)
class SurgeryReport:
    """What ``prune_channels``, ``factorize`` or ``prune_blocks`` did (``model.surgery_report``).

    Attributes:
        kind: ``"prune_channels"``, ``"factorize"`` or ``"prune_blocks"``.
        changed: layer name -> {"before": ..., "after": ...} (channels, or parameters and rank,
            or for blocks the block's layers and its validation-loss rise).
        not_followed: layers the surgery could not follow; they and the channels they touch are
            left whole.
        kept: for channel pruning, producer layer name -> indices of the channels kept.
        notes: anything else worth knowing (e.g. a criterion fallback), as text.
        left_alone: ((layer name, share of the model's parameters), ...) of the layers the
            surgery did not change that each hold more than 10% of the weights.
    """

    kind: str
    changed: dict
    not_followed: tuple = ()
    kept: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()
    left_alone: tuple = ()

    def to_dict(self, kept: bool = False) -> dict:
        """JSON-safe dict; ``kept=True`` adds the kept channel indices (as lists)."""
        out = {"kind": self.kind, "changed": _plain(self.changed),
               "not_followed": list(self.not_followed), "notes": list(self.notes),
               "left_alone": [[name, float(share)] for name, share in self.left_alone]}
        if kept:
            out["kept"] = {k: [int(i) for i in v] for k, v in self.kept.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "SurgeryReport":
        return cls(d["kind"], d.get("changed", {}), tuple(d.get("not_followed", ())),
                   {k: np.asarray(v, np.int64) for k, v in d.get("kept", {}).items()},
                   tuple(d.get("notes", ())),
                   tuple((name, share) for name, share in d.get("left_alone", ())))


def _plain(value):
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist")
                                 else str(v)))


def attach(model, report: SurgeryReport):
    """Sets ``model.surgery_report`` and makes ``model.get_config()`` (what Keras saves) carry
    the report as JSON under ``"tfcompress_surgery_report"``. Returns ``model``."""
    model.surgery_report = report
    payload = report.to_dict(kept=True)
    keras_get_config = model.get_config

    def get_config():
        config = keras_get_config()
        config[REPORT_KEY] = payload
        return config

    get_config.__doc__ = keras_get_config.__doc__
    model.get_config = get_config
    return model


def report_of(model_or_path) -> Optional[SurgeryReport]:
    """The surgery report of a model in memory, or of a saved ``.keras`` / ``.h5`` file.

    Args:
        model_or_path: a model returned by a surgery function (or loaded by
            ``tfcompress.models.load_model``), or the path of a file such a model was saved to.

    Returns:
        The :class:`SurgeryReport`, or None when the model or file carries none.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        d = _saved_entry(os.fspath(model_or_path))
        return SurgeryReport.from_dict(d) if d else None
    report = getattr(model_or_path, "surgery_report", None)
    if report is not None:
        return report
    try:
        d = model_or_path.get_config().get(REPORT_KEY)
    except (AttributeError, NotImplementedError, TypeError):
        return None
    return SurgeryReport.from_dict(d) if d else None


def _saved_entry(path: str) -> Optional[dict]:
    """The report entry of the model config inside a saved file (None if absent)."""
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
        elif path.endswith((".h5", ".hdf5")):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            if raw is None:
                return None
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        else:
            return None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return (config.get("config") or {}).get(REPORT_KEY)
