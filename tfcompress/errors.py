"""Errors raised by tfcompress: one base class, messages that name the bad value."""


class TfcompressError(Exception):
    """Base class of every error tfcompress raises on bad input."""


class ConfigError(TfcompressError, ValueError):
    """A recipe field is unknown or has a value that is not accepted."""


class DataError(TfcompressError, ValueError):
    """Data is missing, malformed, or does not fit the model."""


class ModelError(TfcompressError, ValueError):
    """A model cannot be loaded or is not of a kind we accept."""


class Keras3ModelError(ModelError):
    """A Keras 3 model was given where a Keras 2 (tf_keras) model is needed."""


class ConversionError(TfcompressError, ValueError):
    """The TFLite conversion was asked for something it cannot do."""


class InvalidTFLiteError(TfcompressError, ValueError):
    """A flatbuffer is corrupt, truncated, or does not fit the data."""


def unknown(kind: str, value, accepted) -> str:
    """The standard message for a value outside an accepted set."""
    return f"unknown {kind} {value!r}; accepted: {', '.join(map(str, accepted))}"
