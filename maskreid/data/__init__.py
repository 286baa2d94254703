"""Datasets: folders and archives to manifests, the embedded synthetic dataset, image decoding and caching, the
transforms (train and test), PK sampling, and the splits the stages load (build.py)."""
