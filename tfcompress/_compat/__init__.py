"""The only place private APIs of other packages are reached (Keras, tf_keras, tfmot, LiteRT's
flatbuffer schema, the LiteRT Quantizer's internals, Optuna): each module says which symbols it
reaches and the version they were checked against. ``tests/test_architecture.py`` fails on a
private reach anywhere else."""
