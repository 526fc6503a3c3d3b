"""Loupe's version, in a module of its own: `from app.version import __version__` works
whether `app` was imported as a package or, under pytest, as a namespace spread over
`app/` and `tests/app/`."""

__version__ = "0.1.0"
