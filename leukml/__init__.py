"""leukml: experiment-tracked ALL detection in single-cell microscope images."""

__version__ = "0.1.0"

CLASS_NAMES = ("hem", "all")
"""Class index -> folder name. Index 1 (ALL, malignant) is the positive class everywhere."""
