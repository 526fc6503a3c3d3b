"""Loupe: viewers."""
