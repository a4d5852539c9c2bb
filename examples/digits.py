"""Real data that ships inside scikit-learn, as the map-style dataset a lightly user would have."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def digits_as_images(start: int, stop: int) -> list[tuple[Image.Image, int]]:
    """Handwritten digits ``start:stop`` as ``(RGB PIL image, label)`` items (8x8 pixels)."""
    digits = load_digits()
    images = (digits.images[start:stop] * (255 / 16)).astype(np.uint8)
    labels = digits.target[start:stop]
    return [(Image.fromarray(img).convert("RGB"), int(t)) for img, t in zip(images, labels)]
