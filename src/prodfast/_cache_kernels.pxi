# The cache engine's data structures and the small kernels that keep their invariants (included
# by _cache.pxi). The kernels are plain C functions over plain C structs: no Python objects are
# created, no user code runs, nothing fails. Callers compute hashes, run __eq__ and handle
# re-entrancy (see _CacheCore._find); the kernels only move numbers.

cdef struct _cache_link:
    # A member's place in a doubly linked list of entry numbers (-1: none)
    int32_t prev
    int32_t next

cdef struct _cache_list:
    int32_t head        # first member (the order list: the next victim), -1 when empty
    int32_t tail        # last member (the order list: the newest or most recent), -1 when empty

cdef struct _cache_ent:
    PyObject* key
    PyObject* value
    Py_hash_t hash
    _cache_link lk      # its place in the order list
    double exp          # TTLCache: expiry; kept in the entry so that a read touches one place

DEF _CACHE_EMPTY = -1
DEF _CACHE_MINSIZE = 8
DEF _CACHE_SPARSE = 32768                  # tables of fewer slots are kept at most 1/4 full (I1)
DEF _CACHE_FIB = 0x9E3779B97F4A7C15ULL     # 2^64 / golden ratio


# ---- the hash index ----------------------------------------------------------------------------
#
# A linear-probing table of int32 slots over the dense entry array, as CPython's compact dict:
# a slot is _CACHE_EMPTY or (tag << (ibits + dbits)) | (disp << ibits) | entry number, where
# disp is the entry's distance from its home slot, or dmax for "dmax or more: ask the hash".
# Invariants the kernels keep:
#   I1  size = mask + 1 is a power of two, and 2 * n <= size (a probe always meets an empty slot);
#       4 * n <= size while size < _CACHE_SPARSE: below 128 KiB, shorter probe runs (fewer
#       mispredicted loop exits per operation) cost little memory
#   I2  every entry has exactly one slot, and every slot from its home slot up to it is in use
#       (deletion shifts the cluster back instead of leaving tombstones)
#   I3  a slot's tag bits are _ix_tag() of its entry's hash
#   I4  a slot's disp bits are _ix_disp() of its distance from its entry's home slot, so that a
#       deletion shifts a cluster back reading the index only, not the entries' hashes

cdef struct _cache_index:
    int32_t* slots
    Py_ssize_t mask     # size - 1
    int shift           # 64 - log2(size): the home slot is the top bits of hash * _CACHE_FIB
    int ibits           # low bits of a slot holding the entry number (enough for maxsize entries)
    int32_t imask       # (1 << ibits) - 1
    int dbits           # bits of a slot above the entry number holding the displacement
    int32_t dmax        # (1 << dbits) - 1: the largest displacement field, "dmax or more"
    int32_t tmask       # the tag's bits in a slot: above ibits + dbits, below bit 31
    uint64_t tagmask    # the tag's bits before the shift: (1 << (31 - ibits - dbits)) - 1


cdef inline void _ix_bits(_cache_index* x, Py_ssize_t maxcap) noexcept nogil:
    # Entry numbers below maxcap take the low ibits bits of a slot, the displacement up to 4 bits
    # above them and the hash tag the rest (up to bit 30, so that a used slot stays >= 0). Only
    # for an empty table (I3, I4).
    x.ibits = 1
    while (<Py_ssize_t>1 << x.ibits) <= maxcap and x.ibits < 31:
        x.ibits += 1
    x.imask = <int32_t>((<uint64_t>1 << x.ibits) - 1)
    x.dbits = min(4, 31 - x.ibits)
    x.dmax = <int32_t>((1 << x.dbits) - 1)
    x.tagmask = (<uint64_t>1 << (31 - x.ibits - x.dbits)) - 1
    x.tmask = <int32_t>(x.tagmask << (x.ibits + x.dbits))


