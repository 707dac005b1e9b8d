"""The compiled core and its pure-Python twin present the same public classes, signatures and
argument errors.

The test walks the public classes of both backend modules, so a class exported from both is
covered without a line here; a constructor parameter this file has no valid value for fails
``test_every_constructor_can_be_sampled`` by name. Annotations are not compared (the types
live in _core.pyi, checked by stubtest), and the operators' slot methods (``__getitem__`` ...)
compare as positional-only, as CPython declares its own.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import prodfast._core_py as twins

pytestmark = pytest.mark.cython_backend

EMPTY = inspect.Parameter.empty
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


# A valid value for each required constructor parameter, by name.
SAMPLES: dict[str, Any] = {
    "maxsize": 8,
    "ttl": 10.0,
    "ttu": lambda key, value, now: now + 10.0,
    "rate": 5.0,
    "capacity": 10.0,
    "max_calls": 5,
    "window": 1.0,
    "p": 0.5,
    "relative_accuracy": 0.01,
}

# Classes the library makes and users do not construct (their constructors take internal state,
# unchecked): how to get one. Their constructors' argument binding is still compared.
MADE_BY_THE_LIBRARY: dict[str, Any] = {
    "Reservation": lambda module: module.TokenBucket(5.0, 10.0).reserve(1),
}

# The protocol methods whose signatures are compared besides the public ones (not the
# operators, nor pickling's, which users do not call by name and Cython writes its own way).
DUNDERS = (
    "__init__",
    "__getitem__",
    "__setitem__",
    "__delitem__",
    "__contains__",
    "__iter__",
    "__len__",
    "__copy__",
    "__deepcopy__",
    "__missing__",
    "__enter__",
    "__exit__",
    "__aenter__",
    "__aexit__",
)


class Alien:
    """A value of no type any parameter expects."""

    def __repr__(self) -> str:
        return "Alien()"


ALIEN = Alien()


def public_classes(module) -> dict[str, type]:
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, type)
        and value.__module__.startswith("prodfast.")
    }


NAMES = sorted(public_classes(twins))
CONSTRUCTED = [name for name in NAMES if name not in MADE_BY_THE_LIBRARY]


@pytest.fixture(scope="module")
def compiled():
    return importlib.import_module("prodfast._core")


@pytest.fixture(params=NAMES)
def pair(request, compiled) -> tuple[type, type]:
    name = request.param
    assert hasattr(compiled, name), f"prodfast._core has no {name}"
    return getattr(compiled, name), getattr(twins, name)


@pytest.fixture(params=CONSTRUCTED)
def constructed(request, compiled) -> tuple[type, type]:
    """A pair of the classes users construct."""
    return getattr(compiled, request.param), getattr(twins, request.param)


def instance(cls: type):
    """One instance of ``cls`` (of either backend), made as users make it."""
    module = _module_of(cls)
    if cls.__name__ in MADE_BY_THE_LIBRARY:
        return MADE_BY_THE_LIBRARY[cls.__name__](module)
    args, kwargs = sample_args(inspect.signature(cls))
    return cls(*args, **kwargs)


def comparable(sig: inspect.Signature, *, drop_self: bool = False, slot: bool = False):
    params = list(sig.parameters.values())
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    if slot:
        params = [
            p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) if p.kind in POSITIONAL else p
            for p in params
        ]
    params = [p.replace(annotation=EMPTY) for p in params]
    return sig.replace(parameters=params, return_annotation=EMPTY)


def outcome(function, args, kwargs) -> tuple[str, str] | None:
    """None when the call returns, else the type and text of what it raised."""
    try:
        result = function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any exception is compared between the backends
        return type(exc).__name__, str(exc)
    if inspect.isawaitable(result):
        result.close()
    return None


def sample_args(sig: inspect.Signature) -> tuple[list[Any], dict[str, Any]]:
    """Valid arguments for every required parameter: positional-only ones positionally, the
    others by keyword."""
    args, kwargs = [], {}
    for p in sig.parameters.values():
        if p.default is not EMPTY or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = SAMPLES[p.name]
        if p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    return args, kwargs


def bad_calls(sig: inspect.Signature) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Calls that do not bind to ``sig``: each required argument left out, one positional too
    many, an unknown keyword, an argument given twice."""
    params = list(sig.parameters.values())
    kinds = {p.kind for p in params}
    positional = [p for p in params if p.kind in POSITIONAL]
    required = [p for p in positional if p.default is EMPTY]
    required_kw = {p.name: ALIEN for p in params if p.kind is p.KEYWORD_ONLY and p.default is EMPTY}
    calls = []
    for i, p in enumerate(required):
        calls.append((f"without {p.name}", [ALIEN] * i, dict(required_kw)))
    for name in required_kw:
        calls.append(
            (
                f"without {name}",
                [ALIEN] * len(required),
                {n: ALIEN for n in required_kw if n != name},
            )
        )
    if inspect.Parameter.VAR_POSITIONAL not in kinds:
        calls.append(
            ("one positional too many", [ALIEN] * (len(positional) + 1), dict(required_kw))
        )
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        calls.append(
            (
                "an unknown keyword",
                [ALIEN] * len(required),
                {**required_kw, "no_such_argument": ALIEN},
            )
        )
    twice = next((p for p in positional if p.kind is p.POSITIONAL_OR_KEYWORD), None)
    if twice is not None:
        before = positional.index(twice) + 1
        calls.append(
            (
                f"{twice.name} twice",
                [ALIEN] * max(before, len(required)),
                {**required_kw, twice.name: ALIEN},
            )
        )
    return calls


