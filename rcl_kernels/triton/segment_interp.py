"""Triton SoI (placeholder until the kernel lands)."""

AVAILABLE = False


def segment_interp_triton(features, segments, num_samples, samples_per_point, context, padding):
    raise NotImplementedError("the Triton SoI kernel is not written yet")
