# Every public class of this module gets its twin's constructor signature and argument errors
# (see prodfast._signatures). Included last by _core.pyx, so it covers every class above.
#
# The errors: each class's tp_new and tp_init slots are wrapped, and the direct constructor call
# (tp_vectorcall) Cython gives a final class. A call that succeeds costs one
# lookup in a table of a few entries; when the slot raises TypeError, the checker binds the
# same arguments to the twin's parameters, and its TypeError, if they do not bind, is raised
# instead (otherwise the slot's own error stands: a wrong-typed value, named by its check).
# The class's __init__ attribute becomes one that errs alike and has the twin's signature: what
# inspect reads, what Python subclasses reach (by inheriting it or through super().__init__:
# CPython would otherwise take the unwrapped slot from the slot wrapper) and an explicit
# Cls.__init__(obj, ...) call. Python subclasses inherit the wrapped tp_new.

from cpython.object cimport PyObject, PyTypeObject, Py_TYPE
from cpython.ref cimport Py_DECREF, Py_INCREF

import inspect as _sig_inspect

import prodfast._core_py as _sig_twins
from prodfast._signatures import ClassSignature as _sig_ClassSignature
from prodfast._signatures import argument_checker as _sig_argument_checker
from prodfast._signatures import initializer as _sig_initializer
from prodfast._signatures import method_checker as _sig_method_checker
from prodfast._signatures import refusal as _sig_refusal_of

ctypedef PyObject* _sig_ref
ctypedef object (*_sig_newfunc)(PyTypeObject*, PyObject*, PyObject*)
ctypedef int (*_sig_initproc)(PyObject*, PyObject*, PyObject*) except -1
ctypedef object (*_sig_vectorcallfunc)(PyObject*, const _sig_ref*, size_t, PyObject*)
ctypedef PyObject* (*_sig_raw_vectorcallfunc)(PyObject*, const _sig_ref*, size_t, PyObject*) noexcept

cdef extern from "Python.h":
    ctypedef struct _sig_Type "PyTypeObject":
        _sig_newfunc tp_new
        _sig_initproc tp_init
        _sig_vectorcallfunc tp_vectorcall
        _sig_Type* tp_base
        PyObject* tp_dict
        Py_ssize_t tp_vectorcall_offset
        unsigned long tp_flags
    void PyType_Modified(PyTypeObject* t)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)
    unsigned long Py_TPFLAGS_HAVE_VECTORCALL

cdef extern from *:
    """
    static int prodfast_sig_pending(void) { return -1; }  /* the error already set */
    """
    int _sig_pending "prodfast_sig_pending" () except -1

DEF _SIG_MAX_CLASSES = 64

cdef struct _sig_slots:
    _sig_Type* type
    _sig_newfunc new
    _sig_initproc init
    _sig_vectorcallfunc vectorcall  # Cython's direct constructor call of a final class, or NULL
    PyObject* checker       # a strong reference, kept for the life of the process

cdef _sig_slots _sig_table[_SIG_MAX_CLASSES]
cdef int _sig_count = 0


cdef _sig_slots* _sig_find(_sig_Type* t) except NULL:
    # The entry of t, or of its nearest registered base (t is a Python subclass).
    cdef _sig_Type* start = t
    cdef int i
    while t is not NULL:
        for i in range(_sig_count):
            if _sig_table[i].type == t:
                return &_sig_table[i]
        t = t.tp_base
    raise SystemError(f"prodfast: no constructor registered for {<object><PyObject*>start!r}")


cdef inline object _sig_refusal(_sig_slots* s, tuple args, dict kwargs):
    return _sig_refusal_of(<object>s.checker, args, kwargs)


cdef object _sig_new(PyTypeObject* t, PyObject* args, PyObject* kwds):
    cdef _sig_slots* s = _sig_find(<_sig_Type*>t)
    cdef object refusal = None
    try:
        return s.new(t, args, kwds)
    except TypeError:
        refusal = _sig_refusal(s, <tuple>args, <dict>kwds if kwds is not NULL else {})
        if refusal is None:
            raise
    raise refusal


