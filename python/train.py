"""Train the RCL detector (same as `rcl-kernels train`); see rcl_kernels/models/train_command.py.

    python python/train.py --max-steps 300 --output-dir runs/thumos_small
    torchrun --nproc_per_node 2 python/train.py --config my.cfg     # DistributedDataParallel
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rcl_kernels.models.train_command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
