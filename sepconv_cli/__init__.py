"""sepconv: find, convert and budget the convolutions of a CNN (depthwise-separable rewrites)."""

__version__ = "0.1.0"