cdef int _sig_init(PyObject* self, PyObject* args, PyObject* kwds) except -1:
    cdef _sig_slots* s = _sig_find(<_sig_Type*>Py_TYPE(<object>self))
    cdef object refusal = None
    try:
        return s.init(self, args, kwds)
    except TypeError:
        refusal = _sig_refusal(s, <tuple>args, <dict>kwds if kwds is not NULL else {})
        if refusal is None:
            raise
    raise refusal


cdef object _sig_vectorcall(PyObject* t, const _sig_ref* args, size_t nargsf, PyObject* kwnames):
    cdef _sig_slots* s = _sig_find(<_sig_Type*>t)
    cdef Py_ssize_t n = PyVectorcall_NARGS(nargsf), i
    cdef object refusal = None
    try:
        return s.vectorcall(t, args, nargsf, kwnames)
    except TypeError:
        names = <tuple>kwnames if kwnames is not NULL else ()
        refusal = _sig_refusal(
            s,
            tuple([<object>args[i] for i in range(n)]),
            {names[i]: <object>args[n + i] for i in range(len(names))},
        )
        if refusal is None:
            raise
    raise refusal


# Methods: a compiled method (a Cython function object, found in its class's dict) is called
# through the vectorcall pointer in the object itself; that pointer is replaced by
# _sig_method_call, which finds the original in a small open-addressing table keyed by the
# function object and, when the call raises TypeError, rewords it as for constructors (the
# checker binds self and the arguments to the method of the twin of self's class: a function
# that compiled classes share, as _CacheCore's, may be several twin methods). Methods made with
# cython.binding(False) are called without that pointer: see the trampolines below.

DEF _SIG_MAX_METHODS = 1024   # a power of two, well above the number of methods

cdef struct _sig_method:
    PyObject* function          # borrowed: its class's dict holds it for good
    _sig_raw_vectorcallfunc vectorcall
    PyObject* name              # a strong reference, kept for the life of the process
    bint of_class               # a classmethod's function: args[0] is the class, not self

cdef _sig_method _sig_methods[_SIG_MAX_METHODS]
cdef int _sig_method_count = 0


cdef inline size_t _sig_home(PyObject* f) noexcept:
    return (<size_t>f >> 4) & (_SIG_MAX_METHODS - 1)


cdef inline _sig_method* _sig_method_of(PyObject* f) noexcept:
    # Only registered functions call through _sig_method_call, so the search ends.
    cdef size_t i = _sig_home(f)
    while _sig_methods[i].function != f:
        i = (i + 1) & (_SIG_MAX_METHODS - 1)
    return &_sig_methods[i]


cdef int _sig_raise_for(_sig_method* m, const _sig_ref* args, size_t nargsf, PyObject* kwnames) except -1:
    # Called with the call's exception set: raises it again, or the twin's refusal instead.
    cdef Py_ssize_t n = PyVectorcall_NARGS(nargsf), i
    cdef object refusal = None
    try:
        _sig_pending()
    except TypeError:
        names = <tuple>kwnames if kwnames is not NULL else ()
        positional = tuple([<object>args[i] for i in range(1, n)])  # args[0] is self
        keywords = {names[i]: <object>args[n + i] for i in range(len(names))}
        if n:  # else an unbound call without self, refused by Cython before anything else
            try:
                owner = <object>args[0] if m.of_class else type(<object>args[0])
                checker = _sig_method_checker(owner, <object>m.name)
                checker(<object>args[0], *positional, **keywords)
            except TypeError as error:
                refusal = error
        if refusal is None:
            raise
    refusal.__context__ = None
    raise refusal.with_traceback(None)


cdef object _sig_method_call(PyObject* f, const _sig_ref* args, size_t nargsf, PyObject* kwnames):
    cdef _sig_method* m = _sig_method_of(f)
    cdef PyObject* made = m.vectorcall(f, args, nargsf, kwnames)
    if made is NULL:
        _sig_raise_for(m, args, nargsf, kwnames)
    result = <object>made
    Py_DECREF(result)           # <object> took a reference of its own
    return result


