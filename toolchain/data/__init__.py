"""Datasets that install offline: Fashion-MNIST from Debian, scikit-image's sample photos."""
