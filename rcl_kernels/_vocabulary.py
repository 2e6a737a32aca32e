"""The words the ops share: argument values, their kernel codes, and argument-check helpers.

Every layer (references, Triton and C++ launchers, public wrappers, modules) takes these from
here, so a padding or an activation is spelled, and numbered for the kernels, in one place.
The codes match the enums of csrc/segment_interp_common.h.
"""

from __future__ import annotations

# What SoI reads outside [0, T - 1] (rcl_kernels.segment_interp's docstring), and the code each
# kernel receives for it.
PADDINGS = ("zeros", "border", "bmn")
PADDING_CODES = {"zeros": 0, "border": 1, "bmn": 2}

# Hidden-layer activations of score_anchors ("gelu" is the exact erf form).
ACTIVATIONS = ("relu", "gelu")
ACTIVATION_CODES = {"relu": 0, "gelu": 1}

# Coordinate features phi(x) of score_anchors: name -> number of columns E.
COORD_FEATURES = {"ses": 3, "se": 2, "none": 0}


def shape_of(x) -> str:
    """A tensor's shape, or the type of a non-tensor, for error messages."""
    shape = getattr(x, "shape", None)
    return str(tuple(shape)) if shape is not None else type(x).__name__
