"""Post-training quantization of bundles: int8 (NNCF, Q/DQ ONNX) and fp16 variants, with a bound
per task (docs/quantization.md). The public entry point is `quantize_bundle`."""

from toolchain.quantize.api import PRECISIONS, QuantizeOptions, quantize_bundle

__all__ = ["PRECISIONS", "QuantizeOptions", "quantize_bundle"]
