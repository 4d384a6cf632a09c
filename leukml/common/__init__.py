"""Helpers every layer may use: the option definitions configs are made of (``options``), the run
schema (``runschema``: every tag, param and artifact name of a tracked run) and the search filters
built from it (``runfilter``), the cache folder (``cachedir``), what runs the code (``runtime``:
backend, device, precision), and the console's filters and backend import (``console``).

Imports nothing else of leukml. A helper that only one layer uses lives in that layer instead.
"""
