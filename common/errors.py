"""Exceptions meant for people: each names the field or file at fault and how to fix it."""


class OnchipError(Exception):
    """Base class of errors the CLI turns into one line on stderr and exit code 2."""


class ConfigError(OnchipError):
    """A configuration value is unknown, of the wrong type or out of range."""


class DataError(OnchipError):
    """A data file is missing, truncated or not what its name says."""


class DivergedError(OnchipError):
    """Training produced a non-finite loss."""
