"""Networks and what acts on them: F and M, their builders, the losses (Eq. 1-6), the hiding of pixels, BatchNorm
handling, checkpoints, and the inference description stored with a trained F."""
