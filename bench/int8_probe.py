"""Could int8 reach the 80 images/s goal? ResNet-50 at 224x112: onnxruntime fp32 vs static int8 quantisation
(uint8 activations, calibrated on the timed batch): QOperator and QDQ formats, int8 and uint8 weights,
per-channel and per-tensor.

    python bench/int8_probe.py resnet50 234 117 224 112

Random weights: a speed probe only (int8 accuracy would need trained models). Not used by maskreid.
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from maskreid.models.checkpoints import save_checkpoint
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.spec import ModelSpec
from maskreid.serve.export import export_onnx
from maskreid.serve.inference import preprocess

backbone, resize, crop = sys.argv[1], (int(sys.argv[2]), int(sys.argv[3])), (int(sys.argv[4]), int(sys.argv[5]))
d = Path(tempfile.mkdtemp())
spec = ModelSpec(backbone, 512, resize, crop, (0.485,0.456,0.406), (0.229,0.224,0.225), "b", 3, "-")
torch.manual_seed(0)
save_checkpoint(d/"m.pt", {"extractor": FeatureExtractor(backbone, 512).state_dict(), "inference": spec.to_dict()})
export_onnx(d/"m.pt", d/"m.onnx")
quant_pre_process(str(d/"m.onnx"), str(d/"m_pre.onnx"))
batch = torch.randint(0, 256, (64, 3, *resize), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
x = preprocess(batch, spec).numpy()
class R(CalibrationDataReader):
    def __init__(self): self.it = iter([{"images": x[i:i+16]} for i in range(0, 64, 16)])
    def get_next(self): return next(self.it, None)
def speed(path):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    s.run(None, {"images": x}); best = 1e9
    for _ in range(3):
        t = time.perf_counter(); y = s.run(None, {"images": x})[0]; best = min(best, time.perf_counter() - t)
    return 64 / best, y
fp, yf = speed(d/"m.onnx")
print("fp32", round(fp, 1), flush=True)
VARIANTS = {   # name: (format, per-channel weights, weight type); activations are uint8 in all
    "QOperator, per-channel int8 weights": (QuantFormat.QOperator, True, QuantType.QInt8),
    "QDQ, per-channel int8 weights": (QuantFormat.QDQ, True, QuantType.QInt8),
    "QOperator, per-tensor int8 weights": (QuantFormat.QOperator, False, QuantType.QInt8),
    "QOperator, per-channel uint8 weights": (QuantFormat.QOperator, True, QuantType.QUInt8),
    "QOperator, per-tensor uint8 weights": (QuantFormat.QOperator, False, QuantType.QUInt8),
    "QDQ, per-channel uint8 weights": (QuantFormat.QDQ, True, QuantType.QUInt8),
}
for i, (name, (fmt, per_channel, weights)) in enumerate(VARIANTS.items()):
    out = d/f"m_{i}.onnx"
    quantize_static(str(d/"m_pre.onnx"), str(out), R(), quant_format=fmt, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=weights)
    sp, yq = speed(out)
    print(name, round(sp, 1), "max diff", float(np.abs(yq - yf).max()), "rel", float(np.abs(yq-yf).max()/np.abs(yf).max()), flush=True)
