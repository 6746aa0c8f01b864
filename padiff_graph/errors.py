"""One error hierarchy for every user-facing failure.

Each error carries a one-line message that names the layer paths involved and
says what to do next; the CLI prints it and exits with ``exit_code`` (2 for
usage and input problems) without a traceback.
"""

from __future__ import annotations

import re

#: the longest summary :func:`describe` gives of a framework's error message
SUMMARY_CHARS = 400


class PadiffGraphError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 2


class InputError(PadiffGraphError):
    """A model spec, file, input or option that cannot be used."""


class FactoryError(InputError):
    """A user's model factory raised; ``__cause__`` holds the original error."""


class UnsupportedModelError(InputError):
    """The object is neither a ``torch.nn.Module`` nor a ``paddle.nn.Layer``."""


class LayerMapError(InputError):
    """A layer-map file or object is malformed or does not fit the models."""


class DumpError(PadiffGraphError):
    """A dump directory that is missing, damaged, incomplete or not a padiff_graph dump."""


class OutputError(PadiffGraphError):
    """A map, report or dump could not be written (the target is left as it was)."""


class AssignError(PadiffGraphError):
    """Weights could not be copied through the map (names both layers)."""


class ModelRunError(PadiffGraphError):
    """A model's forward or backward raised; names the last layer that ran."""


class NotComparableError(DumpError):
    """A sharded record whose ranks cannot be merged without guessing (``compare`` lists it, never merges it)."""


def describe(error: BaseException) -> str:
    """``Type: message`` on one line, for an error raised by a framework or user code.

    paddle's messages span several lines (``[Hint: ...] (at /paddle/...)``,
    ``[operator < linear > error]``, a C++ traceback): the source locations
    and tracebacks are dropped, hints kept inline, whitespace folded, and the
    result cut at :data:`SUMMARY_CHARS`. The full text is in ``error`` itself
    (the CLI prints it with ``--debug``).
    """
    text = str(error).split("C++ Traceback")[0]
    text = re.sub(r"\(at /[^)]*\)", "", text)
    text = re.sub(r"\[operator < \w+ > error\]", "", text)
    text = re.sub(r"-{5,}", "", text)
    text = " ".join(text.split())
    if len(text) > SUMMARY_CHARS:
        text = text[: SUMMARY_CHARS - 1].rstrip() + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
