"""Detect with a trained RCL checkpoint (same as `rcl-kernels detect`); see rcl_kernels/models/detect_command.py.

    python python/detect.py --checkpoint runs/thumos_small/last.pt --output runs/thumos_small/detections.json
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rcl_kernels.models.detect_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
