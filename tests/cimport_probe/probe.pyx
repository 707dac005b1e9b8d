# cython: language_level=3
"""Another Cython module deciding with prodfast's kernels, cimported from prodfast/_core.pxd.

Traces arrive as bytes of float64 (``array.tobytes()``): plain C pointers keep this module
small, so it compiles quickly inside the test.
"""

from libc.stdint cimport int64_t

from prodfast._core cimport (
    prodfast_monotonic_floor,
    rl_bucket,
    rl_bucket_init,
    rl_bucket_tokens,
    rl_bucket_try,
    rl_bucket_wait,
    rl_leaky,
    rl_leaky_init,
    rl_leaky_try,
    rl_now,
    rl_window,
    rl_window_free,
    rl_window_in_window,
    rl_window_init,
    rl_window_try,
)


def bucket(double rate, double capacity, bytes times_b, bytes costs_b):
    """Decisions of a full token bucket over a trace, then (tokens left, wait for 1 more)."""
    cdef const double* times = <const double*><const char*>times_b
    cdef const double* costs = <const double*><const char*>costs_b
    cdef rl_bucket b
    cdef Py_ssize_t i, n = len(times_b) // 8
    out = bytearray(n)
    cdef unsigned char* o = out
    cdef double end = times[n - 1]
    rl_bucket_init(&b, rate, capacity, capacity, times[0])
    with nogil:
        for i in range(n):
            o[i] = rl_bucket_try(&b, times[i], costs[i])
    return list(out), rl_bucket_tokens(&b, end), rl_bucket_wait(&b, end, 1.0)


def leaky(double rate, double capacity, bytes times_b, bytes costs_b):
    cdef const double* times = <const double*><const char*>times_b
    cdef const double* costs = <const double*><const char*>costs_b
    cdef rl_leaky s
    cdef Py_ssize_t i, n = len(times_b) // 8
    out = bytearray(n)
    cdef unsigned char* o = out
    rl_leaky_init(&s, rate, capacity, times[0])
    with nogil:
        for i in range(n):
            o[i] = rl_leaky_try(&s, times[i], costs[i])
    return list(out)


def window(Py_ssize_t max_calls, double span, bytes times_b):
    cdef const double* times = <const double*><const char*>times_b
    cdef rl_window w
    cdef Py_ssize_t i, n = len(times_b) // 8, left
    cdef int r = 0
    out = bytearray(n)
    cdef unsigned char* o = out
    rl_window_init(&w, max_calls, span, times[0])
    with nogil:
        for i in range(n):
            r = rl_window_try(&w, times[i], 1)
            if r < 0:
                break
            o[i] = r
        left = rl_window_in_window(&w, times[n - 1])
        rl_window_free(&w)
    if r < 0:
        raise MemoryError()
    return list(out), left


def now():
    cdef double t
    with nogil:
        t = rl_now()
    return t


def floor():
    cdef double t
    with nogil:
        t = prodfast_monotonic_floor()
    return t


cdef extern from "prodfast/_platform.h":
    double prodfast_ns_to_s(int64_t ns)


def seconds(int64_t ns):
    """The core's conversion of a clock reading in nanoseconds to seconds."""
    return prodfast_ns_to_s(ns)
