"""Fixtures shared by the engine's tests."""

from tests.support.s3 import s3_endpoint

__all__ = ["s3_endpoint"]
