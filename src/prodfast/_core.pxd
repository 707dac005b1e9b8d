# cython: language_level=3
"""C state and nogil decision kernels of prodfast's rate limiters, for other Cython code.

    from prodfast._core cimport rl_bucket, rl_bucket_init, rl_bucket_try, rl_now

    cdef rl_bucket b
    rl_bucket_init(&b, 10.0, 20.0, 20.0, rl_now())
    with nogil:
        ok = rl_bucket_try(&b, rl_now(), 1.0)

Every kernel takes the time ``now`` (seconds) as an argument and never reads a clock itself.
A ``now`` earlier than the latest one a limiter has used means no time passed. Kernels do not
validate their arguments: rates, capacities and windows must be finite and > 0, costs finite,
>= 0 and within capacity (the Python classes check all of that before calling them). A denied
request takes nothing: it only brings the state up to ``now`` (refill, drain, expired calls
dropped), which is the same state seen from ``now`` on.
"""

from libc.stdlib cimport free, realloc
from libc.string cimport memmove


# ---- clock ---------------------------------------------------------------------------------

cdef extern from "prodfast/_platform.h" nogil:
    # time.monotonic()'s value on every platform, and a fast lower bound of it (the coarse
    # clock where there is one, else -inf)
    double prodfast_monotonic() noexcept
    double prodfast_monotonic_floor() noexcept


cdef inline double rl_now() noexcept nogil:
    """time.monotonic() in seconds, read in C."""
    return prodfast_monotonic()


# ---- token bucket: tokens = min(capacity, tokens + rate*dt); allow iff tokens >= cost -------

ctypedef struct rl_bucket:
    double rate
    double capacity
    double tokens
    double last          # latest time a decision used (the state is as of then)


cdef inline void rl_bucket_init(rl_bucket* s, double rate, double capacity, double tokens,
                                double now) noexcept nogil:
    s.rate = rate
    s.capacity = capacity
    s.tokens = tokens
    s.last = now


cdef inline double rl_bucket_tokens(const rl_bucket* s, double now) noexcept nogil:
    """Tokens available at ``now`` (the state is not changed)."""
    cdef double dt = now - s.last
    cdef double t = s.tokens
    if dt > 0.0:
        t = t + s.rate * dt
        if t > s.capacity:
            t = s.capacity
    return t


cdef inline bint rl_bucket_try(rl_bucket* s, double now, double cost) noexcept nogil:
    """Refill to ``now``, then take ``cost`` tokens if there are enough."""
    cdef double t = rl_bucket_tokens(s, now)
    if now > s.last:
        s.tokens = t
        s.last = now
    if t < cost:
        return False
    s.tokens = t - cost
    return True


cdef inline double rl_bucket_wait(const rl_bucket* s, double now, double cost) noexcept nogil:
    """Seconds from ``now`` until ``cost`` tokens are there (0.0 if they are)."""
    cdef double t = rl_bucket_tokens(s, now)
    if t >= cost:
        return 0.0
    return (cost - t) / s.rate


# ---- leaky bucket (a meter): level = max(0, level - rate*dt); allow iff level + cost <= capacity

ctypedef struct rl_leaky:
    double rate
    double capacity
    double level
    double last


cdef inline void rl_leaky_init(rl_leaky* s, double rate, double capacity, double now) noexcept nogil:
    s.rate = rate
    s.capacity = capacity
    s.level = 0.0
    s.last = now


cdef inline double rl_leaky_level(const rl_leaky* s, double now) noexcept nogil:
    """Level at ``now`` (the state is not changed)."""
    cdef double dt = now - s.last
    cdef double v = s.level
    if dt > 0.0:
        v = v - s.rate * dt
        if v < 0.0:
            v = 0.0
    return v


cdef inline bint rl_leaky_try(rl_leaky* s, double now, double cost) noexcept nogil:
    """Drain to ``now``, then add ``cost`` to the level if it fits under capacity."""
    cdef double v = rl_leaky_level(s, now)
    if now > s.last:
        s.level = v
        s.last = now
    if v + cost > s.capacity:
        return False
    s.level = v + cost
    return True


cdef inline double rl_leaky_wait(const rl_leaky* s, double now, double cost) noexcept nogil:
    cdef double excess = rl_leaky_level(s, now) + cost - s.capacity
    if excess <= 0.0:
        return 0.0
    return excess / s.rate


# ---- sliding window: an exact log of call times in a ring buffer ----------------------------
# A call at time c counts while now - c < window; allow k calls iff in_window + k <= max_calls.
# The ring grows (doubling) as needed, up to max_calls slots; it starts with none.