cdef _sig_register_method(object function, str name, bint of_class):
    cdef PyObject* f = <PyObject*>function
    cdef _sig_Type* ft = <_sig_Type*>Py_TYPE(function)
    cdef _sig_raw_vectorcallfunc* slot
    cdef size_t i
    global _sig_method_count
    if not (ft.tp_flags & Py_TPFLAGS_HAVE_VECTORCALL) or ft.tp_vectorcall_offset <= 0:
        return
    slot = <_sig_raw_vectorcallfunc*>((<char*>f) + ft.tp_vectorcall_offset)
    if slot[0] is NULL or slot[0] == <_sig_raw_vectorcallfunc>_sig_method_call:
        return
    if _sig_method_count >= _SIG_MAX_METHODS // 2:
        raise SystemError("prodfast: raise _SIG_MAX_METHODS in _signatures.pxi")
    Py_INCREF(name)
    i = _sig_home(f)
    while _sig_methods[i].function is not NULL:
        i = (i + 1) & (_SIG_MAX_METHODS - 1)
    _sig_methods[i] = _sig_method(f, slot[0], <PyObject*>name, of_class)
    _sig_method_count += 1
    slot[0] = <_sig_raw_vectorcallfunc>_sig_method_call


# Methods made with cython.binding(False) (LRUCache.get: the hit path) are method descriptors
# over a PyMethodDef, which the descriptor, the specialized CALL of 3.12+ and a bound method
# object (`get = c.get`) all call through its ml_meth. That pointer is replaced by a trampoline
# of its own (one C function per method, so no lookup): a call whose positional count fits and
# that has no keywords cannot fail to bind, and jumps straight on to the original (a tail call:
# the hit path gains a compare and a jump); any other call is checked on the way out, and a
# TypeError is reworded as above.

