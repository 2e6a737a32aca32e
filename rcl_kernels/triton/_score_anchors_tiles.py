"""The tile candidates of score_anchors' Triton kernels, importable without Triton (the launch
plans of rcl_kernels/triton/score_anchors.py describe the launches from them)."""

# GPU tile candidates (BLOCK_K, BLOCK_T, BLOCK_H, warps, stages) for the autotuner, per tl.dot
# precision. "tf32" (also 16-bit operands): the M = 64 tiles get wgmma instructions. "ieee"
# (float32 without TF32): tl.dot runs on the FMA units with its operands in registers, so the
# tiles are smaller; the "tf32" ones spill 0.9 KB (forward) and 8.5 KB (projected backward)
# there. tests/triton_hopper_compile.py reports registers and spills of each for sm_90 (no GPU
# needed) and tests/test_triton_hopper_compile.py bounds the spills.
FWD_CONFIGS = {"tf32": [(64, 32, 128, 8, 2), (64, 16, 128, 8, 3), (64, 32, 64, 8, 2)],
               "ieee": [(32, 32, 64, 8, 2), (32, 16, 64, 8, 2), (16, 32, 64, 4, 2)]}
PROJECTED_CONFIGS = {"tf32": [(64, 64, 128, 8, 2), (64, 32, 128, 8, 2), (32, 32, 64, 4, 3)],
                     "ieee": [(32, 32, 64, 4, 2), (32, 64, 64, 8, 2), (16, 32, 64, 4, 3)]}
SEGMENTS_CONFIGS = {"tf32": [(64, 32, 64, 4, 2), (64, 32, 128, 8, 2)],
                    "ieee": [(32, 32, 64, 4, 2), (32, 16, 64, 4, 2)]}
