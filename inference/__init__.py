"""Loupe: inference."""
