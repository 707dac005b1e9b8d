"""The compiled classes' constructor signatures and argument errors, in the twin's words.

A compiled class (a Cython extension type) has no signature that ``inspect`` can read when a
default is not a literal (``timer=time.monotonic``), and Cython words a binding error its own
way (``__init__() takes at least 2 positional arguments (1 given)``). The pure-Python twin of
each class is the reference, so the core (``_signatures.pxi``) gives each compiled class:

- ``__signature__``: the twin's, through :class:`ClassSignature`;
- when its constructor raises TypeError, :func:`argument_checker`'s function binds the same
  arguments to the twin's ``__init__`` parameters, and if they do not bind, its TypeError (the
  message Python gives for the twin, naming the argument) replaces Cython's;
- for a method, when a call raises TypeError, the same rewording by :func:`method_checker`;
- an ``__init__`` attribute made by :func:`initializer`, with the twin's signature, which a
  Python subclass reaches (by inheriting it or through ``super().__init__``) instead of the slot.

Both only describe the compiled class's own constructor: tests/test_parity.py checks that it
accepts and refuses exactly the calls the twin does.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any


class ClassSignature:
    """``cls.__signature__`` for the class it was made for and its subclasses that construct
    as it does; None (inspect then looks further) where a subclass defines ``__init__`` or
    ``__new__``, and for instances."""

    def __init__(self, cls: type, signature: inspect.Signature) -> None:
        self._cls = cls
        self._signature = signature

    def __get__(self, instance: object, owner: type) -> inspect.Signature | None:
        if instance is not None:
            return None
        for klass in owner.__mro__:
            if klass is self._cls:
                return self._signature
            if "__init__" in vars(klass) or "__new__" in vars(klass):
                return None
        return None


def argument_checker(function: Callable[..., Any]) -> Callable[..., None]:
    """A function that binds its arguments as ``function`` would and does nothing else.

    Its TypeError for arguments that do not bind is word for word the one calling
    ``function`` gives: CPython words it from the parameters' names and kinds, which of them
    have defaults, and the function's qualified name, all of which the checker copies.
    """
    signature = inspect.signature(function)
    placeholders = [
        p.replace(
            annotation=inspect.Parameter.empty,
            default=inspect.Parameter.empty if p.default is inspect.Parameter.empty else None,
        )
        for p in signature.parameters.values()
    ]
    params = str(signature.replace(parameters=placeholders, return_annotation=inspect.Signature.empty))
    namespace: dict[str, Any] = {}
    exec(f"def {function.__name__}{params}:\n    pass\n", namespace)
    checker = namespace[function.__name__]
    checker.__qualname__ = function.__qualname__
    return checker


def refusal(checker: Callable[..., None], args: tuple[Any, ...], kwargs: dict[str, Any]):
    """The checker's TypeError for these arguments (without traceback), or None if they bind."""
    try:
        checker(None, *args, **kwargs)
    except TypeError as error:
        error.__context__ = None
        return error.with_traceback(None)
    return None


def initializer(original: Callable[..., None], twin_init: Callable[..., None]) -> Callable[..., None]:
    """A compiled class's ``__init__`` attribute: ``original`` (the compiled slot's wrapper),
    with the argument errors of ``twin_init`` and its signature."""
    checker = argument_checker(twin_init)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            original(self, *args, **kwargs)
        except TypeError:
            error = refusal(checker, args, kwargs)
            if error is None:
                raise
            raise error from None

    __init__.__qualname__ = twin_init.__qualname__
    __init__.__doc__ = original.__doc__
    __init__.__signature__ = inspect.signature(twin_init)  # type: ignore[attr-defined]
    return __init__


@functools.cache
def method_checker(cls: type, name: str) -> Callable[..., None]:
    """The checker of method ``name`` of the twin of ``cls`` (a compiled class or a Python
    subclass of one): that of the first compiled class in its MRO that has a twin. It takes
    ``self`` (a classmethod's: the class) first."""
    twins = importlib.import_module("prodfast._core_py")
    for klass in cls.__mro__:
        twin = getattr(twins, klass.__name__, None) if klass.__module__ == "prodfast._core" else None
        if twin is not None:
            function = inspect.getattr_static(twin, name)
            # a classmethod's checker takes the class first, as its function does
            return argument_checker(getattr(function, "__func__", function))
    raise LookupError(f"no twin for {cls!r}")
