# cython: language_level=3, embedsignature=True
"""prodfast's compiled core: the Cython twin of prodfast._core_py.

Each area lives in its own include file; all of them share this one extension module.
"""

cimport cython
include "_clock.pxi"     # first: the one clock every part below reads
include "_cache.pxi"
include "_cached.pxi"
include "_ratelimit.pxi"
include "_stats.pxi"
include "_sketch.pxi"
include "_monitor.pxi"
include "_signatures.pxi"  # last: it covers every class above