# The index and the entry arrays are read at random: at a million entries a lookup's cost is
# mostly TLB misses. Arrays of 1 MiB or more ask the kernel for transparent huge pages (Linux,
# where "madvise" mode leaves them to those who ask; a no-op elsewhere) before their first
# write, so a growing array is copied into a fresh advised block where realloc would keep its
# small pages (amortised O(1): capacities double). Once madvise refuses, arrays grow by realloc.
cdef extern from *:
    """
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    #define PRODFAST_HUGE_MIN ((size_t)1 << 20)
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
    static int prodfast_huge_ok = 1;
    static void prodfast_advise_huge(void* p, size_t n)
    {
        const uintptr_t huge = (uintptr_t)2 << 20;
        uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t hi = ((uintptr_t)p + n) & ~(huge - 1);
        if (prodfast_huge_ok && n >= PRODFAST_HUGE_MIN && hi > lo
                && madvise((void*)lo, hi - lo, MADV_HUGEPAGE) != 0)
            prodfast_huge_ok = 0;
    }
    #else
    static const int prodfast_huge_ok = 0;
    static void prodfast_advise_huge(void* p, size_t n) { (void)p; (void)n; }
    #endif
    static void* prodfast_grow(void* p, size_t old_n, size_t new_n)
    {
        void* q;
        if (!prodfast_huge_ok || new_n < PRODFAST_HUGE_MIN)
            return PyMem_Realloc(p, new_n);
        q = PyMem_Malloc(new_n);
        if (q == NULL)
            return NULL;            /* p is untouched, as after a failed realloc */
        prodfast_advise_huge(q, new_n);
        if (p != NULL && old_n != 0)
            memcpy(q, p, old_n < new_n ? old_n : new_n);
        PyMem_Free(p);
        return q;
    }
    """
    void prodfast_advise_huge(void* p, size_t n) noexcept nogil
    # PyMem_Realloc(p, new_n) for a block of old_n bytes: NULL, p kept, when out of memory
    void* _cache_grow "prodfast_grow"(void* p, size_t old_n, size_t new_n) noexcept nogil


cdef inline int32_t* _ix_alloc(Py_ssize_t size) noexcept:
    # `size` empty slots, or NULL when out of memory
    cdef int32_t* s = <int32_t*>PyMem_Malloc(size * sizeof(int32_t))
    if s != NULL:
        prodfast_advise_huge(s, size * sizeof(int32_t))
        memset(s, 0xFF, size * sizeof(int32_t))
    return s


cdef inline void _ix_adopt(_cache_index* x, int32_t* slots, Py_ssize_t size) noexcept nogil:
    # Take `slots` (size empty slots, size a power of two >= _CACHE_MINSIZE) as the table; the
    # caller frees the old one and re-inserts the entries (_ix_fill).
    cdef int shift = 64
    cdef Py_ssize_t s = 1
    while s < size:
        s <<= 1
        shift -= 1
    x.slots = slots
    x.mask = size - 1
    x.shift = shift


cdef inline Py_ssize_t _ix_size_for(Py_ssize_t need) noexcept nogil:
    # The table size for `need` entries: load factor <= 1/2, or <= 1/4 for small tables (I1)
    cdef Py_ssize_t size = _CACHE_MINSIZE
    while size < 2 * need + 2 or (size < _CACHE_SPARSE and size < 4 * need + 2):
        size <<= 1
    return size


cdef inline bint _ix_has_room(const _cache_index* x, Py_ssize_t need) noexcept nogil:
    # I1 holds with `need` entries in the current table
    cdef Py_ssize_t size = x.mask + 1
    return need * (4 if size < _CACHE_SPARSE else 2) <= size


cdef inline void _ix_wipe(_cache_index* x) noexcept nogil:
    # Every slot empty, the size kept
    if x.slots != NULL:
        memset(x.slots, 0xFF, (x.mask + 1) * sizeof(int32_t))


cdef inline int32_t _ix_tag(const _cache_index* x, Py_hash_t h) noexcept nogil:
    # Hash bits kept in the slot above the displacement: most slots of another key are told
    # apart without reading its entry (a miss reads the index table only).
    return <int32_t>((((<uint64_t>h * <uint64_t>_CACHE_FIB) >> 32) & x.tagmask)
                     << (x.ibits + x.dbits))


cdef inline int32_t _ix_disp(const _cache_index* x, size_t d) noexcept nogil:
    # The displacement field of an entry `d` slots past its home (I4)
    return <int32_t>(d if d < <size_t>x.dmax else <size_t>x.dmax) << x.ibits


