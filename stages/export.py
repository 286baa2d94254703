"""DVC stage export@<dataset>: ONNX export of the final F, checked with onnxruntime on test images."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Export the final F to ONNX", "maskreid.pipeline.export:export_final_model")
