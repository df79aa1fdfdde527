"""Images/s ESTIMATES for Jetson devices from a network's MACs (not measurements)."""

from __future__ import annotations

__all__ = ["DEVICES", "ASSUMED_EFFICIENCY", "estimate_images_per_s"]

# fp16 peak of the GPU's CUDA cores, FLOP/s (2 FLOP per MAC)
DEVICES = {
    "jetson_nano": 472e9,  # 128 Maxwell cores at 921.6 MHz, fp16: 472 GFLOP/s
    "jetson_orin_nano": 2.56e12,  # 1024 Ampere cores at 625 MHz, fp16 on CUDA cores (tensor cores not assumed)
}
# Small 2D convnets at batch 1 under TensorRT reach a small share of peak: kernels are launch- and memory-bound
# at 16x16 to 128x128 feature maps. 10 % is a conservative assumption, not a measured figure.
ASSUMED_EFFICIENCY = 0.10


def estimate_images_per_s(macs: int, device: str, efficiency: float = ASSUMED_EFFICIENCY) -> float:
    """Estimated images/s at batch 1: efficiency x peak FLOP/s / (2 x MACs per image)."""
    return efficiency * DEVICES[device] / (2 * macs)