cdef extern from *:
    """
    typedef PyObject *(*prodfast_sig_fastkw)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);
    typedef int (*prodfast_sig_reword_t)(PyObject *, PyObject *, PyObject *const *, Py_ssize_t, PyObject *);
    static prodfast_sig_reword_t prodfast_sig_reword = NULL;

    typedef struct {
        prodfast_sig_fastkw original;
        PyObject *name;         /* a strong reference, kept for the life of the process */
        Py_ssize_t lo, hi;      /* the positional arguments (self not counted) that always bind */
    } prodfast_sig_fast_slot;

    #if defined(__GNUC__) || defined(__clang__)
    #define PRODFAST_SIG_LIKELY(x) __builtin_expect(!!(x), 1)
    #else
    #define PRODFAST_SIG_LIKELY(x) (x)
    #endif
    #define PRODFAST_SIG_FAST_SLOTS 4
    static prodfast_sig_fast_slot prodfast_sig_fast[PRODFAST_SIG_FAST_SLOTS];

    #if defined(__GNUC__) || defined(__clang__)
    #define PRODFAST_SIG_NOINLINE __attribute__((noinline))
    #elif defined(_MSC_VER)
    #define PRODFAST_SIG_NOINLINE __declspec(noinline)
    #else
    #define PRODFAST_SIG_NOINLINE
    #endif

    /* Out of line, so that the trampolines save no registers: both their exits are tail calls. */
    static PRODFAST_SIG_NOINLINE PyObject *prodfast_sig_checked(
            prodfast_sig_fast_slot *s, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames) {
        PyObject *r = s->original(self, args, nargs, kwnames);
        if (r == NULL && PyErr_ExceptionMatches(PyExc_TypeError))
            prodfast_sig_reword(self, s->name, args, nargs, kwnames);
        return r;
    }

    #define PRODFAST_SIG_TRAMPOLINE(i)                                                          \
        static PyObject *prodfast_sig_trampoline_##i(                                           \
                PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {   \
            prodfast_sig_fast_slot *s = &prodfast_sig_fast[i];                                  \
            if (PRODFAST_SIG_LIKELY(kwnames == NULL && nargs >= s->lo && nargs <= s->hi))       \
                return s->original(self, args, nargs, NULL);                                    \
            return prodfast_sig_checked(s, self, args, nargs, kwnames);                         \
        }
    PRODFAST_SIG_TRAMPOLINE(0)
    PRODFAST_SIG_TRAMPOLINE(1)
    PRODFAST_SIG_TRAMPOLINE(2)
    PRODFAST_SIG_TRAMPOLINE(3)
    static prodfast_sig_fastkw prodfast_sig_trampolines[PRODFAST_SIG_FAST_SLOTS] = {
        prodfast_sig_trampoline_0, prodfast_sig_trampoline_1,
        prodfast_sig_trampoline_2, prodfast_sig_trampoline_3,
    };

    /* 1: installed; 0: not a METH_FASTCALL|METH_KEYWORDS descriptor, or already done; -1: error */
    static int prodfast_sig_install_fast(PyObject *descr, PyObject *name, Py_ssize_t lo, Py_ssize_t hi) {
        PyMethodDef *def;
        int i;
        if (!PyObject_TypeCheck(descr, &PyMethodDescr_Type))
            return 0;
        def = ((PyMethodDescrObject *)descr)->d_method;
        if ((def->ml_flags & (METH_FASTCALL | METH_KEYWORDS | METH_VARARGS | METH_NOARGS | METH_O))
                != (METH_FASTCALL | METH_KEYWORDS))
            return 0;
        for (i = 0; i < PRODFAST_SIG_FAST_SLOTS; i++) {
            if ((prodfast_sig_fastkw)(void (*)(void))def->ml_meth == prodfast_sig_trampolines[i])
                return 0;
        }
        for (i = 0; i < PRODFAST_SIG_FAST_SLOTS && prodfast_sig_fast[i].original != NULL; i++);
        if (i == PRODFAST_SIG_FAST_SLOTS) {
            PyErr_SetString(PyExc_SystemError,
                            "prodfast: raise PRODFAST_SIG_FAST_SLOTS in _signatures.pxi");
            return -1;
        }
        Py_INCREF(name);
        prodfast_sig_fast[i].original = (prodfast_sig_fastkw)(void (*)(void))def->ml_meth;
        prodfast_sig_fast[i].name = name;
        prodfast_sig_fast[i].lo = lo;
        prodfast_sig_fast[i].hi = hi;
        def->ml_meth = (PyCFunction)(void (*)(void))prodfast_sig_trampolines[i];
        return 1;
    }

    /* METH_O methods (QuantileSketch.push): CPython refuses a bad call of one itself, before
       ml_meth runs. At install, the PyMethodDef becomes METH_FASTCALL|METH_KEYWORDS over an
       adapter that passes args[0] on to the original (a compare and a tail call) and takes the
       checked path otherwise. The descriptor's own vectorcall was chosen from the old flags when
       it was made: it is replaced by the one CPython chooses for the new flags (taken from a
       probe descriptor over the same PyMethodDef, so self's type is checked by CPython's own code,
       in its words). Installed only where the layout is known (3.8 to 3.13) and checked: a probe
       over the old flags must have the descriptor's vectorcall; else the method is left as it is. */
    typedef struct {
        PyCFunction original;
        PyObject *name;         /* strong references, kept for the life of the process */
        PyObject *qualname;
    } prodfast_sig_o_slot;
    #define PRODFAST_SIG_O_SLOTS 4
    static prodfast_sig_o_slot prodfast_sig_o[PRODFAST_SIG_O_SLOTS];

    static PRODFAST_SIG_NOINLINE PyObject *prodfast_sig_o_checked(
            prodfast_sig_o_slot *s, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames) {
        /* CPython's words for a METH_O method, reworded if the twin's method refuses too */
        if (kwnames != NULL && PyTuple_GET_SIZE(kwnames))
            PyErr_Format(PyExc_TypeError, "%U() takes no keyword arguments", s->qualname);
        else if (nargs == 1)
            return s->original(self, args[0]);
        else
            PyErr_Format(PyExc_TypeError, "%U() takes exactly one argument (%zd given)",
                         s->qualname, nargs);
        prodfast_sig_reword(self, s->name, args, nargs, kwnames);
        return NULL;
    }

    #define PRODFAST_SIG_O_TRAMPOLINE(i)                                                        \
        static PyObject *prodfast_sig_o_trampoline_##i(                                         \
                PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {   \
            if (PRODFAST_SIG_LIKELY(nargs == 1 && kwnames == NULL))                             \
                return prodfast_sig_o[i].original(self, args[0]);                               \
            return prodfast_sig_o_checked(&prodfast_sig_o[i], self, args, nargs, kwnames);      \
        }
    PRODFAST_SIG_O_TRAMPOLINE(0)
    PRODFAST_SIG_O_TRAMPOLINE(1)
    PRODFAST_SIG_O_TRAMPOLINE(2)
    PRODFAST_SIG_O_TRAMPOLINE(3)
    static prodfast_sig_fastkw prodfast_sig_o_trampolines[PRODFAST_SIG_O_SLOTS] = {
        prodfast_sig_o_trampoline_0, prodfast_sig_o_trampoline_1,
        prodfast_sig_o_trampoline_2, prodfast_sig_o_trampoline_3,
    };

    /* 1: installed; 2: a METH_O method left as it is (a layout not known); 0: not an exact
       METH_O method descriptor; -1: error */
    static int prodfast_sig_install_o(PyObject *descr, PyObject *name, PyObject *qualname) {
    #if PY_VERSION_HEX < 0x03080000 || PY_VERSION_HEX >= 0x030E0000
        (void)name; (void)qualname;
        return Py_IS_TYPE(descr, &PyMethodDescr_Type)
               && ((PyMethodDescrObject *)descr)->d_method->ml_flags == METH_O ? 2 : 0;
    #else
        PyMethodDescrObject *d, *probe;
        PyMethodDef *def;
        PyTypeObject *owner;
        vectorcallfunc o_call, fast_call;
        int i;
        if (!Py_IS_TYPE(descr, &PyMethodDescr_Type))
            return 0;
        d = (PyMethodDescrObject *)descr;
        def = d->d_method;
        owner = PyDescr_TYPE(descr);
        if (def->ml_flags != METH_O || owner == NULL)
            return 0;
        for (i = 0; i < PRODFAST_SIG_O_SLOTS && prodfast_sig_o[i].original != NULL; i++);
        if (i == PRODFAST_SIG_O_SLOTS) {
            PyErr_SetString(PyExc_SystemError,
                            "prodfast: raise PRODFAST_SIG_O_SLOTS in _signatures.pxi");
            return -1;
        }
        probe = (PyMethodDescrObject *)PyDescr_NewMethod(owner, def);
        if (probe == NULL)
            return -1;
        o_call = probe->vectorcall;
        Py_DECREF(probe);
        if (o_call == NULL || o_call != d->vectorcall)
            return 2;
        def->ml_flags = METH_FASTCALL | METH_KEYWORDS;
        probe = (PyMethodDescrObject *)PyDescr_NewMethod(owner, def);
        if (probe == NULL) {
            def->ml_flags = METH_O;
            return -1;
        }
        fast_call = probe->vectorcall;
        Py_DECREF(probe);
        if (fast_call == NULL || fast_call == o_call) {
            def->ml_flags = METH_O;
            return 2;
        }
        Py_INCREF(name);
        Py_INCREF(qualname);
        prodfast_sig_o[i].original = def->ml_meth;
        prodfast_sig_o[i].name = name;
        prodfast_sig_o[i].qualname = qualname;
        def->ml_meth = (PyCFunction)(void (*)(void))prodfast_sig_o_trampolines[i];
        d->vectorcall = fast_call;
        return 1;
    #endif
    }
    """
    ctypedef int (*_sig_reword_t)(PyObject*, PyObject*, const _sig_ref*, Py_ssize_t, PyObject*) except -1
    _sig_reword_t _sig_reword_hook "prodfast_sig_reword"
    int _sig_install_fast "prodfast_sig_install_fast" (object descr, object name, Py_ssize_t lo, Py_ssize_t hi) except -1
    int _sig_install_o "prodfast_sig_install_o" (object descr, object name, object qualname) except -1