def test_both_backends_have_the_same_public_classes(compiled):
    assert sorted(public_classes(compiled)) == NAMES


def test_every_constructor_can_be_sampled(constructed):
    _, twin = constructed
    sig = inspect.signature(twin)
    unknown = [
        p.name
        for p in sig.parameters.values()
        if p.default is EMPTY
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name not in SAMPLES
    ]
    assert not unknown, f"add a valid value for {unknown} to SAMPLES in this file"


def test_class_signatures_are_equal(pair):
    cy, twin = pair
    assert comparable(inspect.signature(cy)) == comparable(inspect.signature(twin))


def test_same_public_attributes(pair):
    cy, twin = pair
    public = {n for n in dir(twin) if not n.startswith("_")}
    assert {n for n in dir(cy) if not n.startswith("_")} == public
    for name in public:
        assert inspect.isdatadescriptor(
            inspect.getattr_static(cy, name)
        ) == inspect.isdatadescriptor(inspect.getattr_static(twin, name)), (
            f"{name}: a property on one backend only"
        )


def _methods(cls: type) -> list[str]:
    """Public methods, the protocol methods above, and the private ones (``_check``...) the
    Python layers call on either backend."""
    names = [n for n in dir(cls) if not n.startswith("__") or n in DUNDERS]
    return [
        n
        for n in names
        if callable(getattr(cls, n, None)) and not isinstance(getattr(cls, n), type)
    ]


def test_method_signatures_are_equal(pair):
    cy, twin = pair
    for name in _methods(twin):
        if name.startswith("_") and not callable(getattr(cy, name, None)):
            continue  # a private helper of the twin's, not part of what the layers call
        assert hasattr(cy, name), f"{name} is missing from the compiled class"
        slot = type(inspect.getattr_static(cy, name)).__name__ == "wrapper_descriptor"
        got = comparable(inspect.signature(getattr(cy, name)), drop_self=True, slot=slot)
        want = comparable(inspect.signature(getattr(twin, name)), drop_self=True, slot=slot)
        assert got == want, name


def test_constructors_refuse_bad_calls_in_the_same_words(pair):
    cy, twin = pair
    calls = bad_calls(inspect.signature(twin))
    assert calls
    for label, args, kwargs in calls:
        want = outcome(twin, args, kwargs)
        assert want is not None and want[0] == "TypeError", label
        assert outcome(cy, args, kwargs) == want, label


def _module_of(cls: type):
    return importlib.import_module(cls.__module__) if cls.__module__ == "prodfast._core" else twins


def _with_alien(cls: type, sig: inspect.Signature, index: int | None):
    """The outcome of constructing ``cls`` with valid arguments, parameter ``index`` (if not
    None) replaced by ALIEN."""
    args, kwargs = sample_args(sig)
    if index is not None:
        p = list(sig.parameters.values())[index]
        if p.kind is p.POSITIONAL_ONLY:
            args = [*args[:index], ALIEN, *args[index + 1 :]]
        else:
            kwargs = {**kwargs, p.name: ALIEN}
    return outcome(cls, args, kwargs)


def test_constructors_refuse_wrong_types_in_the_same_words(constructed):
    cy, twin = constructed
    sig = inspect.signature(twin)
    assert _with_alien(cy, sig, None) is None and _with_alien(twin, sig, None) is None
    for i, p in enumerate(sig.parameters.values()):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        want = _with_alien(twin, sig, i)
        assert _with_alien(cy, sig, i) == want, p.name
        if want is not None:
            assert p.name in want[1], f"the error for {p.name} does not name it: {want[1]}"


def _meth_o_plain(cls: type) -> list[str]:
    """METH_O methods left as they are on this version (see test_meth_o_method_*)."""
    return getattr(_module_of(cls), "_sig_meth_o_plain", [])


def test_methods_refuse_bad_calls_in_the_same_words(pair):
    # Every public method, those compiled with cython.binding(False) for speed (LRUCache.get)
    # included, called bound and through the class.
    cy, twin = pair
    compiled, reference = instance(cy), instance(twin)
    assert type(compiled) is cy and type(reference) is twin
    checked = 0
    for name in _methods(twin):
        if name.startswith("_") or f"{cy.__name__}.{name}" in _meth_o_plain(cy):
            continue
        for label, bad, bad_kw in bad_calls(inspect.signature(getattr(reference, name))):
            want = outcome(getattr(reference, name), bad, bad_kw)
            assert want is not None and want[0] == "TypeError", f"{name}: {label}"
            assert outcome(getattr(compiled, name), bad, bad_kw) == want, f"{name}: {label}"
            unbound = outcome(getattr(cy, name), [compiled, *bad], bad_kw)
            assert unbound == outcome(getattr(twin, name), [reference, *bad], bad_kw), name
            checked += 1
    assert checked or not [n for n in _methods(twin) if not n.startswith("_")]


