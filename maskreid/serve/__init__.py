"""Using a trained model outside the pipeline: load it (inference.py), embed files (gallery.py), search a gallery
(search.py), export to ONNX (export.py)."""
