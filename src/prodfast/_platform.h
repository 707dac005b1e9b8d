/* What the compiled core needs from the platform, chosen at compile time.

   prodfast_monotonic(): the value time.monotonic() would return, read without calling Python.
   It uses CPython's own clock on each platform (Python/pytime.c) and its integer conversion to
   nanoseconds, then _PyTime_AsSecondsDouble's conversion to seconds, so the two are equal:
     Linux and other POSIX   clock_gettime(CLOCK_MONOTONIC) (CLOCK_HIGHRES where it exists)
     macOS                   mach_absolute_time() scaled by mach_timebase_info()
     Windows, Python 3.13+   QueryPerformanceCounter() scaled by QueryPerformanceFrequency()
     Windows, earlier        GetTickCount64() in milliseconds

   prodfast_monotonic_floor(): a fast lower bound of it. With CLOCK_MONOTONIC_COARSE (Linux) it
   is that clock, which trails the precise one by at most a tick; elsewhere, or when compiled
   with PRODFAST_PORTABLE_CLOCK, there is no cheap bound and it is -infinity (callers then take
   the precise read).

   prodfast_prefetch(p): a hint to load *p into the cache, or nothing where there is none. */

#ifndef PRODFAST_PLATFORM_H
#define PRODFAST_PLATFORM_H

#include "Python.h"
#include <math.h>
#include <stdint.h>

#define PRODFAST_NS_PER_S INT64_C(1000000000)

static inline double prodfast_ns_to_s(int64_t ns)
{
    /* _PyTime_AsSecondsDouble: whole seconds exactly, else one rounding of ns / 1e9 */
    if (ns % PRODFAST_NS_PER_S == 0) {
        return (double)(ns / PRODFAST_NS_PER_S);
    }
    return (double)ns / 1e9;
}

/* floor(ticks * mul / div) in two parts, as _PyTime_MulDiv computes it, so that the product
   cannot overflow for the clock frequencies in use */
static inline int64_t prodfast_muldiv(int64_t ticks, int64_t mul, int64_t div)
{
    int64_t whole = ticks / div;
    int64_t rest = ticks % div;
    return whole * mul + rest * mul / div;
}

#if defined(_WIN32)

#include <windows.h>

static inline double prodfast_monotonic(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    /* The frequency is fixed at boot; an aligned 64-bit store is atomic on every Windows
       target the wheels are built for, so a race only stores the same value twice. */
    static volatile LONGLONG frequency = 0;
    LARGE_INTEGER now;
    if (frequency == 0) {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f);
        frequency = f.QuadPart;
    }
    QueryPerformanceCounter(&now);
    return prodfast_ns_to_s(prodfast_muldiv((int64_t)now.QuadPart, PRODFAST_NS_PER_S,
                                            (int64_t)frequency));
#else
    return prodfast_ns_to_s((int64_t)GetTickCount64() * INT64_C(1000000));
#endif
}

#elif defined(__APPLE__)

#include <mach/mach_time.h>

static inline double prodfast_monotonic(void)
{
    /* numer and denom packed in one aligned 64-bit word, so a racing reader sees both or
       neither (0: not read yet) */
    static volatile uint64_t timebase = 0;
    uint64_t tb = timebase;
    if (tb == 0) {
        mach_timebase_info_data_t info;
        (void)mach_timebase_info(&info);
        tb = ((uint64_t)info.numer << 32) | (uint64_t)info.denom;
        timebase = tb;
    }
    return prodfast_ns_to_s(prodfast_muldiv((int64_t)mach_absolute_time(),
                                            (int64_t)(tb >> 32), (int64_t)(tb & 0xFFFFFFFFu)));
}

#else

#include <time.h>

#if defined(CLOCK_HIGHRES)
#define PRODFAST_CLOCK_ID CLOCK_HIGHRES
#else
#define PRODFAST_CLOCK_ID CLOCK_MONOTONIC
#endif

static inline double prodfast_monotonic(void)
{
    struct timespec ts;
    clock_gettime(PRODFAST_CLOCK_ID, &ts);
    return prodfast_ns_to_s((int64_t)ts.tv_sec * PRODFAST_NS_PER_S + (int64_t)ts.tv_nsec);
}

#if defined(CLOCK_MONOTONIC_COARSE) && !defined(PRODFAST_PORTABLE_CLOCK)
#define PRODFAST_HAVE_COARSE_CLOCK 1
static inline double prodfast_monotonic_floor(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return prodfast_ns_to_s((int64_t)ts.tv_sec * PRODFAST_NS_PER_S + (int64_t)ts.tv_nsec);
}
#endif

#endif

#ifndef PRODFAST_HAVE_COARSE_CLOCK
#define PRODFAST_HAVE_COARSE_CLOCK 0
static inline double prodfast_monotonic_floor(void)
{
    return -HUGE_VAL;
}
#endif

#if defined(__GNUC__) || defined(__clang__)
#define prodfast_prefetch(p) __builtin_prefetch(p)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#define prodfast_prefetch(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define prodfast_prefetch(p) ((void)(p))
#endif

#endif /* PRODFAST_PLATFORM_H */