ctypedef struct rl_window:
    double window
    Py_ssize_t max_calls
    double* buf          # ring of call times, oldest at buf[head]; NULL until the first call
    Py_ssize_t size      # slots allocated
    Py_ssize_t head
    Py_ssize_t count     # calls in the ring (some may have expired but not been purged yet)
    double last          # latest time seen: earlier readings are clamped to it


cdef inline void rl_window_init(rl_window* w, Py_ssize_t max_calls, double window,
                                double now) noexcept nogil:
    w.window = window
    w.max_calls = max_calls
    w.buf = NULL
    w.size = 0
    w.head = 0
    w.count = 0
    w.last = now


cdef inline void rl_window_free(rl_window* w) noexcept nogil:
    free(w.buf)
    w.buf = NULL
    w.size = 0
    w.head = 0
    w.count = 0


cdef inline double rl_window_clamp(rl_window* w, double now) noexcept nogil:
    """The effective time: ``now``, or the latest time seen if the clock went backwards."""
    if now > w.last:
        w.last = now
    return w.last


cdef inline void rl_window_purge(rl_window* w, double now) noexcept nogil:
    """Drop the calls that have left the window at ``now`` (the oldest ones)."""
    while w.count > 0 and now - w.buf[w.head] >= w.window:
        w.head += 1
        if w.head == w.size:
            w.head = 0
        w.count -= 1


cdef inline int rl_window_reserve(rl_window* w, Py_ssize_t need) noexcept nogil:
    """Make room for ``need`` calls; -1 if memory ran out (state intact). The ring stays within
    max_calls slots unless ``need`` itself is above (a reservation settled for more calls than
    it reserved: a debt, waited off as those calls leave the window)."""
    cdef Py_ssize_t new_size, first, limit
    cdef double* nb
    if need <= w.size:
        return 0
    new_size = w.size * 2 if w.size >= 8 else 8
    if new_size < need:
        new_size = need
    limit = w.max_calls if need <= w.max_calls else need
    if new_size > limit:
        new_size = limit
    nb = <double*>realloc(w.buf, <size_t>new_size * sizeof(double))
    if nb == NULL:
        return -1
    # unwrap: if the calls wrap past the old end, the part from head moves to the new end
    first = w.size - w.head
    if w.count > first:
        memmove(nb + new_size - first, nb + w.head, <size_t>first * sizeof(double))
        w.head = new_size - first
    w.buf = nb
    w.size = new_size
    return 0


cdef inline int rl_window_add(rl_window* w, double now, Py_ssize_t k) noexcept nogil:
    """Log k calls at ``now`` (clamped) whether or not they fit: 1, or -1 if memory ran out."""
    cdef Py_ssize_t i, tail
    now = rl_window_clamp(w, now)
    if k == 0:
        return 1
    if rl_window_reserve(w, w.count + k) < 0:
        return -1
    tail = w.head + w.count
    if tail >= w.size:
        tail -= w.size
    for i in range(k):
        w.buf[tail] = now
        tail += 1
        if tail == w.size:
            tail = 0
    w.count += k
    return 1


cdef inline int rl_window_try(rl_window* w, double now, Py_ssize_t k) noexcept nogil:
    """1 if the k calls were logged, 0 if denied, -1 if memory ran out (state intact)."""
    now = rl_window_clamp(w, now)
    rl_window_purge(w, now)
    if w.count + k > w.max_calls:
        return 0
    return rl_window_add(w, now, k)


cdef inline Py_ssize_t rl_window_in_window(rl_window* w, double now) noexcept nogil:
    """Calls inside the window at ``now`` (expired ones are dropped on the way)."""
    now = rl_window_clamp(w, now)
    rl_window_purge(w, now)
    return w.count


cdef inline double rl_window_wait(rl_window* w, double now, Py_ssize_t k) noexcept nogil:
    """Seconds from ``now`` until k more calls fit in the window (0.0 if they fit now)."""
    cdef Py_ssize_t j
    cdef double t
    now = rl_window_clamp(w, now)
    rl_window_purge(w, now)
    if w.count + k <= w.max_calls:
        return 0.0
    # the (count + k - max_calls) oldest calls must leave; the last of them leaves at buf[j] + window
    j = w.head + (w.count + k - w.max_calls) - 1
    if j >= w.size:
        j -= w.size
    t = w.buf[j] + w.window - now
    return t if t > 0.0 else 0.0
