"""mammoseg: which upsampling design should a mammogram segmentation network use, and why."""

__version__ = "0.1.0"
