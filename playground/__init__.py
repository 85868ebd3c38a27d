"""A playground that runs every prompt in standard and reasoning mode side by side."""

__version__ = "0.1.0"