def _push_calls(sketch):
    """QuantileSketch.push (a METH_O method: cython.binding(False), ``push(self, x, /)``) called
    every way CPython calls one: the outcome of each form, by label."""
    cls = type(sketch)
    bound = sketch.push

    def specialized(*args, **kwargs):
        # A call site of its own per shape, run often enough for the adaptive interpreter
        # (3.11+) to specialize it, then once more for the outcome.
        call = (
            {
                0: lambda: sketch.push(),
                1: lambda: sketch.push(args[0]) if not kwargs else sketch.push(args[0], **kwargs),
                2: lambda: sketch.push(args[0], args[1]),
            }[len(args)]
            if args or not kwargs
            else (lambda: sketch.push(**kwargs))
        )
        for _ in range(200):
            outcome(call, [], {})
        return outcome(call, [], {})

    forms = {
        "s.push(...)": specialized,
        "Cls.push(s, ...)": lambda *a, **k: outcome(cls.push, [sketch, *a], k),
        "p = s.push; p(...)": lambda *a, **k: outcome(bound, a, k),
        "map(s.push, ...)": lambda *a, **k: (
            outcome(lambda: list(map(sketch.push, [*a])), [], {})
            if len(a) == 1 and not k
            else outcome(bound, a, k)
        ),
    }
    args_of = {
        "no argument": ((), {}),
        "two": ((1.0, 2.0), {}),
        "a keyword": ((), {"x": 1.0}),
        "an unknown keyword": ((1.0,), {"no_such_argument": 1.0}),
        "one": ((1.5,), {}),
        "a wrong type": (("a",), {}),
        "NaN": ((float("nan"),), {}),
    }
    return {
        (form, label): call(*args, **kwargs)
        for form, call in forms.items()
        for label, (args, kwargs) in args_of.items()
    }


def test_meth_o_method_is_adapted_on_known_layouts(compiled):
    # Where CPython's method descriptor layout is known (3.8 to 3.13), push is given the adapter
    # of _signatures.pxi; elsewhere it stays a plain METH_O method and CPython's words stand.
    import sys

    known = (3, 8) <= sys.version_info[:2] <= (3, 13)
    assert ("QuantileSketch.push" in compiled._sig_meth_o_adapted) == known
    assert ("QuantileSketch.push" in compiled._sig_meth_o_plain) == (not known)
    if not known:  # CPython's own words, before the method runs
        with pytest.raises(TypeError, match=r"takes exactly one argument \(0 given\)"):
            compiled.QuantileSketch().push()


def test_meth_o_method_refuses_bad_calls_in_the_twins_words_every_way(compiled):
    if "QuantileSketch.push" not in compiled._sig_meth_o_adapted:
        pytest.skip("QuantileSketch.push left as a plain METH_O method on this version")
    got = _push_calls(compiled.QuantileSketch())
    want = _push_calls(twins.QuantileSketch())
    for key, outcome_ in want.items():
        assert got[key] == outcome_, key
    assert got["s.push(...)", "no argument"][1] == (
        "QuantileSketch.push() missing 1 required positional argument: 'x'"
    )
    # every form pushes the value it is given, and a refused call pushes nothing
    sketch = compiled.QuantileSketch()
    for _ in range(200):
        sketch.push(2.0)
        compiled.QuantileSketch.push(sketch, 2.0)
        with pytest.raises(TypeError):
            sketch.push()
    list(map(sketch.push, [2.0, 2.0]))
    assert sketch.count == 402 and sketch.quantile(0.5) == pytest.approx(2.0, rel=0.02)


def test_meth_o_method_checks_self_as_cpython_does(compiled):
    # The descriptor's own call (Cls.push(obj, x)) refuses another type of self in CPython's
    # words, as any method descriptor does, and before the method runs.
    push = compiled.QuantileSketch.push
    with pytest.raises(
        TypeError,
        match=r"^descriptor 'push' for '.*QuantileSketch' objects "
        r"doesn't apply to a 'int' object$",
    ):
        push(1, 2.0)
    with pytest.raises(
        TypeError, match=r"^unbound method QuantileSketch.push\(\) needs an argument$"
    ):
        push()
    with pytest.raises(TypeError, match="doesn't apply to a 'list' object"):
        push.__get__([], list)


def test_tiered_cache_base_refuses_bad_gets_in_the_same_words():
    # prodfast.redis.TieredCache's get is its compiled base's (binding=False, for the hit path)
    import prodfast._core_py as twin

    compiled = pytest.importorskip("prodfast._core")
    calls = [((), {}), ((1, 2, 3), {}), ((), {"k": 1}), ((1,), {"key": 1})]
    for args, kwargs in calls:
        words = []
        for core in (compiled, twin):
            with pytest.raises(TypeError) as refused:
                core._TierFront().get(*args, **kwargs)
            words.append(str(refused.value))
        assert words[0] == words[1], (args, kwargs)
