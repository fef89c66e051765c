"""The model-facing core: tracing a Keras model into nodes (the one place touching Keras
internals), the layer registry (what each layer class is to keras_dtd), the linear maps
rules evaluate, and canonizing (BatchNorm folding, separable convolutions split)."""
