"""CMC: real-time post-purchase marketing for point-of-sale systems."""

__version__ = "0.1.0"