cdef inline size_t _ix_home(const _cache_index* x, Py_hash_t h) noexcept nogil:
    # Fibonacci hashing: the high bits of h * 2^64/phi pick the home slot, so that regular
    # hashes (ints with a common stride) spread out under linear probing.
    return <size_t>((<uint64_t>h * <uint64_t>_CACHE_FIB) >> x.shift)


cdef inline int32_t _ix_probe(const _cache_index* x, const _cache_ent* ents, Py_hash_t h,
                              int32_t t, PyObject* k, size_t* at) noexcept nogil:
    # From slot *at on, the next entry that may hold key k (hash h, tag t = _ix_tag(x, h)): its
    # tag matches and it is k itself or has hash h (the caller decides by __eq__ unless it is
    # k); or -1 at the empty slot that ends the run (I2: k is not in the table). *at is left at
    # that entry's or empty slot.
    cdef size_t mask = <size_t>x.mask
    cdef size_t i = at[0]
    cdef int32_t imask = x.imask
    cdef int32_t v
    while True:
        v = x.slots[i]
        if v < 0:
            break
        if (v & x.tmask) == t:
            v &= imask
            if ents[v].key == k or ents[v].hash == h:
                break
        i = (i + 1) & mask
    at[0] = i
    return v


cdef inline Py_ssize_t _ix_slot_of(const _cache_index* x, const _cache_ent* ents,
                                   Py_ssize_t ix) noexcept nogil:
    # The slot holding entry ix (compares entry numbers only; I2: it is on ix's probe run)
    cdef size_t mask = <size_t>x.mask
    cdef size_t i = _ix_home(x, ents[ix].hash)
    cdef int32_t imask = x.imask
    while (x.slots[i] & imask) != ix:
        i = (i + 1) & mask
    return <Py_ssize_t>i


cdef inline void _ix_insert(_cache_index* x, Py_hash_t h, int32_t ix) noexcept nogil:
    # Index entry ix (hash h, not indexed yet) in the first empty slot of its run (I2, I3).
    # The caller keeps I1 (room made beforehand).
    cdef size_t mask = <size_t>x.mask
    cdef size_t home = _ix_home(x, h)
    cdef size_t i = home
    while x.slots[i] >= 0:      # I1: the run ends at an empty slot
        i = (i + 1) & mask
    x.slots[i] = _ix_tag(x, h) | _ix_disp(x, (i - home) & mask) | ix


cdef inline size_t _ix_insert_run(_cache_index* x, Py_hash_t h, size_t empty, size_t hole,
                                 int32_t ix) noexcept nogil:
    # _ix_insert() without probing again: entry ix's probe run ended at the empty slot `empty`
    # before one _ix_clear_slot() emptied `hole`. That call empties exactly `hole` and fills
    # nothing that was empty, so the run's first empty slot is now `hole` if it lies in
    # [home, empty) (cyclically), else still `empty` (I2). Returns the slot used.
    cdef size_t mask = <size_t>x.mask
    cdef size_t home = _ix_home(x, h)
    if ((hole - home) & mask) < ((empty - home) & mask):
        empty = hole
    x.slots[empty] = _ix_tag(x, h) | _ix_disp(x, (empty - home) & mask) | ix
    return empty


cdef inline void _ix_renumber(_cache_index* x, Py_ssize_t slot, int32_t ix) noexcept nogil:
    # The entry at `slot` is now entry number ix (it moved in the entry array); tag, disp stay
    x.slots[slot] = (x.slots[slot] & ~x.imask) | ix


cdef inline size_t _ix_clear_slot(_cache_index* x, const _cache_ent* ents,
                                  Py_ssize_t slot) noexcept nogil:
    # Empty `slot`, shifting later members of its cluster back so that I2 holds without
    # tombstones: an entry at j moves to the hole i unless its home is cyclically in (i, j],
    # that is unless its displacement is less than the hole's distance (I4: read from the slot;
    # from the entry's hash only when it is dmax or more). Returns the slot left empty at the
    # end (see _ix_insert_run).
    cdef size_t mask = <size_t>x.mask
    cdef size_t i = <size_t>slot
    cdef size_t j = i
    cdef size_t d, gap
    cdef int32_t v
    cdef int32_t dfield = x.dmax << x.ibits
    while True:
        j = (j + 1) & mask
        v = x.slots[j]
        if v < 0:
            break
        d = <size_t>((v & dfield) >> x.ibits)
        if d == <size_t>x.dmax:
            d = (j - _ix_home(x, ents[v & x.imask].hash)) & mask
        gap = (j - i) & mask
        if d >= gap:
            x.slots[i] = (v & ~dfield) | _ix_disp(x, d - gap)
            i = j
    x.slots[i] = _CACHE_EMPTY
    return i


