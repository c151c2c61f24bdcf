"""petportrait: pet portraits from a model trained on your own photos."""

__version__ = "0.1.0"
