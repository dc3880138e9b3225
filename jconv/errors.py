"""The errors that mean a user mistake in a config or a work directory: the command line prints
their one line and exits 2 (:mod:`jconv.cli`)."""

__all__ = ["ConfigError", "WorkdirError"]


class ConfigError(ValueError):
    """A config file, argument or override that cannot be used."""


class WorkdirError(ConfigError):
    """A work directory that cannot be used: in use by another run, not a writable directory,
    or holding a corrupt file."""
