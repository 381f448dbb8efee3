"""Blob stores, content-addressed by sha256."""
