/* The walker's hot data opcodes, in C (an optional accelerator).
 *
 * `safeload/_machine/walker.py` `_walk` is the reference and handles every
 * opcode. When a run of data opcodes may start (after MARK, after FRAME) it
 * hands its state to `run`, which takes the following opcodes for as long as
 * each is one it knows, lies wholly before `limit`, and needs nothing but the
 * plain case of its Python branch; it mutates the same objects the Python
 * branches would (the stack, the marks, the memo's `vals` array, the step
 * iterator, `memo.appended`) exactly as they would, and returns at the first
 * opcode it does not take, which Python then handles with all its checks.
 *
 * Rules of this file: every byte read is checked against the end of the
 * buffer and `limit`; nothing is allocated from a size read in the file
 * (a stack push is one int object, as in Python; memo entries go through a
 * fixed buffer); any case that is not the plain one returns to Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Opcode bytes (Lib/pickle.py); tests/test_fastwalk.py checks them against
 * safeload/_machine/opcodes.py through OPCODES below. */
#define OP_MARK 0x28             /* ( */
#define OP_EMPTY_TUPLE 0x29      /* ) */
#define OP_EMPTY_DICT 0x7d       /* } */
#define OP_BINFLOAT 0x47         /* G */
#define OP_BININT 0x4a           /* J */
#define OP_BININT1 0x4b          /* K */
#define OP_BININT2 0x4d          /* M */
#define OP_NONE 0x4e             /* N */
#define OP_BINUNICODE 0x58       /* X */
#define OP_SHORT_BINBYTES 0x43   /* C */
#define OP_BINGET 0x68           /* h */
#define OP_LONG_BINGET 0x6a      /* j */
#define OP_BINPUT 0x71           /* q */
#define OP_LONG_BINPUT 0x72      /* r */
#define OP_NEWTRUE 0x88
#define OP_NEWFALSE 0x89
#define OP_SHORT_BINUNICODE 0x8c
#define OP_MEMOIZE 0x94

/* Memo entries appended during one call, flushed into `vals` with one
 * `frombytes` each time it fills: a fixed size, whatever the file says. */
#define PENDING 1024

/* Attribute names, interned once (`exec_module`): looked up on every call. */
static PyObject *str_appended, *str_frombytes, *str_nodes, *str_refs, *int_one;

typedef struct {
    PyObject *vals;     /* the memo's array('q') */
    Py_ssize_t stored;  /* len(vals) */
    long long pending[PENDING];
    Py_ssize_t npending;
} Memo;

static int
memo_flush(Memo *m)
{
    if (m->npending == 0)
        return 0;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)m->pending,
                                              m->npending * (Py_ssize_t)sizeof(long long));
    if (raw == NULL)
        return -1;
    PyObject *res = PyObject_CallMethodOneArg(m->vals, str_frombytes, raw);
    Py_DECREF(raw);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    m->stored += m->npending;
    m->npending = 0;
    return 0;
}

static int
memo_append(Memo *m, long long v)
{
    if (m->npending == PENDING && memo_flush(m) < 0)
        return -1;
    m->pending[m->npending++] = v;
    return 0;
}

/* vals[idx] for 0 <= idx < len: 0 and *out set, or -1 with an exception. */
static int
memo_read(Memo *m, Py_ssize_t idx, long long *out)
{
    if (idx >= m->stored) {
        *out = m->pending[idx - m->stored];
        return 0;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(m->vals, &view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view.len < (idx + 1) * (Py_ssize_t)sizeof(long long)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_SystemError, "memo array shorter than its length");
        return -1;
    }
    memcpy(out, (const char *)view.buf + idx * (Py_ssize_t)sizeof(long long), sizeof(long long));
    PyBuffer_Release(&view);
    return 0;
}

static int
push_offset(PyObject *stack, Py_ssize_t at)
{
    PyObject *item = PyLong_FromSsize_t(at);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(stack, item);
    Py_DECREF(item);
    return rc;
}

