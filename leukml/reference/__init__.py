"""The published numbers leukml compares itself with: the paper's tables (``paper``) and the C-NMC
2019 challenge's results with their protocols (``challenge``).

Plain data; imports ``common`` at most. Above it everything may read these numbers; nothing here
computes.
"""
