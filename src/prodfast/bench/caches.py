"""Caches: get-hit, get-miss, update and insert-with-eviction at N = 1e3 ... 1e6, per policy.

Every cache is filled with N shuffled str keys (``--keys int`` for ints), then timed on batches of random keys:
hits drawn from those N, misses from keys never inserted, updates of present keys, and
inserts of new keys into the full cache (each one evicts the least recently used). The
inserted keys cycle through a pool of N + batch keys that were never touched otherwise, so
every insert really is new: by the time the cycle comes back to a key, N newer keys have
pushed it out. A plain dict is the floor; for insert+evict the floor is the least any
bounded map must do, ``d[new] = v`` plus ``del d[oldest]`` on a dict kept in insertion order.

The LRU groups hold every LRU peer; each other
policy has its own groups, labelled ``<operation> · <policy>``, with prodfast's class on both
backends, cachebox's and cachetools' class of that policy and the dict floor. TLRUCache runs
against cachebox's VTTLCache (per-item ttl given to ``insert``) and cachetools' TLRUCache; its
``ttu`` is one Python call per set, which is the interface.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .peers import EmbeddingCache
from .runner import (
    BACKENDS,
    FLOOR,
    PEER,
    PRODFAST,
    Case,
    Group,
    Missing,
    Settings,
    Timed,
    call_each,
    call_each_pair,
    chunks,
    cycle_runs,
    expect,
    getitem_each,
    require,
    setitem_each,
)

AREA = "caches"
VALUE = (0.0,)
TTL = 3600.0


Key = str | int


def make_key(i: int, kind: str) -> Key:
    """Key number ``i`` as a str (``"key:1f"``) or as an int too large to be a shared small int."""
    if kind == "str":
        return f"key:{i:x}"
    if kind == "int":
        return 10**12 + i
    raise ValueError(f"keys must be 'str' or 'int', got {kind!r}")


@dataclass
class Workload:
    """The keys of one size N, and the structures already filled with them."""

    n: int
    batch: int
    originals: list[Key]  # what every cache is filled with, in this order
    hits: list[Key]  # `batch` keys drawn from originals
    misses: list[Key]  # `batch` keys never inserted
    fresh: list[list[Key]]  # the insert stream: batches cycling through N + batch new keys
    built: dict[str, object] = field(default_factory=dict)

    @property
    def updates(self) -> list[tuple[Key, object]]:
        return [(k, VALUE) for k in self.hits]

    @classmethod
    def make(cls, n: int, batch: int, keys: str = "str", seed: int = 20261124) -> Workload:
        rng = random.Random(seed + n)
        batch = math.gcd(n, batch)  # so that the insert stream splits into whole batches
        ids = list(range(2 * n + 2 * batch))
        rng.shuffle(ids)
        keys = [make_key(i, keys) for i in ids]
        originals, rest = keys[:n], keys[n:]
        return cls(
            n=n,
            batch=batch,
            originals=originals,
            hits=rng.sample(originals, batch),
            misses=rest[:batch],
            fresh=list(chunks(rest[batch:], batch)),
        )

    def structure(self, name: str, build: Callable[[Workload], object]) -> object:
        """The filled structure of contender ``name`` for this N, built once and shared by
        the operations that leave its key set alone (insert+evict runs last)."""
        if name not in self.built:
            try:
                self.built[name] = build(self)
            except Missing as exc:
                self.built[name] = exc
        found = self.built[name]
        if isinstance(found, Missing):
            raise found
        return found


# --- building and filling each contender ------------------------------------------------


def _fill(mapping, w: Workload):
    for k in w.originals:
        mapping[k] = VALUE
    return mapping


def _dict(w: Workload):
    return _fill({}, w)


def _prodfast(backend: str, cls_name: str, *args) -> Callable[[Workload], object]:
    def build(w: Workload):
        return _fill(require(backend, cls_name)(w.n, *args), w)

    return build


def _cachetools(w: Workload):
    return _fill(require("cachetools", "LRUCache")(w.n), w)


def _lru_dict(w: Workload):
    return _fill(require("lru", "LRU", dist="lru-dict")(w.n), w)


def _cachebox(w: Workload):
    return _fill(require("cachebox", "LRUCache")(w.n), w)


def _peer(module: str, cls_name: str, *args) -> Callable[[Workload], object]:
    def build(w: Workload):
        return _fill(require(module, cls_name)(w.n, *args), w)

    return build


def _vttl(w: Workload):
    cache = require("cachebox", "VTTLCache")(w.n)
    for k in w.originals:
        cache.insert(k, VALUE, TTL)
    return cache


def _ttu(_key, _value, now):
    return now + TTL


def _functools(w: Workload):
    f = functools.lru_cache(maxsize=w.n)(_identity)
    for k in w.originals:
        f(k)
    return f


def _identity(x):
    return x


def _seed(w: Workload):
    cache = EmbeddingCache(ttl=int(TTL), max_size=w.n)
    for k in w.originals:
        cache.set(k, VALUE)
    return cache


@dataclass(frozen=True)
class Contender:
    name: str
    role: str
    kind: str  # how it is driven: "mapping", "dict", "function" or "seed"
    build: Callable[[Workload], object]


LRU_CONTENDERS = [
    Contender("dict", FLOOR, "dict", _dict),
    *(
        Contender(f"prodfast {cls} [{tag}]", PRODFAST, "mapping", _prodfast(module, cls, *extra))
        for cls, extra in (("LRUCache", ()),)
        for tag, module in BACKENDS
    ),
    Contender("lru-dict LRU", PEER, "mapping", _lru_dict),
    Contender("cachebox LRUCache", PEER, "mapping", _cachebox),
    Contender("functools.lru_cache", PEER, "function", _functools),
    Contender("cachetools LRUCache", PEER, "mapping", _cachetools),
    Contender("seed EmbeddingCache", PEER, "seed", _seed),
]


def _policy_contenders(cls: str, args: tuple, cachebox: Contender) -> list[Contender]:
    return [
        Contender("dict", FLOOR, "dict", _dict),
        *(
            Contender(f"prodfast {cls} [{tag}]", PRODFAST, "mapping", _prodfast(module, cls, *args))
            for tag, module in BACKENDS
        ),
        cachebox,
        Contender(f"cachetools {cls}", PEER, "mapping", _peer("cachetools", cls, *args)),
    ]


# policy label -> its contenders (LRU: the historical set with every LRU peer)
POLICIES: dict[str, list[Contender]] = {
    "LRU": LRU_CONTENDERS,
    **{
        policy: _policy_contenders(cls, args, Contender(f"cachebox {box}", PEER, "mapping", _peer("cachebox", box, *args)))
        for policy, cls, box, args in (
            ("FIFO", "FIFOCache", "FIFOCache", ()),
            ("LFU", "LFUCache", "LFUCache", ()),
            ("RR", "RRCache", "RRCache", ()),
            ("TTL", "TTLCache", "TTLCache", (TTL,)),
        )
    },
    "TLRU": _policy_contenders("TLRUCache", (_ttu,), Contender("cachebox VTTLCache", PEER, "vttl", _vttl)),
}
CONTENDERS = [c for contenders in POLICIES.values() for c in contenders]


# --- the operations: for each kind of contender, how one batch is run and checked -------
#
# A binder returns (run, check): run() is timed; check() runs once after the first run and
# raises CheckFailed unless that run did the work (see runner.Timed).


def _size(c, kind: str) -> int:
    if kind == "function":
        return c.cache_info().currsize
    if kind == "seed":
        return len(c.cache)
    return len(c)


def _holds(c, kind: str, k: Key) -> bool:
    return k in (c.cache if kind == "seed" else c)


def _lookup(c, kind: str, k: Key):
    if kind == "function":
        return c(k)
    if kind in ("dict", "mapping", "vttl"):
        return c[k]
    return c.get(k)


def _hits_check(c, kind: str, w: Workload, via_get: bool):
    def check() -> None:
        if kind == "function":
            before = c.cache_info()
            got = [c(k) for k in w.hits]
            after = c.cache_info()
            expect(after.misses == before.misses, f"{after.misses - before.misses} calls missed")
            expect(got == w.hits, "a hit returned another value")
            return
        get = c.get if via_get else c.__getitem__
        bad = [k for k in w.hits if get(k) is not VALUE]
        expect(not bad, f"{len(bad)} of {len(w.hits)} hits did not return the stored value")

    return check


def _miss_check(c, w: Workload):
    def check() -> None:
        found = [k for k in w.misses if c.get(k) is not None]
        expect(not found, f"{len(found)} absent keys were found")

    return check


def _update_check(c, kind: str, w: Workload):
    def check() -> None:
        bad = [k for k in w.hits if _lookup(c, kind, k) is not VALUE]
        expect(not bad, f"{len(bad)} updated keys do not hold the value")
        if kind != "seed":  # the seed's set() evicts when full, even for a present key
            expect(_size(c, kind) == w.n, f"size {_size(c, kind)} after updates, not {w.n}")

    return check


def _insert_check(c, kind: str, w: Workload, last: list):
    """After a run of insert+evict: still N entries, and the key inserted last is in (not the
    whole batch: random replacement, or an LFU whose new keys are its least used, may have
    evicted the batch's earlier keys again)."""

    def check() -> None:
        expect(_size(c, kind) == w.n, f"size {_size(c, kind)} after inserts, not {w.n}")
        batch = w.fresh[last[0]]
        if kind == "function":
            info = c.cache_info()
            expect(info.misses >= w.n + w.batch, "the inserted calls did not all miss")
            return
        expect(_holds(c, kind, batch[-1]), "the key inserted last is absent")

    return check


def _tracked_cycle(runs: list[Callable[[], None]]) -> tuple[Callable[[], None], list]:
    """cycle_runs, also recording in ``last[0]`` the index of the batch run last."""
    last = [-1]
    step = cycle_runs([_recording(run, i, last) for i, run in enumerate(runs)])
    return step, last


def _recording(run: Callable[[], None], i: int, last: list) -> Callable[[], None]:
    def recorded() -> None:
        run()
        last[0] = i

    return recorded


def _inserts(c, w: Workload, kind: str = "mapping"):
    run, last = _tracked_cycle([setitem_each(c, [(k, VALUE) for k in batch]) for batch in w.fresh])
    return run, _insert_check(c, kind, w, last)


def _fifo_inserts(_shared: dict, w: Workload):
    # The floor's own dict, filled with the stream's first N keys.
    d = {k: VALUE for batch in w.fresh[: w.n // w.batch] for k in batch}
    runs, lag = _fifo_steps(d, w)
    run, last = _tracked_cycle(runs)

    def check() -> None:
        expect(len(d) == w.n, f"size {len(d)} after inserts, not {w.n}")
        batch = w.fresh[(last[0] + lag) % len(w.fresh)]
        expect(all(k in d for k in batch), "the batch just added is absent")

    return run, check


def _fifo_steps(d: dict, w: Workload) -> tuple[list[Callable[[], None]], int]:
    """Each step adds the next batch of the stream to ``d`` and deletes the keys added N
    steps before, as an LRU evicting its oldest would; ``d`` stays at N keys."""
    lag = w.n // w.batch
    steps = len(w.fresh)

    def step(new: list[Key], old: list[Key]):
        def run() -> None:
            for k, o in zip(new, old, strict=True):
                d[k] = VALUE
                del d[o]

        return run

    return [step(w.fresh[(i + lag) % steps], w.fresh[i]) for i in range(steps)], lag


def _fifo_run(d: dict, w: Workload):
    return cycle_runs(_fifo_steps(d, w)[0])


def _vttl_inserts(c, w: Workload):
    run, last = _tracked_cycle([_insert_each(c, [(k, VALUE) for k in batch]) for batch in w.fresh])
    return run, _insert_check(c, "vttl", w, last)


def _insert_each(c, pairs: list) -> Callable[[], None]:
    """A run() that calls ``c.insert(k, v, TTL)`` (cachebox VTTLCache's per-item ttl)."""
    insert = c.insert

    def run() -> None:
        for k, v in pairs:
            insert(k, v, TTL)

    return run


def _calls(f, w: Workload):
    run, last = _tracked_cycle([call_each(f, batch) for batch in w.fresh])
    return run, _insert_check(f, "function", w, last)


def _seed_inserts(c, w: Workload):
    run, last = _tracked_cycle(
        [call_each_pair(c.set, [(k, VALUE) for k in batch]) for batch in w.fresh]
    )
    return run, _insert_check(c, "seed", w, last)


Binder = Callable[[object, Workload], tuple[Callable[[], None], Callable[[], None]]]


def _hit_item(kind: str) -> Binder:
    if kind == "function":
        return lambda f, w: (call_each(f, w.hits), _hits_check(f, kind, w, False))
    return lambda c, w: (getitem_each(c, w.hits), _hits_check(c, kind, w, False))


def _hit_get(kind: str) -> Binder:
    return lambda c, w: (call_each(c.get, w.hits), _hits_check(c, kind, w, True))


def _miss(_kind: str) -> Binder:
    return lambda c, w: (call_each(c.get, w.misses), _miss_check(c, w))


def _update(kind: str) -> Binder:
    if kind == "seed":
        return lambda c, w: (call_each_pair(c.set, w.updates), _update_check(c, kind, w))
    if kind == "vttl":
        return lambda c, w: (_insert_each(c, w.updates), _update_check(c, kind, w))
    return lambda c, w: (setitem_each(c, w.updates), _update_check(c, kind, w))


OPERATIONS: dict[str, dict[str, Binder]] = {
    "hit c[k]": {k: _hit_item(k) for k in ("dict", "mapping", "function", "vttl")},
    "hit c.get(k)": {k: _hit_get(k) for k in ("dict", "mapping", "seed", "vttl")},
    "miss c.get(k)": {k: _miss(k) for k in ("dict", "mapping", "seed", "vttl")},
    "update c[k]=v": {k: _update(k) for k in ("dict", "mapping", "seed", "vttl")},
    # Last: it replaces the keys the other operations rely on.
    "insert+evict": {
        "dict": _fifo_inserts,
        "mapping": _inserts,
        "function": _calls,
        "seed": _seed_inserts,
        "vttl": _vttl_inserts,
    },
}


def _case(contender: Contender, bind: Binder, w: Workload) -> Case:
    def setup() -> Timed:
        built = w.structure(contender.name, contender.build)
        run, check = bind(built, w)
        return Timed(run, w.batch, check)

    return Case(contender.name, contender.role, setup)


def groups(settings: Settings) -> Iterator[Group]:
    """One group per (N, operation); the data of one N is freed before the next is built."""
    for n in settings.sizes:
        w = Workload.make(n, settings.batch, settings.keys)
        for operation, binders in OPERATIONS.items():
            for policy, contenders in POLICIES.items():
                cases = [_case(c, binders[c.kind], w) for c in contenders if c.kind in binders]
                label = operation if policy == "LRU" else f"{operation} · {policy}"
                if settings.keys != "str":
                    label = f"{label} ({settings.keys} keys)"
                yield Group(AREA, label, cases, n=n)
        del w
