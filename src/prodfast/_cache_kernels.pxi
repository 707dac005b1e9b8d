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
DEF _CACHE_FIB = 0x9E3779B97F4A7C15ULL     # 2^64 / golden ratio


# ---- the hash index ----------------------------------------------------------------------------
#
# A linear-probing table of int32 slots over the dense entry array, as CPython's compact dict:
# a slot is _CACHE_EMPTY or (tag << ibits) | entry number. Invariants the kernels keep:
#   I1  size = mask + 1 is a power of two, and 2 * n <= size (a probe always meets an empty slot)
#   I2  every entry has exactly one slot, and every slot from its home slot up to it is in use
#       (deletion shifts the cluster back instead of leaving tombstones)
#   I3  a slot's tag bits are _ix_tag() of its entry's hash

cdef struct _cache_index:
    int32_t* slots
    Py_ssize_t mask     # size - 1
    int shift           # 64 - log2(size): the home slot is the top bits of hash * _CACHE_FIB
    int ibits           # low bits of a slot holding the entry number (enough for maxsize entries)
    int32_t imask       # (1 << ibits) - 1
    uint64_t tagmask    # the tag's bits before the shift: (1 << (31 - ibits)) - 1


cdef inline void _ix_bits(_cache_index* x, Py_ssize_t maxcap) noexcept nogil:
    # Entry numbers below maxcap take the low ibits bits of a slot, the hash tag the rest (up to
    # bit 30, so that a used slot stays >= 0). Only for an empty table (I3).
    x.ibits = 1
    while (<Py_ssize_t>1 << x.ibits) <= maxcap and x.ibits < 31:
        x.ibits += 1
    x.imask = <int32_t>((<uint64_t>1 << x.ibits) - 1)
    x.tagmask = (<uint64_t>1 << (31 - x.ibits)) - 1


cdef inline int32_t* _ix_alloc(Py_ssize_t size) noexcept:
    # `size` empty slots, or NULL when out of memory
    cdef int32_t* s = <int32_t*>PyMem_Malloc(size * sizeof(int32_t))
    if s != NULL:
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
    # The table size for `need` entries: load factor <= 1/2 (I1)
    cdef Py_ssize_t size = _CACHE_MINSIZE
    while size < 2 * need + 2:
        size <<= 1
    return size


cdef inline void _ix_wipe(_cache_index* x) noexcept nogil:
    # Every slot empty, the size kept
    if x.slots != NULL:
        memset(x.slots, 0xFF, (x.mask + 1) * sizeof(int32_t))


cdef inline int32_t _ix_tag(const _cache_index* x, Py_hash_t h) noexcept nogil:
    # Hash bits kept in the slot above the entry number: most slots of another key are told
    # apart without reading its entry (a miss reads the index table only).
    return <int32_t>((((<uint64_t>h * <uint64_t>_CACHE_FIB) >> 32) & x.tagmask) << x.ibits)


cdef inline size_t _ix_home(const _cache_index* x, Py_hash_t h) noexcept nogil:
    # Fibonacci hashing: the high bits of h * 2^64/phi pick the home slot, so that regular
    # hashes (ints with a common stride) spread out under linear probing.
    return <size_t>((<uint64_t>h * <uint64_t>_CACHE_FIB) >> x.shift)


cdef inline int32_t _ix_probe(const _cache_index* x, const _cache_ent* ents, Py_hash_t h,
                              PyObject* k, size_t* at) noexcept nogil:
    # From slot *at on, the next entry that may hold key k: its tag matches and it is k itself
    # or has hash h (the caller decides by __eq__ unless it is k); or -1 at the empty slot that
    # ends the run (I2: k is not in the table). *at is left at that entry's or empty slot.
    cdef size_t mask = <size_t>x.mask
    cdef size_t i = at[0]
    cdef int32_t t = _ix_tag(x, h)
    cdef int32_t imask = x.imask
    cdef int32_t v
    while True:
        v = x.slots[i]
        if v < 0:
            break
        if (v & ~imask) == t:
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


cdef inline Py_ssize_t _ix_free_slot(const _cache_index* x, Py_hash_t h) noexcept nogil:
    # The first empty slot of hash h's probe run (I1: there is one)
    cdef size_t mask = <size_t>x.mask
    cdef size_t i = _ix_home(x, h)
    while x.slots[i] >= 0:
        i = (i + 1) & mask
    return <Py_ssize_t>i


cdef inline void _ix_insert(_cache_index* x, Py_hash_t h, int32_t ix) noexcept nogil:
    # Index entry ix (hash h, not indexed yet) in the first empty slot of its run (I2, I3).
    # The caller keeps I1 (room made beforehand).
    x.slots[_ix_free_slot(x, h)] = _ix_tag(x, h) | ix


cdef inline void _ix_renumber(_cache_index* x, Py_ssize_t slot, int32_t ix) noexcept nogil:
    # The entry at `slot` is now entry number ix (it moved in the entry array); its tag stays
    x.slots[slot] = (x.slots[slot] & ~x.imask) | ix


cdef inline void _ix_clear_slot(_cache_index* x, const _cache_ent* ents,
                                Py_ssize_t slot) noexcept nogil:
    # Empty `slot`, shifting later members of its cluster back so that I2 holds without
    # tombstones: an entry at j moves to the hole i unless its home is cyclically in (i, j].
    cdef size_t mask = <size_t>x.mask
    cdef size_t i = <size_t>slot
    cdef size_t j = i
    cdef size_t k
    cdef int32_t v
    while True:
        j = (j + 1) & mask
        v = x.slots[j]
        if v < 0:
            break
        k = _ix_home(x, ents[v & x.imask].hash)
        if i <= j:
            if i < k and k <= j:
                continue
        elif i < k or k <= j:
            continue
        x.slots[i] = v
        i = j
    x.slots[i] = _CACHE_EMPTY


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


cdef inline void _ll_renumbered(_cache_list* L, char* links, size_t stride,
                                int32_t ix) noexcept nogil:
    # A member's links were copied to number ix (the entry moved to fill a hole): its neighbours,
    # or the list's ends, now point at ix (L2)
    cdef _cache_link* e = _ll_at(links, stride, ix)
    if e.prev >= 0:
        _ll_at(links, stride, e.prev).next = ix
    else:
        L.head = ix
    if e.next >= 0:
        _ll_at(links, stride, e.next).prev = ix
    else:
        L.tail = ix