cdef int _sig_fast_failed(PyObject* self, PyObject* name, const _sig_ref* args, Py_ssize_t nargs,
                          PyObject* kwnames) except -1:
    # Called with the method's TypeError set: raises it again, or the twin's refusal instead.
    cdef Py_ssize_t i
    cdef object refusal = None
    try:
        _sig_pending()
    except TypeError:
        names = <tuple>kwnames if kwnames is not NULL else ()
        positional = tuple([<object>args[i] for i in range(nargs)])
        keywords = {names[i]: <object>args[nargs + i] for i in range(len(names))}
        checker = _sig_method_checker(type(<object>self), <object>name)
        try:
            checker(<object>self, *positional, **keywords)
        except TypeError as error:
            refusal = error
        if refusal is None:
            raise
    refusal.__context__ = None
    raise refusal.with_traceback(None)


_sig_reword_hook = _sig_fast_failed


# The METH_O methods given an adapter ("QuantileSketch.push"), and those left as they are (a
# version whose layout is not known: CPython's own refusal stands): what the tests read to know
# which path a version takes.
_sig_meth_o_adapted = []
_sig_meth_o_plain = []


cdef _sig_install_trampoline(type cls, object descriptor, str name, object twin_method):
    qualname = f"{descriptor.__objclass__.__name__}.{name}"
    installed = _sig_install_o(descriptor, name, qualname)
    if installed == 1:
        _sig_meth_o_adapted.append(qualname)
    elif installed == 2:
        _sig_meth_o_plain.append(qualname)
    if installed:
        return
    # lo..hi: the positional counts that bind to the twin's method with no keywords
    params = list(_sig_inspect.signature(twin_method).parameters.values())[1:]  # without self
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
        lo, hi = 1, 0  # a required keyword: every call is checked on the way out
    else:
        lo = sum(1 for p in positional if p.default is p.empty)
        hi = len(positional)
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            hi = PY_SSIZE_T_MAX
    _sig_install_fast(descriptor, name, lo, hi)


