"""Networks: the feature extractor F and the mask generator M."""
