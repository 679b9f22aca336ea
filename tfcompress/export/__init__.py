"""From a Keras model to a validated flatbuffer: conversion (the TFLite converter), low-bit and
mixed-precision modes (the LiteRT Quantizer), validation on the LiteRT runtime, the Model Explorer
overlay and the Android bundle."""

from tfcompress.export import (  # noqa: F401
    validation, conversion, lowbit, mixed, mixed_activations, explorer, android)
