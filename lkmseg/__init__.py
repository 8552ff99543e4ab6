"""lkmseg: square vs separable-kernel U-Nets — train, export, benchmark."""

__version__ = "0.1.0"