cdef inline void _ix_fill(_cache_index* x, const _cache_ent* ents, Py_ssize_t n) noexcept nogil:
    # Index entries 0..n-1 in an empty table (after _ix_adopt)
    cdef Py_ssize_t i
    for i in range(n):
        _ix_insert(x, ents[i].hash, <int32_t>i)


# ---- the link lists ----------------------------------------------------------------------------
#
# One set of kernels serves both lists of entry numbers: the order list, whose links live in the
# entries (links = &ents[0].lk, stride sizeof(_cache_ent)), and the TTL expiry list, whose links
# are an array of their own (links = tl, stride sizeof(_cache_link)). Member i's links are the
# _cache_link at byte offset i * stride. Invariants the kernels keep:
#   L1  head.prev == -1 and tail.next == -1; an empty list has head == tail == -1
#   L2  for consecutive members a, b: a.next == b and b.prev == a (every member is reached once
#       from head, in order, and once from tail, backwards)
# The stride is a compile-time constant at every call, so after inlining these are the plain
# field accesses they replace.

cdef inline _cache_link* _ll_at(char* links, size_t stride, int32_t i) noexcept nogil:
    return <_cache_link*>(links + <size_t>i * stride)


cdef inline void _ll_unlink(_cache_list* L, char* links, size_t stride, int32_t ix) noexcept nogil:
    # Take member ix out (its own links are left as they were: the caller relinks or drops it)
    cdef _cache_link* e = _ll_at(links, stride, ix)
    if e.prev >= 0:
        _ll_at(links, stride, e.prev).next = e.next
    else:
        L.head = e.next
    if e.next >= 0:
        _ll_at(links, stride, e.next).prev = e.prev
    else:
        L.tail = e.prev


cdef inline void _ll_append(_cache_list* L, char* links, size_t stride, int32_t ix) noexcept nogil:
    # Put ix (not a member) at the tail
    cdef _cache_link* e = _ll_at(links, stride, ix)
    e.prev = L.tail
    e.next = -1
    if L.tail >= 0:
        _ll_at(links, stride, L.tail).next = ix
    else:
        L.head = ix
    L.tail = ix


cdef inline bint _ll_move_to_tail(_cache_list* L, char* links, size_t stride,
                                  int32_t ix) noexcept nogil:
    # Move member ix to the tail; False (nothing changed) if it is there already. Not the tail,
    # ix has a next member, so only its prev side can be the head.
    cdef _cache_link* e
    cdef int32_t p, nx
    if ix == L.tail:
        return False
    e = _ll_at(links, stride, ix)
    p = e.prev
    nx = e.next
    if p >= 0:
        _ll_at(links, stride, p).next = nx
    else:
        L.head = nx
    _ll_at(links, stride, nx).prev = p
    e.prev = L.tail
    e.next = -1
    _ll_at(links, stride, L.tail).next = ix
    L.tail = ix
    return True


cdef inline void _ll_link_after(_cache_list* L, char* links, size_t stride, int32_t ix,
                                int32_t after) noexcept nogil:
    # Put ix (not a member) right after member `after` (-1: at the head)
    cdef _cache_link* e = _ll_at(links, stride, ix)
    e.prev = after
    if after >= 0:
        e.next = _ll_at(links, stride, after).next
        _ll_at(links, stride, after).next = ix
    else:
        e.next = L.head
        L.head = ix
    if e.next >= 0:
        _ll_at(links, stride, e.next).prev = ix
    else:
        L.tail = ix


cdef inline void _ll_renumbered(_cache_list* L, char* links, size_t stride, _cache_link* e,
                                int32_t ix) noexcept nogil:
    # A member's links were copied to number ix (the entry moved to fill a hole), e being
    # _ll_at(links, stride, ix): its neighbours, or the list's ends, now point at ix (L2)
    if e.prev >= 0:
        _ll_at(links, stride, e.prev).next = ix
    else:
        L.head = ix
    if e.next >= 0:
        _ll_at(links, stride, e.next).prev = ix
    else:
        L.tail = ix


