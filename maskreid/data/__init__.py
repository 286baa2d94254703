"""Datasets: folders and archives to manifests, the embedded synthetic dataset, image loading, PK sampling."""
