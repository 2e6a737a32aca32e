"""Data for temporal action detection: annotation files, feature datasets, and synthetic features.

- annotations: VideoAnnotation records from ActivityNet / ActionFormer / BSN json and G-TAD csv.
- builtin: the THUMOS14 and ActivityNet v1.3 annotation files shipped in the package.
- dataset: the item format, VideoDataset and collate_videos (pads and returns lengths).
- actionformer, bsn, gtad: datasets over real features in those projects' layouts.
- windows: overlapping windows over long videos, and back.
- synthetic: generated features for the real THUMOS14 / ActivityNet videos and instances.

Submodules load on first use (`rcl_kernels.data.synthetic` etc.), so importing this package is cheap.
"""

import importlib

_SUBMODULES = ("actionformer", "annotations", "bsn", "builtin", "dataset", "gtad", "synthetic", "windows")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES])
