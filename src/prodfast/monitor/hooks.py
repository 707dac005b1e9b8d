"""The callback interface: the four hooks, and how the manager finds and calls them."""

from __future__ import annotations

import logging
from typing import Any

from ..limiters import RateLimitError

__all__ = ["BaseCallback"]

logger = logging.getLogger("prodfast.callbacks")

_HOOKS = ("on_llm_start", "on_llm_new_token", "on_llm_end", "on_llm_error")
_START, _TOKEN, _END, _ERROR = range(4)


def _make_refusal(retry_after: float) -> Exception:
    message = f"Rate limit exceeded. Wait {retry_after:.2f}s before retry."
    return RateLimitError(message, retry_after=retry_after)


def _is_refusal(exc: BaseException) -> bool:
    # a rate limit's refusal, or a gate refusing a call it cannot limit (a bad cost, a wrong path)
    return isinstance(exc, RateLimitError) or getattr(exc, "refuses_call", False) is True


class BaseCallback:
    """The four hooks of an LLM call; override the ones you need (the others cost nothing).

    Each hook receives keyword arguments from the manager (``run_id`` always; see the
    ``prodfast.monitor`` docstring for the rest) and must accept unknown ones (``**kwargs``). A subclass may add
    ``async def on_llm_start_async(...)`` (and the same for the other hooks): async calls
    await it instead of the plain hook.
    """

    def on_llm_start(self, model: str, prompt: Any, **kwargs: Any) -> None:
        """Called before the call runs."""

    def on_llm_new_token(self, model: str, token: Any, **kwargs: Any) -> None:
        """Called for each token a streamed call produces."""

    def on_llm_end(self, model: str, response: Any, tokens_used: int | None, **kwargs: Any) -> None:
        """Called after the call returned ``response``."""

    def on_llm_error(self, model: str, error: BaseException, **kwargs: Any) -> None:
        """Called after the call raised ``error`` (the manager re-raises it afterwards)."""



_FAST_NAMES = {"on_llm_start": "_fast_start", "on_llm_end": "_fast_end",
               "on_llm_error": "_fast_error"}


def _sync_entry(cb, hook, fn):
    """``(callable, fast)``: a stock callback's positional twin when its hook is not overridden.

    The stock callbacks define ``_fast_end`` & co. next to the public hook they stand for;
    the manager calls them with positional arguments, which saves building and unpacking a
    keyword dict per callback. Only when the class that defines the fast twin also defines
    the hook in use: a subclass that overrides the public hook gets the public hook.
    """
    name = _FAST_NAMES.get(hook)
    if name is not None:
        cls = type(cb)
        for owner in cls.__mro__:
            if name in owner.__dict__:
                if owner.__dict__.get(hook) is getattr(cls, hook, None):
                    return getattr(cb, name), True
                break
    return fn, False



def _hook_is_real(cb, hook):
    fn = getattr(cb, hook, None)
    if fn is None or not callable(fn):
        return None
    if getattr(type(cb), hook, None) is getattr(BaseCallback, hook):
        return None  # the base class's no-op: skip it
    return fn