cdef _sig_register_methods(type cls, object twin):
    # The class's own methods and those of its compiled private bases (_CacheCore ...); a
    # method two classes share is registered once.
    for name in dir(cls):
        function = _sig_inspect.getattr_static(cls, name)
        if name.startswith("__"):
            continue
        twin_method = _sig_inspect.getattr_static(twin, name, None)
        of_class = isinstance(function, classmethod) and isinstance(twin_method, classmethod)
        if of_class:
            function, twin_method = function.__func__, twin_method.__func__
        if not _sig_inspect.isfunction(twin_method):
            continue
        kind = type(function).__name__
        if kind == "cython_function_or_method":
            _sig_register_method(function, name, of_class)
        elif kind == "method_descriptor":
            _sig_install_trampoline(cls, function, name, twin_method)


cdef _sig_register(type cls, object twin):
    cdef _sig_Type* t = <_sig_Type*>cls
    cdef object checker = _sig_argument_checker(twin.__init__)
    global _sig_count
    if _sig_count == _SIG_MAX_CLASSES:
        raise SystemError("prodfast: raise _SIG_MAX_CLASSES in _signatures.pxi")
    Py_INCREF(checker)
    _sig_table[_sig_count] = _sig_slots(t, t.tp_new, t.tp_init, t.tp_vectorcall, <PyObject*>checker)
    _sig_count += 1
    t.tp_new = _sig_new
    t.tp_init = _sig_init
    if t.tp_vectorcall is not NULL:
        t.tp_vectorcall = _sig_vectorcall
    (<dict>t.tp_dict)["__signature__"] = _sig_ClassSignature(cls, _sig_inspect.signature(twin))
    if "__init__" in cls.__dict__:
        (<dict>t.tp_dict)["__init__"] = _sig_initializer(cls.__dict__["__init__"], twin.__init__)
    PyType_Modified(<PyTypeObject*>cls)
    _sig_register_methods(cls, twin)


def _sig_register_all():
    import sys
    for name, value in list(vars(sys.modules[__name__]).items()):
        if not name.startswith("_") and isinstance(value, type) and value.__module__ == __name__:
            twin = getattr(_sig_twins, name, None)
            if twin is not None:
                _sig_register(value, twin)


_sig_register_all()
del _sig_register_all
# prodfast.redis.TieredCache's compiled base: its binding(False) get refuses a bad call as the twin's
_sig_register_methods(_TierFront, _sig_twins._TierFront)
