"""Figures the stages draw: the mask figure, the embedding map, ranked lists."""
