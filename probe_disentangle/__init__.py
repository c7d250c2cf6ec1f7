"""probe_disentangle: find and steer disentangled directions inside pretrained networks."""

__version__ = "0.1.0"