# ---- LFU: use-count buckets --------------------------------------------------------------------
#
# LFUCache keeps its order list sorted by use count, so that the head is always the next victim.
# A bucket is the run of entries with one count. Invariants the kernels keep:
#   F1  the order list is sorted by count, ascending; a bucket's entries are consecutive,
#       first..last, least recently used first
#   F2  of[ix] is entry ix's bucket; every bucket in use holds at least one entry
#   F3  there are as many buckets as entry slots (cap): the unused ones are on the free list
#       (linked through .first), so a use that splits a bucket never allocates
# A use moves the entry to the end of the next count's run, or makes a bucket for it: O(1).

cdef struct _cache_bk:
    int64_t count
    int32_t first       # on the free list: the next free bucket
    int32_t last

cdef struct _cache_lfu:
    int32_t* of         # each entry's bucket
    _cache_bk* bks      # cap buckets
    int32_t free        # the free list's first bucket, -1 when empty


cdef inline void _lfu_grown(_cache_lfu* f, Py_ssize_t oldcap, Py_ssize_t newcap) noexcept nogil:
    # The arrays grew from oldcap to newcap slots: the new buckets join the free list (F3)
    cdef Py_ssize_t i
    for i in range(oldcap, newcap):
        f.bks[i].first = f.free
        f.free = <int32_t>i


cdef inline int32_t _lfu_new(_cache_lfu* f, int64_t count, int32_t ix) noexcept nogil:
    # A bucket holding only entry ix. Never fails (F3: a free bucket exists while an entry is
    # not in a bucket, since every bucket in use holds an entry).
    cdef int32_t b = f.free
    f.free = f.bks[b].first
    f.bks[b].count = count
    f.bks[b].first = ix
    f.bks[b].last = ix
    f.of[ix] = b
    return b


cdef inline void _lfu_leave(_cache_lfu* f, const _cache_ent* ents, int32_t ix) noexcept nogil:
    # Entry ix leaves its bucket, which goes back to the free list if it held only ix (F2).
    # Called while ix is still linked in the order list (its neighbours become the run's ends).
    cdef int32_t b = f.of[ix]
    cdef _cache_bk* bk = &f.bks[b]
    if bk.first == ix and bk.last == ix:
        bk.first = f.free
        f.free = b
    elif bk.first == ix:
        bk.first = ents[ix].lk.next
    elif bk.last == ix:
        bk.last = ents[ix].lk.prev


cdef inline void _lfu_add(_cache_lfu* f, _cache_list* L, _cache_ent* ents,
                          int32_t ix) noexcept nogil:
    # A new entry (not linked): use count 1, the most recent of the count-1 run at the head (F1)
    cdef char* links = <char*>&ents[0].lk
    cdef int32_t h = L.head
    cdef int32_t b
    if h >= 0 and f.bks[f.of[h]].count == 1:
        b = f.of[h]
        _ll_link_after(L, links, sizeof(_cache_ent), ix, f.bks[b].last)
        f.bks[b].last = ix
        f.of[ix] = b
    else:
        _ll_link_after(L, links, sizeof(_cache_ent), ix, -1)
        _lfu_new(f, 1, ix)


cdef inline void _lfu_bump(_cache_lfu* f, _cache_list* L, _cache_ent* ents,
                           int32_t ix) noexcept nogil:
    # One more use of entry ix: to the end of the next count's run (joining that bucket, or
    # keeping its own if it was alone, or a new one), so F1 holds.
    cdef char* links = <char*>&ents[0].lk
    cdef int32_t b = f.of[ix]
    cdef _cache_bk* bk = &f.bks[b]
    cdef int64_t count = bk.count + 1
    cdef int32_t after = bk.last
    cdef int32_t nxt = ents[after].lk.next          # first entry of the next bucket
    cdef int32_t nb
    if nxt >= 0 and f.bks[f.of[nxt]].count == count:
        nb = f.of[nxt]
        _lfu_leave(f, ents, ix)
        _ll_unlink(L, links, sizeof(_cache_ent), ix)
        _ll_link_after(L, links, sizeof(_cache_ent), ix, f.bks[nb].last)
        f.bks[nb].last = ix
        f.of[ix] = nb
    elif bk.first == ix and bk.last == ix:
        bk.count = count
    else:
        _lfu_leave(f, ents, ix)
        if after != ix:
            _ll_unlink(L, links, sizeof(_cache_ent), ix)
            _ll_link_after(L, links, sizeof(_cache_ent), ix, after)
        _lfu_new(f, count, ix)


