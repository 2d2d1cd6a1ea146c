"""swinctl: train, sweep and report Swin Transformer detectors and segmenters, locally or on SLURM."""

import warnings

# openmim and mmengine import pkg_resources, which setuptools deprecates loudly; the pin (<81) keeps it working.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

__version__ = "0.1.0"