static uint32_t
u4(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The stack's top as a constant's offset (an exact int >= 0), or -1 when it
 * is anything else (a node: Python's `_Memo.put` stores it in `nodes`). */
static long long
top_offset(PyObject *stack)
{
    Py_ssize_t k = PyList_GET_SIZE(stack);
    if (k == 0)
        return -1;
    PyObject *top = PyList_GET_ITEM(stack, k - 1);
    if (!PyLong_CheckExact(top))
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(top, &overflow);
    if (overflow || v < 0) {
        PyErr_Clear();
        return -1;
    }
    return v;
}

static PyObject *
pair(Py_ssize_t pos, Py_ssize_t start)
{
    PyObject *a = PyLong_FromSsize_t(pos);
    PyObject *b = a == NULL ? NULL : PyLong_FromSsize_t(start);
    PyObject *t = b == NULL ? NULL : PyTuple_New(2);
    if (t == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, a);
    PyTuple_SET_ITEM(t, 1, b);
    return t;
}

PyDoc_STRVAR(run_doc,
"run(data, pos, limit, start, stack, marks, vals, sparse, memo, steps, counted) -> (pos, start)\n\n"
"Walk the plain data opcodes from `pos` as `_walk` would, taking one item of\n"
"`steps` per step, and return the offset of the first opcode not taken and\n"
"the start of the last one taken (`start` when none was). A memo get of a\n"
"node of type `counted` (`GRef`) adds one to its `refs`, as `_Memo.get` does.");

static PyObject *
run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "run() takes exactly 11 arguments");
        return NULL;
    }
    PyObject *data = args[0];
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    Py_ssize_t start = PyLong_AsSsize_t(args[3]);
    if ((pos == -1 || limit == -1 || start == -1) && PyErr_Occurred())
        return NULL;
    PyObject *stack = args[4], *marks = args[5], *vals = args[6], *sparse = args[7];
    PyObject *memo_obj = args[8], *steps = args[9], *counted = args[10];
    if (!PyList_CheckExact(stack) || !PyList_CheckExact(marks) || !PyDict_Check(sparse)
        || !PyIter_Check(steps) || !PyType_Check(counted)) {
        PyErr_SetString(PyExc_TypeError, "run(): unexpected argument types");
        return NULL;
    }
    if (pos < 0 || start < 0)
        return pair(pos, start);
    iternextfunc next_step = Py_TYPE(steps)->tp_iternext;

    Py_buffer view;
    if (!PyObject_CheckBuffer(data) || PyObject_GetBuffer(data, &view, PyBUF_FORMAT) < 0) {
        /* Not a byte buffer (the streaming decompressor's): Python walks it. */
        PyErr_Clear();
        return pair(pos, start);
    }
    if (view.itemsize != 1 || (view.format != NULL && strcmp(view.format, "B") != 0)) {
        PyBuffer_Release(&view);
        return pair(pos, start);
    }
    if (limit > view.len) {
        /* The walk's end lies past the bytes (a caller's odd end): Python reads
         * there and fails as it does. */
        PyBuffer_Release(&view);
        return pair(pos, start);
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    /* Every opcode taken lies wholly in [pos, end). */
    Py_ssize_t end = limit;
    Py_ssize_t taken = 0;

    Memo memo_store; /* 8 KiB on the C stack: no allocation per call */
    Memo *m = &memo_store;
    m->vals = vals;
    m->npending = 0;
    m->stored = PyObject_Size(vals);
    if (m->stored < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    /* A sparse memo takes Python's `_Memo.put` path for every write. */
    int dense = PyDict_GET_SIZE(sparse) == 0;
    Py_ssize_t fence = 0;
    Py_ssize_t nmarks = PyList_GET_SIZE(marks);
    if (nmarks > 0) {
        fence = PyLong_AsSsize_t(PyList_GET_ITEM(marks, nmarks - 1));
        if (fence == -1 && PyErr_Occurred())
            goto error;
    }
    Py_ssize_t appended = 0; /* standalone memo writes, for `memo.appended` */
    PyObject *nodes = NULL;  /* memo.nodes, fetched at the first get of a node */
    int failed = 0;

    while (pos < end) {
        Py_ssize_t at = pos;
        int op = buf[pos];
        Py_ssize_t next;      /* offset after this step */
        int push = 1;         /* pushes its own offset */
        int memo_put = 0;     /* 1: appends `put_value` to the memo in the same step */
        int standalone = 0;   /* 1: a memo opcode of its own (counted by `appended`) */
        long long put_value = 0;
        long long got = -1;   /* BINGET/LONG_BINGET: the offset pushed */
        PyObject *node = NULL; /* BINGET/LONG_BINGET: the node pushed (borrowed) */

        switch (op) {
        case OP_SHORT_BINUNICODE:
            if (pos + 1 >= end)
                goto done;
            next = pos + 2 + buf[pos + 1];
            if (next > end)
                goto done;
            if (next < end && buf[next] == OP_MEMOIZE) {
                if (!dense)
                    goto done;
                memo_put = 1;
                put_value = at;
                next += 1;
            }
            break;
        case OP_BINUNICODE: {
            if (pos + 5 > end)
                goto done;
            next = pos + 5 + (Py_ssize_t)u4(buf + pos + 1);
            if (next > end)
                goto done;
            if (next + 5 <= end) {
                int nxt = buf[next];
                if (nxt == OP_BINPUT || nxt == OP_LONG_BINPUT) {
                    Py_ssize_t idx = nxt == OP_BINPUT ? buf[next + 1] : (Py_ssize_t)u4(buf + next + 1);
                    if (!dense || idx != m->stored + m->npending)
                        goto done;
                    memo_put = 1;
                    put_value = at;
                    next += nxt == OP_BINPUT ? 2 : 5;
                }
            }
            break;
        }
        case OP_BININT:
            next = pos + 5;
            break;
        case OP_BININT1:
            next = pos + 2;
            break;
        case OP_BININT2:
            next = pos + 3;
            break;
        case OP_BINFLOAT:
            next = pos + 9;
            break;
        case OP_SHORT_BINBYTES:
            if (pos + 1 >= end)
                goto done;
            next = pos + 2 + buf[pos + 1];
            break;
        case OP_NONE:
        case OP_NEWTRUE:
        case OP_NEWFALSE:
        case OP_EMPTY_TUPLE:
        case OP_EMPTY_DICT:
            next = pos + 1;
            break;
        case OP_MARK:
            next = pos + 1;
            push = 0;
            break;
        case OP_MEMOIZE:
        case OP_BINPUT:
        case OP_LONG_BINPUT: {
            next = pos + (op == OP_MEMOIZE ? 1 : op == OP_BINPUT ? 2 : 5);
            if (next > end || !dense || PyList_GET_SIZE(stack) <= fence)
                goto done;
            Py_ssize_t idx = op == OP_MEMOIZE ? m->stored + m->npending
                             : op == OP_BINPUT ? buf[pos + 1]
                                               : (Py_ssize_t)u4(buf + pos + 1);
            if (idx != m->stored + m->npending)
                goto done;
            put_value = top_offset(stack);
            if (put_value < 0)
                goto done;
            push = 0;
            memo_put = 1;
            standalone = 1;
            break;
        }
        case OP_BINGET:
        case OP_LONG_BINGET: {
            next = pos + (op == OP_BINGET ? 2 : 5);
            if (next > end)
                goto done;
            Py_ssize_t idx = op == OP_BINGET ? buf[pos + 1] : (Py_ssize_t)u4(buf + pos + 1);
            if (idx >= m->stored + m->npending)
                goto done;
            if (memo_read(m, idx, &got) < 0) {
                failed = 1;
                goto done;
            }
            if (got < 0) {
                /* A node (`_Memo.nodes[~v]`): pushed itself. */
                if (nodes == NULL) {
                    nodes = PyObject_GetAttr(memo_obj, str_nodes);
                    if (nodes == NULL) {
                        failed = 1;
                        goto done;
                    }
                }
                Py_ssize_t ni = (Py_ssize_t)(-(got + 1));
                if (!PyList_CheckExact(nodes) || ni >= PyList_GET_SIZE(nodes))
                    goto done;
                node = PyList_GET_ITEM(nodes, ni);
            }
            push = 0;
            break;
        }
        default:
            goto done;
        }
        if (next > end)
            goto done;

        /* The step: one item of the budget, as Python's `for _ in steps`. */
        PyObject *step = next_step(steps);
        if (step == NULL) {
            if (PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
                    failed = 1;
                    goto done;
                }
                PyErr_Clear();
            }
            goto done; /* the budget is spent: Python reports it at `pos` */
        }
        Py_DECREF(step);

        if (push && push_offset(stack, at) < 0) {
            failed = 1;
            goto done;
        }
        if (node != NULL) {
            Py_INCREF(node);
            int rc = 0;
            if (Py_IS_TYPE(node, (PyTypeObject *)counted)) {
                /* `_Memo.get`: a global's references are counted. */
                PyObject *refs = PyObject_GetAttr(node, str_refs);
                PyObject *more = refs == NULL ? NULL : PyNumber_Add(refs, int_one);
                Py_XDECREF(refs);
                rc = more == NULL ? -1 : PyObject_SetAttr(node, str_refs, more);
                Py_XDECREF(more);
            }
            if (rc == 0)
                rc = PyList_Append(stack, node);
            Py_DECREF(node);
            if (rc < 0) {
                failed = 1;
                goto done;
            }
        }
        else if (got >= 0) {
            PyObject *item = PyLong_FromLongLong(got);
            if (item == NULL || PyList_Append(stack, item) < 0) {
                Py_XDECREF(item);
                failed = 1;
                goto done;
            }
            Py_DECREF(item);
        }
        if (op == OP_MARK) {
            fence = PyList_GET_SIZE(stack);
            PyObject *mark = PyLong_FromSsize_t(fence);
            if (mark == NULL || PyList_Append(marks, mark) < 0) {
                Py_XDECREF(mark);
                failed = 1;
                goto done;
            }
            Py_DECREF(mark);
        }
        if (memo_put) {
            if (memo_append(m, put_value) < 0) {
                failed = 1;
                goto done;
            }
            appended += standalone;
        }
        start = at;
        pos = next;
        if ((++taken & 0xffff) == 0) {
            /* A long run: let other threads (the signature's hashing) and
             * signal handlers in, as the interpreter would between steps. */
            Py_BEGIN_ALLOW_THREADS
            Py_END_ALLOW_THREADS
            if (PyErr_CheckSignals() < 0) {
                failed = 1;
                goto done;
            }
        }
    }

done:
    Py_XDECREF(nodes);
    PyBuffer_Release(&view);
    if (failed) {
        /* Keep what was written, then report the error. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        (void)memo_flush(m);
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (memo_flush(m) < 0) {
        return NULL;
    }
    if (appended) {
        PyObject *old = PyObject_GetAttr(memo_obj, str_appended);
        if (old == NULL)
            return NULL;
        PyObject *delta = PyLong_FromSsize_t(appended);
        PyObject *sum = delta == NULL ? NULL : PyNumber_Add(old, delta);
        Py_DECREF(old);
        Py_XDECREF(delta);
        if (sum == NULL)
            return NULL;
        int rc = PyObject_SetAttr(memo_obj, str_appended, sum);
        Py_DECREF(sum);
        if (rc < 0)
            return NULL;
    }
    return pair(pos, start);

error:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL, run_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    if (str_refs == NULL) {
        str_appended = PyUnicode_InternFromString("appended");
        str_frombytes = PyUnicode_InternFromString("frombytes");
        str_nodes = PyUnicode_InternFromString("nodes");
        str_refs = PyUnicode_InternFromString("refs");
        int_one = PyLong_FromLong(1);
        if (!str_appended || !str_frombytes || !str_nodes || !str_refs || !int_one)
            return -1;
    }
    PyObject *table = Py_BuildValue(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
        "MARK", OP_MARK, "EMPTY_TUPLE", OP_EMPTY_TUPLE, "EMPTY_DICT", OP_EMPTY_DICT,
        "BINFLOAT", OP_BINFLOAT, "BININT", OP_BININT, "BININT1", OP_BININT1,
        "BININT2", OP_BININT2, "NONE", OP_NONE, "BINUNICODE", OP_BINUNICODE,
        "SHORT_BINBYTES", OP_SHORT_BINBYTES, "BINGET", OP_BINGET, "LONG_BINGET", OP_LONG_BINGET,
        "BINPUT", OP_BINPUT, "LONG_BINPUT", OP_LONG_BINPUT, "NEWTRUE", OP_NEWTRUE,
        "NEWFALSE", OP_NEWFALSE, "SHORT_BINUNICODE", OP_SHORT_BINUNICODE, "MEMOIZE", OP_MEMOIZE);
    if (table == NULL)
        return -1;
    if (PyModule_AddObject(module, "OPCODES", table) < 0) {
        Py_DECREF(table);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "safeload._machine._fastwalk",
    .m_doc = "The pickle walker's hot data opcodes in C (optional; walker.py is the reference).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__fastwalk(void)
{
    return PyModuleDef_Init(&moduledef);
}
