"""Exceptions that carry a message meant for the user (the CLI prints them without a traceback)."""


class FacegraphError(Exception):
    """Base class: bad input, bad configuration, missing files. The message names what is wrong and where."""


class StoppedWithRankZero(FacegraphError):
    """Raised on the other ranks of a torchrun launch when rank 0 stopped with an error that it reports itself."""


class ConfigError(FacegraphError):
    """A configuration key is unknown, has the wrong type or an invalid value."""


class DataError(FacegraphError):
    """Input data (an image, a CSV row, an attribute value) cannot be used; the message names file, row and value."""
