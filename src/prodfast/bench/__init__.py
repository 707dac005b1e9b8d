"""prodfast's side-by-side benchmark: ``python -m prodfast.bench`` (or ``prodfast-bench``).

Both prodfast backends and the installed peers (the ``prodfast[bench]`` extra) are timed in
one process, interleaved, per operation; see ``runner`` for the method, and ``caches``,
``limiters`` and ``stats`` for what each area measures.
"""
