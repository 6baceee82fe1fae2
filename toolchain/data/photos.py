"""Real photos bundled with scikit-image (no download): golden inputs for 224x224 models."""

from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_photos(size: int, n: int = 4) -> np.ndarray:
    """Up to len(PHOTOS) RGB photos, center-cropped and resized to size x size, uint8 [n, H, W, 3]."""
    import skimage.data
    from skimage.transform import resize

    out = []
    for name in PHOTOS[:n]:
        img = getattr(skimage.data, name)()
        h, w = img.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        crop = img[top : top + s, left : left + s]
        out.append((resize(crop, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8))
    return np.stack(out)


def normalize_photos(photos: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, ImageNet-normalized."""
    x = photos.astype(np.float32) / 255.0
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
