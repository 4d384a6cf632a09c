"""Helpers every layer may use: the option definitions configs are made of (``options``), the run
schema (``runschema``: every tag, param and artifact name of a tracked run) and the search filters
built from it (``runfilter``), the errors leukml words for its users (``errors``), the cache folder
(``cachedir``), broken stores worded before a backend loads (``stores``), and the console's filters
and backend import (``console``).

Imports nothing else of leukml. No Keras, TensorFlow, JAX or torch, so that every layer (data and
analysis included) can use it without a backend; the one exception is ``console.import_backend``,
which loads Keras (and TensorFlow's devices) inside the console's filter, for the layers that
already use Keras. What asks the backend about the device is ``training.runtime``. A helper that
only one layer uses lives in that layer instead.
"""
