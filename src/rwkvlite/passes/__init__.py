"""Compression passes: each transforms a model and reports what it did."""
