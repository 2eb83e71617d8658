"""Assertions shared by several test modules."""

from __future__ import annotations

import pytest

from vaecli.errors import InputError


def input_error(func, *args, **kwargs) -> str:
    """Call func expecting InputError; return its message after checking it is one line."""
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and message.strip() == message
    return message
