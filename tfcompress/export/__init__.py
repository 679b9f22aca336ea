"""From a Keras model to a validated flatbuffer: conversion (the TFLite converter), low-bit and
mixed-precision modes (the LiteRT Quantizer), validation on the LiteRT runtime, the Model Explorer
overlay and the Android bundle."""

from tfcompress.export import validation, conversion, lowbit, mixed, explorer, android  # noqa: F401
