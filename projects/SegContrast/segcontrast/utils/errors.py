"""The one error type for bad input: what a command turns into exit code 2 and one message."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input a person gave (a file, an item in it, a flag or a setting).

    ``str(err)`` is the whole message: it names the file and the item, what was expected and
    what was found. Commands print it and exit with code 2, never with a traceback. The
    specific kinds (a dataset file, a results file, a setting, an output folder) subclass it.
    """
