# The one clock of the compiled core: every part that reads time.monotonic() without the Python
# call (the caches' built-in timer, the limiters' default clock) reads it here.
#
# _clock_now() is time.monotonic()'s value (prodfast/_platform.h: CPython's own clock and its
# conversion to seconds, on every platform). _clock_before(t) answers "is now < t" and may first
# try the coarse clock where there is one (Linux: a few ns instead of ~30 in a VM): it trails the
# precise clock by at most one tick (1-10 ms), so a t more than _CLOCK_COARSE_MARGIN beyond the
# coarse time is ahead of the precise clock too; anything closer is decided by a precise read.
# Times that are stored (expiries, limiter states) always come from _clock_now(), so results are
# those of time.monotonic(). The limiters' public kernels take `now` as an argument; rl_now() in
# _core.pxd is this clock under the name other Cython code cimports.
#
# A user's clock (a timer= or clock= argument) is Python code: each part calls it and checks its
# value itself, since the caches (cachetools' rules) and the limiters accept different values.

DEF _CLOCK_COARSE_MARGIN = 0.05


cdef inline double _clock_now() noexcept nogil:
    # time.monotonic() in seconds, read in C
    return prodfast_monotonic()


cdef inline bint _clock_before(double t) noexcept nogil:
    # now < t by time.monotonic(), with a coarse read first where the platform has one
    # (prodfast_monotonic_floor() is -inf where it has none: then the read is precise)
    if prodfast_monotonic_floor() + _CLOCK_COARSE_MARGIN < t:
        return True
    return prodfast_monotonic() < t
