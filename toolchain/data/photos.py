"""Real photos bundled with scikit-image (no download): golden inputs for 224x224 models."""

from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


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
