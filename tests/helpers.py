"""Plain helpers shared by test modules (fixtures live in conftest.py; the tfmot tests' helpers
in tfmot_helpers.py, the PTQ tests' models in ptq_models.py)."""

from tfcompress import tasks


def keras_accuracy(model, x, y) -> float:
    """Top-1 accuracy of a Keras model's predictions on ``x`` against labels ``y``."""
    return tasks.top1(model.predict(x, verbose=0), y)
