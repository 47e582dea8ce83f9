"""The allocator setting behind fast statistics takes effect where it can, and only there."""

from __future__ import annotations

import platform

import pytest

from cdrhub.ops import memory


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting exists only for glibc",
)
def test_glibc_takes_the_setting() -> None:
    """On glibc both thresholds are accepted, and 0 leaves the defaults untouched."""
    assert memory.keep_freed_memory(64) is True
    assert memory.keep_freed_memory(0) is False
