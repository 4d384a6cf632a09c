"""The cells: discovery of a dataset's files and labels (the real C-NMC layout), content digests,
image decoding and the decoded-image cache, splits (the paper's and the field's protocols),
synthetic C-NMC-like data, the dihedral augmentation's transforms, ``leukml inspect``'s view, and
whether an image looks like the training cells (``lookalike``, the page's warnings).

May import ``common`` and ``reference``. No Keras, TensorFlow, JAX, MLflow or Optuna: the data
layer is numpy and Pillow (and scikit-learn for k-fold splits), so every other layer and tool can
read data without a backend.
"""
