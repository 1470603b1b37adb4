"""User-facing errors: one clear paragraph, exit code 2, never a traceback."""

from __future__ import annotations


class CftdataError(Exception):
    """An error caused by the user's input (recipe, file, key, row); printed without a traceback."""

    exit_code = 2


class RecipeError(CftdataError):
    """The recipe file is missing, malformed, or does not validate."""


class SourceError(CftdataError):
    """A source corpus cannot be read or mapped to canonical rows."""


class BackendConfigError(CftdataError):
    """A backend cannot be set up (unknown name, missing API key, missing optional package)."""


class NoProgressError(CftdataError):
    """A model stage made no progress for longer than the configured stall timeout."""


class EndpointError(CftdataError):
    """A model endpoint fails every call the same way (a refused key, an unknown model, nothing listening, not the
    API answering): the build stops with one paragraph naming the endpoint and the fix, exit code 1."""

    exit_code = 1
