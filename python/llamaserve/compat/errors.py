"""The compat API's errors: llamaserve's typed errors that are also ValueErrors, as
llama-cpp-python raises ValueError for bad arguments and prompts too long for the context
(code that catches either keeps working)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from llamaserve.errors import ContextLengthExceeded, InvalidRequest

T = TypeVar("T")


class UnsupportedArgument(InvalidRequest, ValueError):
    """An argument llama-cpp-python takes that llamaserve does not honour (named in the message)."""


class InvalidArgument(InvalidRequest, ValueError):
    """A bad argument (named in the message)."""


class ContextWindowExceeded(ContextLengthExceeded, ValueError):
    """The prompt does not fit the context window (n_ctx)."""


@contextmanager
def as_value_errors() -> Iterator[None]:
    try:
        yield
    except (UnsupportedArgument, InvalidArgument, ContextWindowExceeded):
        raise
    except ContextLengthExceeded as exc:
        raise ContextWindowExceeded(str(exc)) from None
    except InvalidRequest as exc:
        raise InvalidArgument(str(exc)) from None


def checked_chunks(chunks: Iterator[T]) -> Iterator[T]:
    """A stream whose errors (raised while it is read) are the same ValueErrors."""
    with as_value_errors():
        yield from chunks
