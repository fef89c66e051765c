"""Integrations: TensorFlow Serving export, Apache Beam, the training callback, plots,
the command line, the demo and its data. They use analyzers only through their public
interface."""
