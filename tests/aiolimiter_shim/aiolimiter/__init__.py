"""Stands in for the ``aiolimiter`` package while aiolimiter's own test suite runs against
``prodfast.AsyncLimiter`` (``make aiolimiter-suite``): the suite's ``from aiolimiter import
AsyncLimiter`` gets prodfast's class."""

from prodfast import AsyncLimiter

__all__ = ["AsyncLimiter"]
