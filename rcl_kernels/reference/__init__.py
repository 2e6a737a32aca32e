"""Pure-PyTorch references: the baselines, the fallbacks and the test oracles."""
