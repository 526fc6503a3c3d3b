"""Loading CT series into `core.volume.Volume`: headers, stack checks, geometry, pixels to HU."""

from core.loading.errors import FileProblem, LoadCancelled, LoadError
from core.loading.headers import FileHeader, FrameHeader, PixelLayout, read_file_header
from core.loading.series import LoadProgress, SeriesLoader, load_series
from core.loading.stack import SeriesPlan, plan_stack

__all__ = [
    "FileHeader",
    "FileProblem",
    "FrameHeader",
    "LoadCancelled",
    "LoadError",
    "LoadProgress",
    "PixelLayout",
    "SeriesLoader",
    "SeriesPlan",
    "load_series",
    "plan_stack",
    "read_file_header",
]
