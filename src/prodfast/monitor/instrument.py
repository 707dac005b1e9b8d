"""``CallbackManager.instrument``: track every call of a function, coroutine or generator."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .run import _RUNNING, _joined
from .usage import extract_response_model, extract_usage

__all__ = ["instrument"]


def instrument(manager, model: Any, prompt_arg: str, operation=None, provider=None):
    """The decorator ``manager.instrument(model, prompt_arg=..., operation=..., provider=...)``
    returns (see there)."""
    if callable(model):
        return instrument(manager, None, prompt_arg, operation, provider)(model)
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str or None, got {type(model).__name__}")
    if not isinstance(prompt_arg, str):
        raise TypeError(f"prompt_arg must be a str, got {type(prompt_arg).__name__}")
    if operation is not None and not isinstance(operation, str):
        raise TypeError(f"operation must be a str or None, got {type(operation).__name__}")
    if provider is not None and not isinstance(provider, str):
        raise TypeError(f"provider must be a str or None, got {type(provider).__name__}")
    op = manager.operation if operation is None else str(operation)
    prov = manager.provider if provider is None else str(provider)

    def decorate(fn):
        if not callable(fn):
            raise TypeError(f"instrument() decorates a callable, got {type(fn).__name__}")
        default_model = model if model is not None else getattr(fn, "__name__", repr(fn))
        index = _prompt_index(fn, prompt_arg)
        is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        path = "async" if is_async else "sync"
        for cb in manager.callbacks:  # a gate that cannot serve this call path refuses it now
            if path not in getattr(cb, "call_paths", (path,)):
                raise cb.path_error(is_async)

        def describe(args, kwargs):
            name = kwargs.get("model", default_model) if model is None else model
            if type(name) is not str:
                name = str(name)
            if prompt_arg in kwargs:
                prompt = kwargs[prompt_arg]
            else:
                prompt = args[index] if index is not None and len(args) > index else None
            return name, prompt

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*args, **kwargs):
                name, prompt = describe(args, kwargs)
                run = await manager._run_type(manager, name, prompt, None, None, op, prov)._start_async()
                try:
                    agen = fn(*args, **kwargs)
                except BaseException as exc:
                    await run.aerror(exc)
                    raise
                parts = []
                usage = response_model = None
                try:
                    async for item in agen:
                        found = extract_usage(item)
                        if found is not None:
                            usage = found
                        found = extract_response_model(item)
                        if found is not None:
                            response_model = found
                        parts.append(item)
                        await run.anew_token(item)
                        yield item
                except GeneratorExit:
                    # the consumer stopped early: what it took is the response
                    await agen.aclose()
                    await run.aend(_joined(parts), usage=usage, response_model=response_model)
                    raise
                except BaseException as exc:
                    await agen.aclose()
                    if run._state == _RUNNING:
                        await run.aerror(exc)
                    raise
                await run.aend(_joined(parts), usage=usage, response_model=response_model)

            return agen_wrapper

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args, **kwargs):
                name, prompt = describe(args, kwargs)
                run = await manager._run_type(manager, name, prompt, None, None, op, prov)._start_async()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    await run.aerror(exc)
                    raise
                await run.aend(result)
                return result

            return async_wrapper

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                name, prompt = describe(args, kwargs)
                run = manager._run_type(manager, name, prompt, None, None, op, prov)._start_sync()
                try:
                    gen = fn(*args, **kwargs)
                except BaseException as exc:
                    run.error(exc)
                    raise
                parts = []
                usage = response_model = None
                try:
                    for item in gen:
                        found = extract_usage(item)
                        if found is not None:
                            usage = found
                        found = extract_response_model(item)
                        if found is not None:
                            response_model = found
                        parts.append(item)
                        run.new_token(item)
                        yield item
                except GeneratorExit:
                    gen.close()
                    run.end(_joined(parts), usage=usage, response_model=response_model)
                    raise
                except BaseException as exc:
                    gen.close()
                    if run._state == _RUNNING:
                        run.error(exc)
                    raise
                run.end(_joined(parts), usage=usage, response_model=response_model)

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            name, prompt = describe(args, kwargs)
            run = manager._run_type(manager, name, prompt, None, None, op, prov)._start_sync()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                run.error(exc)
                raise
            run.end(result)
            return result

        return wrapper

    return decorate


def _prompt_index(fn, prompt_arg):
    """Where the prompt sits among ``fn``'s positional arguments (None: nowhere)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return 0
    positional = [
        p for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    for i, p in enumerate(positional):
        if p.name == prompt_arg:
            return i
    skip = 1 if positional and positional[0].name in ("self", "cls") else 0
    if len(positional) > skip or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return skip
    return None

