"""Drop-in replacements for the feature-sampling layers of existing temporal action detectors.

Same constructor arguments, parameter names and shapes as the originals, so their checkpoints
load with load_state_dict(strict=True) and the outputs match (docs/integrations.md):

  rcl_kernels.integrations.opentad   BMNExtractor, ROIAlignExtractor, Align1DLayer (sming256/OpenTAD),
                                     register_in_opentad() for OpenTAD's model registry
  rcl_kernels.integrations.gtad      Align1DLayer (G-TAD, frostinassiky/gtad)
  rcl_kernels.integrations.mmaction2 BMN (mmaction2 1.2.0's whole model, open-mmlab/mmaction2), registered
                                     in mmaction2's MODELS as "RclBMN"; mmaction2_proposals: its batched
                                     predict post-processing (mmaction2 optional for both)
"""