cdef inline void _lfu_renumbered(_cache_lfu* f, int32_t last, int32_t ix) noexcept nogil:
    # Entry `last` became entry ix (it moved to fill a hole): its bucket follows (F2)
    cdef int32_t b = f.of[last]
    f.of[ix] = b
    if f.bks[b].first == last:
        f.bks[b].first = ix
    if f.bks[b].last == last:
        f.bks[b].last = ix


# ---- TLRU: the expiry heap of real expiries ----------------------------------------------------
#
# TLRUCache with the built-in clock: a binary min-heap of entry numbers (heap[0.._n-1]) ordered
# by expiry (ents[].exp). Invariants the kernels keep:
#   H1  heap holds every entry once, and pos[heap[p]] == p
#   H2  ents[heap[p]].exp >= ents[heap[(p - 1) >> 1]].exp for p > 0: heap[0] expires first
# Every change is O(log n). The two sifts are not inline (a loop each: callers stay small enough
# for the compiler to inline their own hot paths). (With object expiries the order is user code; that heap is the
# cache's _xh_* methods, which plan by comparisons before they move anything.)

cdef inline void _hp_put(int32_t* heap, int32_t* pos, Py_ssize_t p, int32_t ix) noexcept nogil:
    heap[p] = ix
    pos[ix] = <int32_t>p


cdef void _hp_up(int32_t* heap, int32_t* pos, const _cache_ent* ents,
                 Py_ssize_t p) noexcept nogil:
    # Sift heap[p] up to its place (H2 above p)
    cdef int32_t ix = heap[p]
    cdef double exp = ents[ix].exp
    cdef Py_ssize_t parent
    while p > 0:
        parent = (p - 1) >> 1
        if not (exp < ents[heap[parent]].exp):
            break
        _hp_put(heap, pos, p, heap[parent])
        p = parent
    _hp_put(heap, pos, p, ix)


cdef void _hp_down(int32_t* heap, int32_t* pos, const _cache_ent* ents, Py_ssize_t p,
                   Py_ssize_t size) noexcept nogil:
    # Sift heap[p] down to its place within heap[0..size-1] (H2 below p)
    cdef int32_t ix = heap[p]
    cdef double exp = ents[ix].exp
    cdef Py_ssize_t child
    while True:
        child = 2 * p + 1
        if child >= size:
            break
        if child + 1 < size and ents[heap[child + 1]].exp < ents[heap[child]].exp:
            child += 1
        if not (ents[heap[child]].exp < exp):
            break
        _hp_put(heap, pos, p, heap[child])
        p = child
    _hp_put(heap, pos, p, ix)


cdef inline void _hp_fix(int32_t* heap, int32_t* pos, const _cache_ent* ents, int32_t ix,
                         Py_ssize_t n) noexcept nogil:
    # Entry ix's expiry changed: restore H2 around it
    _hp_up(heap, pos, ents, pos[ix])
    _hp_down(heap, pos, ents, pos[ix], n)


cdef inline void _hp_remove(int32_t* heap, int32_t* pos, const _cache_ent* ents, int32_t ix,
                            Py_ssize_t n) noexcept nogil:
    # Take entry ix out of the heap of n entries: the last one fills its place and moves to
    # where H2 puts it (the caller then has n - 1 entries)
    cdef Py_ssize_t p = pos[ix]
    cdef Py_ssize_t last = n - 1
    cdef int32_t moved
    if p != last:
        moved = heap[last]
        _hp_put(heap, pos, p, moved)
        if p > 0 and ents[moved].exp < ents[heap[(p - 1) >> 1]].exp:
            _hp_up(heap, pos, ents, p)
        else:
            _hp_down(heap, pos, ents, p, last)
