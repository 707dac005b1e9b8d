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
from cpython.ref cimport Py_INCREF

import inspect as _sig_inspect

import prodfast._core_py as _sig_twins
from prodfast._signatures import ClassSignature as _sig_ClassSignature
from prodfast._signatures import argument_checker as _sig_argument_checker
from prodfast._signatures import initializer as _sig_initializer
from prodfast._signatures import refusal as _sig_refusal_of

ctypedef PyObject* _sig_ref
ctypedef object (*_sig_newfunc)(PyTypeObject*, PyObject*, PyObject*)
ctypedef int (*_sig_initproc)(PyObject*, PyObject*, PyObject*) except -1
ctypedef object (*_sig_vectorcallfunc)(PyObject*, const _sig_ref*, size_t, PyObject*)

cdef extern from "Python.h":
    ctypedef struct _sig_Type "PyTypeObject":
        _sig_newfunc tp_new
        _sig_initproc tp_init
        _sig_vectorcallfunc tp_vectorcall
        _sig_Type* tp_base
        PyObject* tp_dict
    void PyType_Modified(PyTypeObject* t)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)

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


def _sig_register_all():
    import sys
    for name, value in list(vars(sys.modules[__name__]).items()):
        if not name.startswith("_") and isinstance(value, type) and value.__module__ == __name__:
            twin = getattr(_sig_twins, name, None)
            if twin is not None:
                _sig_register(value, twin)


_sig_register_all()
del _sig_register_all
