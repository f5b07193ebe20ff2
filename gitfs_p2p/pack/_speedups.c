/*
 * Compiled twins of pure-Python functions of gitfs_p2p/pack/, for speed only:
 * each gives exactly what its Python reference gives, and the tests compare them.
 *
 * create_delta: the pinned delta encoder of delta.py (create_delta_py).
 * tree_scan:    the per-entry part of fsck.py's fsck_tree (_tree_scan_py).
 * apply_delta:  delta.py's bounded decoder (apply_delta_py) for deltas it accepts; None for
 *               any other, so that the reference says what is wrong.
 * tree_entries: objects.py's tree_entries and parse_tree for a well-formed tree; None for
 *               any other, so that the careful Python reader says what is wrong with it.
 * tree_changes: commitpack.py's tree_changes_py (the entries two trees do not share) for
 *               two well-formed trees in git's order with unique names; None for any other.
 *
 * The delta encoder follows create_delta_py step for step (common prefix and suffix,
 * 16-byte aligned blocks of the base's middle with the first 4 offsets each, leftmost
 * longest forward match, backward extension into the pending literal, copies split at
 * 0x10000, inserts at 0x7f).  tests/packs/ (test_delta.py, test_trees.py, test_selection.py)
 * compare each function with its reference on generated input; the pack-format test vectors
 * compare whole packs.
 * Decoding stays in Python, where it is bounded and checked (apply_delta).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#define BLOCK 16
#define MAX_COPY 0x10000
#define MAX_INSERT 0x7f
#define CANDIDATES 4

/* One indexed block: the first CANDIDATES offsets it occurs at (count 0: a free slot).
   Offsets fit in 32 bits: longer bases go to the Python reference (delta.py). */
typedef struct {
    uint32_t offsets[CANDIDATES];
    uint32_t count;
} slot_t;

typedef struct {
    unsigned char *buf;
    Py_ssize_t len, cap;
} out_t;

static int out_reserve(out_t *o, Py_ssize_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more)
        cap *= 2;
    unsigned char *p = PyMem_Realloc(o->buf, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = p;
    o->cap = cap;
    return 0;
}

static int out_varint(out_t *o, uint64_t n)
{
    if (out_reserve(o, 10) < 0)
        return -1;
    for (;;) {
        unsigned char byte = n & 0x7f;
        n >>= 7;
        if (n) {
            o->buf[o->len++] = byte | 0x80;
        } else {
            o->buf[o->len++] = byte;
            return 0;
        }
    }
}

static int out_insert(out_t *o, const unsigned char *data, Py_ssize_t n)
{
    /* one length byte per MAX_INSERT bytes */
    if (out_reserve(o, n + n / MAX_INSERT + 1) < 0)
        return -1;
    while (n > 0) {
        Py_ssize_t chunk = n < MAX_INSERT ? n : MAX_INSERT;
        o->buf[o->len++] = (unsigned char)chunk;
        memcpy(o->buf + o->len, data, (size_t)chunk);
        o->len += chunk;
        data += chunk;
        n -= chunk;
    }
    return 0;
}

static int out_copy(out_t *o, uint64_t offset, uint64_t length)
{
    while (length) {
        uint64_t size = length < MAX_COPY ? length : MAX_COPY;
        unsigned char op = 0x80, args[7];
        int nargs = 0;
        for (int i = 0; i < 4; i++) {
            unsigned char byte = (offset >> (8 * i)) & 0xff;
            if (byte) {
                op |= 1 << i;
                args[nargs++] = byte;
            }
        }
        for (int i = 0; i < 3; i++) {
            unsigned char byte = (size >> (8 * i)) & 0xff;
            if (byte) {
                op |= 0x10 << i;
                args[nargs++] = byte;
            }
        }
        if (out_reserve(o, 1 + nargs) < 0)
            return -1;
        o->buf[o->len++] = op;
        memcpy(o->buf + o->len, args, (size_t)nargs);
        o->len += nargs;
        offset += size;
        length -= size;
    }
    return 0;
}

static inline uint64_t block_hash(const unsigned char *p)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
    uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL) * 0xc2b2ae3d27d4eb4fULL;
    return h ^ (h >> 29);
}

/* Length of the common run of a[0..] and b[0..], at most limit. */
static inline Py_ssize_t run_forward(const unsigned char *a, const unsigned char *b, Py_ssize_t limit)
{
    Py_ssize_t n = 0;
    while (n + 8 <= limit) {
        uint64_t x, y;
        memcpy(&x, a + n, 8);
        memcpy(&y, b + n, 8);
        if (x != y)
            break;
        n += 8;
    }
    while (n < limit && a[n] == b[n])
        n++;
    return n;
}

/* Length of the common suffix of a[..la) and b[..lb), at most limit. */
static inline Py_ssize_t run_backward(const unsigned char *a, Py_ssize_t la, const unsigned char *b, Py_ssize_t lb,
                                      Py_ssize_t limit)
{
    Py_ssize_t n = 0;
    while (n < limit && a[la - 1 - n] == b[lb - 1 - n])
        n++;
    return n;
}

static PyObject *encode(const unsigned char *base, Py_ssize_t lb, const unsigned char *target, Py_ssize_t lt)
{
    out_t o = {NULL, 0, 0};
    slot_t *table = NULL;
    PyObject *result = NULL;

    if (out_varint(&o, (uint64_t)lb) < 0 || out_varint(&o, (uint64_t)lt) < 0)
        goto done;
    Py_ssize_t shortest = lb < lt ? lb : lt;
    Py_ssize_t prefix = run_forward(base, target, shortest);
    Py_ssize_t suffix = run_backward(base, lb, target, lt, shortest - prefix);
    Py_ssize_t t_end = lt - suffix;
    if (prefix && out_copy(&o, 0, (uint64_t)prefix) < 0)
        goto done;

    Py_ssize_t b_end = lb - suffix;
    Py_ssize_t nblocks = b_end - BLOCK + 1 > prefix ? (b_end - BLOCK - prefix) / BLOCK + 1 : 0;
    size_t mask = 0;
    if (nblocks) {
        size_t size = 16;
        while (size < (size_t)nblocks * 2)
            size *= 2;
        mask = size - 1;
        table = PyMem_Calloc(size, sizeof(slot_t));
        if (table == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t off = prefix; off + BLOCK <= b_end; off += BLOCK) {
            const unsigned char *key = base + off;
            size_t i = block_hash(key) & mask;
            for (;;) {
                slot_t *s = &table[i];
                if (s->count == 0) {
                    s->offsets[0] = (uint32_t)off;
                    s->count = 1;
                    break;
                }
                if (memcmp(base + s->offsets[0], key, BLOCK) == 0) {
                    if (s->count < CANDIDATES)
                        s->offsets[s->count++] = (uint32_t)off;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    Py_ssize_t lit_start = prefix, t = prefix, last = t_end - BLOCK;
    while (nblocks && t <= last) {
        const unsigned char *key = target + t;
        size_t i = block_hash(key) & mask;
        slot_t *hit = NULL;
        for (;;) {
            slot_t *s = &table[i];
            if (s->count == 0)
                break;
            if (memcmp(base + s->offsets[0], key, BLOCK) == 0) {
                hit = s;
                break;
            }
            i = (i + 1) & mask;
        }
        if (hit == NULL) {
            t++;
            continue;
        }
        Py_ssize_t s = hit->offsets[0], length = -1;
        for (uint32_t c = 0; c < hit->count; c++) {
            Py_ssize_t cand = hit->offsets[c];
            Py_ssize_t limit = lb - cand < t_end - t ? lb - cand : t_end - t;
            Py_ssize_t n = run_forward(base + cand, target + t, limit);
            if (n > length) {
                s = cand;
                length = n;
            }
        }
        while (t > lit_start && s > 0 && base[s - 1] == target[t - 1]) {
            s--;
            t--;
            length++;
        }
        if (t > lit_start && out_insert(&o, target + lit_start, t - lit_start) < 0)
            goto done;
        if (out_copy(&o, (uint64_t)s, (uint64_t)length) < 0)
            goto done;
        t += length;
        lit_start = t;
    }
    if (lit_start < t_end && out_insert(&o, target + lit_start, t_end - lit_start) < 0)
        goto done;
    if (suffix && out_copy(&o, (uint64_t)(lb - suffix), (uint64_t)suffix) < 0)
        goto done;
    result = PyBytes_FromStringAndSize((const char *)o.buf, o.len);
done:
    PyMem_Free(table);
    PyMem_Free(o.buf);
    return result;
}

static PyObject *create_delta(PyObject *self, PyObject *args)
{
    Py_buffer base, target;
    if (!PyArg_ParseTuple(args, "y*y*:create_delta", &base, &target))
        return NULL;
    if (base.len > (Py_ssize_t)UINT32_MAX - BLOCK) {
        PyBuffer_Release(&base);
        PyBuffer_Release(&target);
        PyErr_SetString(PyExc_OverflowError, "base too long for the compiled encoder");
        return NULL;
    }
    PyObject *result = encode(base.buf, base.len, target.buf, target.len);
    PyBuffer_Release(&base);
    PyBuffer_Release(&target);
    return result;
}

/* -- trees ------------------------------------------------------------------------------ */

#define S_IFMT_ 0170000
#define S_IFREG_ 0100000
#define S_IFLNK_ 0120000
#define S_IFDIR_ 0040000

static const char HEX[] = "0123456789abcdef";

/* One entry of a tree, `[0-7]+ SP [^NUL]+ NUL <20 bytes>` (objects.py's _TREE_ENTRY). */
typedef struct {
    uint32_t mode; /* octal, 32 bits, as objects._mode */
    const unsigned char *mode_at, *name, *id;
    Py_ssize_t mode_len, name_len;
} tree_entry_t;

/* What objects.mode_kind says of a mode: kind_blob, kind_tree or kind_gitlink (borrowed). */
static PyObject *entry_kind(uint32_t mode, PyObject *kind_blob, PyObject *kind_tree, PyObject *kind_gitlink)
{
    switch (mode & S_IFMT_) {
    case S_IFREG_:
    case S_IFLNK_:
        return kind_blob;
    case S_IFDIR_:
        return kind_tree;
    default:
        return kind_gitlink;
    }
}

/* The 40 lower-case hex digits of a 20-byte id. */
static void write_hex(char *out, const unsigned char *id)
{
    for (int i = 0; i < 20; i++) {
        out[2 * i] = HEX[id[i] >> 4];
        out[2 * i + 1] = HEX[id[i] & 15];
    }
}

/* Reads the entry at *pos and moves past it; -1 when it is not well formed. */
static int next_entry(const unsigned char **pos, const unsigned char *end, tree_entry_t *e)
{
    const unsigned char *p = *pos, *q = p;
    uint32_t mode = 0;
    while (q < end && *q >= '0' && *q <= '7') {
        mode = (mode << 3) + (uint32_t)(*q - '0');
        q++;
    }
    if (q == p || q >= end || *q != ' ')
        return -1;
    const unsigned char *name = q + 1;
    const unsigned char *nul = memchr(name, 0, (size_t)(end - name));
    if (nul == NULL || nul == name || end - nul - 1 < 20)
        return -1;
    e->mode = mode;
    e->mode_at = p;
    e->mode_len = q - p;
    e->name = name;
    e->name_len = nul - name;
    e->id = nul + 1;
    *pos = nul + 21;
    return 0;
}

/* tree_entries(raw, entry_type, blob, tree, gitlink, raw_form) -> list, or None when the
   tree is not well formed: every entry `[0-7]+ SP [^NUL]+ NUL <20 bytes>`, as objects.py's
   _WELL_FORMED_TREE.  The mode is read as objects._mode (octal, 32 bits), its kind as
   objects.mode_kind.  Entries are entry_type(name, mode, hex id, kind) (objects.TreeEntry),
   or with raw_form entry_type(mode bytes, mode, name, binary id, kind) (RawTreeEntry). */
static PyObject *tree_entries(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    PyTypeObject *entry_type;
    PyObject *kind_blob, *kind_tree, *kind_gitlink;
    int raw_form;
    if (!PyArg_ParseTuple(args, "y*O!OOOp:tree_entries", &raw, &PyType_Type, &entry_type, &kind_blob, &kind_tree,
                          &kind_gitlink, &raw_form))
        return NULL;
    if (!PyType_IsSubtype(entry_type, &PyTuple_Type)) {
        PyBuffer_Release(&raw);
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple type");
        return NULL;
    }
    const Py_ssize_t width = raw_form ? 5 : 4;
    const unsigned char *p = raw.buf, *end = p + raw.len;
    PyObject *out = PyList_New(0);
    PyObject *last_mode = NULL, *last_mode_bytes = NULL;
    const unsigned char *last_mode_at = NULL;
    Py_ssize_t last_mode_len = 0;
    if (out == NULL)
        goto fail;
    while (p < end) {
        tree_entry_t e;
        if (next_entry(&p, end, &e) < 0)
            goto malformed;
        const uint32_t mode = e.mode;
        const unsigned char *mode_at = e.mode_at, *name = e.name, *id = e.id;
        const Py_ssize_t mode_len = e.mode_len;
        const unsigned char *nul = name + e.name_len;

        PyObject *kind = entry_kind(mode, kind_blob, kind_tree, kind_gitlink);
        /* Trees repeat a handful of modes: keep the last one's objects. */
        if (last_mode == NULL || mode_len != last_mode_len || memcmp(mode_at, last_mode_at, (size_t)mode_len) != 0) {
            Py_XDECREF(last_mode);
            Py_XDECREF(last_mode_bytes);
            last_mode_bytes = NULL;
            last_mode = PyLong_FromUnsignedLong(mode);
            if (last_mode == NULL)
                goto fail;
            if (raw_form) {
                last_mode_bytes = PyBytes_FromStringAndSize((const char *)mode_at, mode_len);
                if (last_mode_bytes == NULL)
                    goto fail;
            }
            last_mode_at = mode_at;
            last_mode_len = mode_len;
        }
        PyObject *name_obj = PyBytes_FromStringAndSize((const char *)name, nul - name);
        PyObject *id_obj = PyBytes_FromStringAndSize(raw_form ? (const char *)id : NULL, raw_form ? 20 : 40);
        PyObject *entry = entry_type->tp_alloc(entry_type, width);
        if (name_obj == NULL || id_obj == NULL || entry == NULL) {
            Py_XDECREF(name_obj);
            Py_XDECREF(id_obj);
            Py_XDECREF(entry);
            goto fail;
        }
        Py_INCREF(last_mode);
        Py_INCREF(kind);
        if (raw_form) {
            Py_INCREF(last_mode_bytes);
            PyTuple_SET_ITEM(entry, 0, last_mode_bytes);
            PyTuple_SET_ITEM(entry, 1, last_mode);
            PyTuple_SET_ITEM(entry, 2, name_obj);
            PyTuple_SET_ITEM(entry, 3, id_obj);
            PyTuple_SET_ITEM(entry, 4, kind);
        } else {
            write_hex(PyBytes_AS_STRING(id_obj), id);
            PyTuple_SET_ITEM(entry, 0, name_obj);
            PyTuple_SET_ITEM(entry, 1, last_mode);
            PyTuple_SET_ITEM(entry, 2, id_obj);
            PyTuple_SET_ITEM(entry, 3, kind);
        }
        int rc = PyList_Append(out, entry);
        Py_DECREF(entry);
        if (rc < 0)
            goto fail;
    }
    Py_XDECREF(last_mode);
    Py_XDECREF(last_mode_bytes);
    PyBuffer_Release(&raw);
    return out;
malformed:
    Py_XDECREF(last_mode);
    Py_XDECREF(last_mode_bytes);
    Py_DECREF(out);
    PyBuffer_Release(&raw);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(last_mode);
    Py_XDECREF(last_mode_bytes);
    Py_XDECREF(out);
    PyBuffer_Release(&raw);
    return NULL;
}

/* -- delta decoding ---------------------------------------------------------------------- */

static int read_varint(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, uint64_t *value)
{
    uint64_t v = 0;
    int shift = 0;
    for (;;) {
        if (*pos >= n)
            return -1;
        unsigned char byte = d[(*pos)++];
        v |= (uint64_t)(byte & 0x7f) << shift;
        shift += 7;
        if (!(byte & 0x80)) {
            *value = v;
            return 0;
        }
        if (shift > 63)
            return -1;
    }
}

/* apply_delta(base, delta, max_size) -> bytes, or None for any delta delta.py's apply_delta
   refuses (max_size < 0: no bound); the caller then runs the reference, which says why. */
static PyObject *apply_delta(PyObject *self, PyObject *args)
{
    Py_buffer base, delta;
    long long max_size;
    if (!PyArg_ParseTuple(args, "y*y*L:apply_delta", &base, &delta, &max_size))
        return NULL;
    const unsigned char *d = delta.buf, *b = base.buf;
    Py_ssize_t n = delta.len, pos = 0;
    uint64_t base_size, result_size;
    PyObject *out = NULL;
    if (read_varint(d, n, &pos, &base_size) < 0 || read_varint(d, n, &pos, &result_size) < 0)
        goto refused;
    if (base_size != (uint64_t)base.len)
        goto refused;
    if (max_size >= 0 && result_size > (uint64_t)max_size)
        goto refused;
    /* No instruction byte yields more than 0x10000 bytes: a larger claim cannot be met. */
    if (result_size > (uint64_t)n * 0x10000 || result_size > (uint64_t)PY_SSIZE_T_MAX)
        goto refused;
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)result_size);
    if (out == NULL)
        goto fail;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    uint64_t len = 0;
    while (pos < n) {
        unsigned char op = d[pos++];
        if (op & 0x80) {
            uint64_t offset = 0, size = 0;
            for (int i = 0; i < 4; i++) {
                if (op & (1 << i)) {
                    if (pos >= n)
                        goto refused;
                    offset |= (uint64_t)d[pos++] << (8 * i);
                }
            }
            for (int i = 0; i < 3; i++) {
                if (op & (0x10 << i)) {
                    if (pos >= n)
                        goto refused;
                    size |= (uint64_t)d[pos++] << (8 * i);
                }
            }
            if (size == 0)
                size = 0x10000;
            if (offset + size > (uint64_t)base.len)
                goto refused;
            if (len + size > result_size)
                goto refused;
            memcpy(o + len, b + offset, (size_t)size);
            len += size;
        } else if (op) {
            if (pos + op > n)
                goto refused;
            if (len + op > result_size)
                goto refused;
            memcpy(o + len, d + pos, op);
            pos += op;
            len += op;
        } else {
            goto refused;
        }
    }
    if (len != result_size)
        goto refused;
    PyBuffer_Release(&base);
    PyBuffer_Release(&delta);
    return out;
refused:
    Py_XDECREF(out);
    PyBuffer_Release(&base);
    PyBuffer_Release(&delta);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&base);
    PyBuffer_Release(&delta);
    return NULL;
}

/* -- fsck's scan of a tree ---------------------------------------------------------------- */

/* How far back a directory's entry looks for a file of the same name (past names that extend
   it with a byte below '/', which sort between the two); a tree needing more is not simple. */
#define SAME_NAME_SCAN 64
/* Distinct modes tree_scan remembers (more: it asks its dictionary). */
#define SEEN_MODES 8

typedef struct {
    const unsigned char *name;
    Py_ssize_t len;
    int dir;
} tree_name_t;

/* Byte order of name1 + ("/" if dir1) against name2 + ("/" if dir2), as Python compares bytes. */
static int key_cmp(const tree_name_t *a, const tree_name_t *b)
{
    Py_ssize_t la = a->len + (a->dir ? 1 : 0), lb = b->len + (b->dir ? 1 : 0);
    Py_ssize_t n = la < lb ? la : lb;
    /* the names' common length first, at memcmp's speed; then at most the key's last byte */
    Py_ssize_t names = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->name, b->name, (size_t)names);
    if (c)
        return c < 0 ? -1 : 1;
    for (Py_ssize_t i = names; i < n; i++) {
        unsigned char ca = i < a->len ? a->name[i] : '/';
        unsigned char cb = i < b->len ? b->name[i] : '/';
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return la < lb ? -1 : la > lb ? 1 : 0;
}

static int name_cmp(const void *x, const void *y)
{
    const tree_name_t *a = x, *b = y;
    Py_ssize_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->name, b->name, (size_t)n);
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

/* tree_scan(raw, special_first) -> (null_sha1, {mode bytes: mode & 0xffff}, special, orderly),
   or None when the tree is not well formed (see tree_entries).  fsck.py's _tree_scan_py is
   the reference: special lists the indices of entries whose name starts with a byte of
   special_first or holds '/', '~', '\\' or a non-ASCII byte; orderly is true when the names
   are unique and the keys (a directory's name + "/") never decrease. */
static PyObject *tree_scan(PyObject *self, PyObject *args)
{
    Py_buffer raw, first;
    if (!PyArg_ParseTuple(args, "y*y*:tree_scan", &raw, &first))
        return NULL;
    const unsigned char *p = raw.buf, *end = p + raw.len;
    const unsigned char *first_set = first.buf;
    Py_ssize_t first_len = first.len;
    PyObject *modes = PyDict_New(), *special = PyList_New(0), *result = NULL;
    tree_name_t *names = NULL;
    Py_ssize_t count = 0, cap = 0;
    int null_sha1 = 0, orderly = 1, must_sort = 0;
    struct {
        const unsigned char *name;
        Py_ssize_t len;
    } seen_mode[SEEN_MODES];
    int seen_modes = 0;
    if (modes == NULL || special == NULL)
        goto done;
    while (p < end) {
        tree_entry_t e;
        if (next_entry(&p, end, &e) < 0)
            goto malformed;
        int zero = 1;
        for (int i = 0; i < 20; i++) {
            if (e.id[i]) {
                zero = 0;
                break;
            }
        }
        null_sha1 |= zero;
        /* A tree has few distinct modes: those seen are remembered here, so that a mode
           makes its key (a bytes object) once, not once per entry. */
        int known = 0;
        for (int i = 0; i < seen_modes && !known; i++)
            known = seen_mode[i].len == e.mode_len && memcmp(seen_mode[i].name, e.mode_at, (size_t)e.mode_len) == 0;
        if (!known) {
            PyObject *mode_key = PyBytes_FromStringAndSize((const char *)e.mode_at, e.mode_len);
            if (mode_key == NULL)
                goto done;
            int present = PyDict_Contains(modes, mode_key);
            if (present == 0) {
                PyObject *value = PyLong_FromUnsignedLong(e.mode & 0xffff);
                present = value == NULL ? -1 : PyDict_SetItem(modes, mode_key, value);
                Py_XDECREF(value);
            }
            Py_DECREF(mode_key);
            if (present < 0)
                goto done;
            if (seen_modes < SEEN_MODES) {
                seen_mode[seen_modes].name = e.mode_at;
                seen_mode[seen_modes].len = e.mode_len;
                seen_modes++;
            }
        }

        int odd = memchr(first_set, e.name[0], (size_t)first_len) != NULL;
        for (Py_ssize_t i = 0; !odd && i < e.name_len; i++) {
            unsigned char c = e.name[i];
            odd = c == '/' || c == '~' || c == '\\' || c >= 0x80;
        }
        if (odd) {
            PyObject *index = PyLong_FromSsize_t(count);
            int rc = index == NULL ? -1 : PyList_Append(special, index);
            Py_XDECREF(index);
            if (rc < 0)
                goto done;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            tree_name_t *grown = PyMem_Realloc(names, (size_t)cap * sizeof(tree_name_t));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            names = grown;
        }
        names[count].name = e.name;
        names[count].len = e.name_len;
        names[count].dir = (e.mode & S_IFMT_) == S_IFDIR_;
        int order = count ? key_cmp(&names[count - 1], &names[count]) : -1;
        if (order > 0)
            orderly = 0;
        else if (order == 0)
            must_sort = 1;  /* a key twice: the same name, or a directory's and a file's "name/" */
        if (orderly && names[count].dir && !must_sort) {
            /* Keys so far strictly increasing: a name can only repeat as a file's and a
               directory's, the file's sorting before, past names that extend it with a byte
               below '/'. */
            const tree_name_t *d = &names[count];
            for (Py_ssize_t j = count - 1, steps = 0; j >= 0; j--, steps++) {
                const tree_name_t *k = &names[j];
                if (k->len < d->len || memcmp(k->name, d->name, (size_t)d->len) != 0)
                    break;
                if (k->len == d->len) {
                    orderly = 0;
                    break;
                }
                if (steps == SAME_NAME_SCAN) {
                    must_sort = 1;  /* too far to look back: the sort below decides */
                    break;
                }
                if (k->name[d->len] >= '/')
                    break;
            }
        }
        count++;
    }
    if (orderly && must_sort && count > 1) {
        qsort(names, (size_t)count, sizeof(tree_name_t), name_cmp);
        for (Py_ssize_t i = 1; i < count && orderly; i++)
            if (name_cmp(&names[i - 1], &names[i]) == 0)
                orderly = 0;
    }
    result = Py_BuildValue("(OOOO)", null_sha1 ? Py_True : Py_False, modes, special, orderly ? Py_True : Py_False);
    goto done;
malformed:
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(modes);
    Py_XDECREF(special);
    PyMem_Free(names);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&first);
    return result;
}

/* -- the entries two trees do not share ------------------------------------------------- */


typedef struct {
    tree_entry_t e;
    tree_name_t key;
} sorted_entry_t;

/* The entries of raw into *out (PyMem_Free it), and 1, when raw is well formed (see
   tree_entries), its keys (a directory's name + "/") strictly increase and no name is both a
   file's and a directory's; 0 (nothing to free) otherwise; -1 with an exception set. */
static int read_sorted(const Py_buffer *raw, sorted_entry_t **out, Py_ssize_t *count)
{
    const unsigned char *p = raw->buf, *end = p + raw->len;
    sorted_entry_t *v = NULL;
    Py_ssize_t n = 0, cap = 0;
    while (p < end) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            sorted_entry_t *grown = PyMem_Realloc(v, (size_t)cap * sizeof(sorted_entry_t));
            if (grown == NULL) {
                PyMem_Free(v);
                PyErr_NoMemory();
                return -1;
            }
            v = grown;
        }
        sorted_entry_t *s = &v[n];
        if (next_entry(&p, end, &s->e) < 0)
            goto not_simple;
        s->key.name = s->e.name;
        s->key.len = s->e.name_len;
        s->key.dir = (s->e.mode & S_IFMT_) == S_IFDIR_;
        if (n && key_cmp(&v[n - 1].key, &s->key) >= 0)
            goto not_simple;
        if (s->key.dir) {
            /* A file named like this directory sorts before it, past names that extend the
               name with a byte below '/'. */
            const Py_ssize_t len = s->key.len;
            for (Py_ssize_t j = n - 1, steps = 0; j >= 0; j--, steps++) {
                const tree_name_t *k = &v[j].key;
                if (k->len < len || memcmp(k->name, s->key.name, (size_t)len) != 0)
                    break;
                if (k->len == len || steps == SAME_NAME_SCAN)
                    goto not_simple;
                if (k->name[len] >= '/')
                    break;
            }
        }
        n++;
    }
    *out = v;
    *count = n;
    return 1;
not_simple:
    PyMem_Free(v);
    return 0;
}

/* entry_type(name, mode, hex id, kind) of one entry (objects.TreeEntry). */
static PyObject *new_tree_entry(PyTypeObject *entry_type, const tree_entry_t *e, PyObject *kind_blob,
                                PyObject *kind_tree, PyObject *kind_gitlink)
{
    PyObject *kind = entry_kind(e->mode, kind_blob, kind_tree, kind_gitlink);
    PyObject *name = PyBytes_FromStringAndSize((const char *)e->name, e->name_len);
    PyObject *mode = PyLong_FromUnsignedLong(e->mode);
    PyObject *id = PyBytes_FromStringAndSize(NULL, 40);
    PyObject *entry = entry_type->tp_alloc(entry_type, 4);
    if (name == NULL || mode == NULL || id == NULL || entry == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(mode);
        Py_XDECREF(id);
        Py_XDECREF(entry);
        return NULL;
    }
    write_hex(PyBytes_AS_STRING(id), e->id);
    Py_INCREF(kind);
    PyTuple_SET_ITEM(entry, 0, name);
    PyTuple_SET_ITEM(entry, 1, mode);
    PyTuple_SET_ITEM(entry, 2, id);
    PyTuple_SET_ITEM(entry, 3, kind);
    return entry;
}

static int append_tree_entry(PyObject *list, PyTypeObject *entry_type, const tree_entry_t *e, PyObject *kind_blob,
                             PyObject *kind_tree, PyObject *kind_gitlink)
{
    PyObject *entry = new_tree_entry(entry_type, e, kind_blob, kind_tree, kind_gitlink);
    if (entry == NULL)
        return -1;
    int rc = PyList_Append(list, entry);
    Py_DECREF(entry);
    return rc;
}

/* tree_changes(raw_a, raw_b, entry_type, blob, tree, gitlink) -> (only_a, only_b), or None
   when either tree is not simple (see read_sorted).  only_a lists, in a's order, a's entries
   that b does not hold with the same name, mode and id; only_b the same of b's.  Entries are
   entry_type(name, mode, hex id, kind), as tree_entries makes them. */
static PyObject *tree_changes(PyObject *self, PyObject *args)
{
    Py_buffer raw_a, raw_b;
    PyTypeObject *entry_type;
    PyObject *kind_blob, *kind_tree, *kind_gitlink;
    if (!PyArg_ParseTuple(args, "y*y*O!OOO:tree_changes", &raw_a, &raw_b, &PyType_Type, &entry_type, &kind_blob,
                          &kind_tree, &kind_gitlink))
        return NULL;
    sorted_entry_t *a = NULL, *b = NULL;
    Py_ssize_t na = 0, nb = 0;
    PyObject *only_a = NULL, *only_b = NULL, *result = NULL;
    if (!PyType_IsSubtype(entry_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple type");
        goto done;
    }
    int rc = read_sorted(&raw_a, &a, &na);
    if (rc > 0)
        rc = read_sorted(&raw_b, &b, &nb);
    if (rc < 0)
        goto done;
    if (rc == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    only_a = PyList_New(0);
    only_b = PyList_New(0);
    if (only_a == NULL || only_b == NULL)
        goto done;
    Py_ssize_t i = 0, j = 0;
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : key_cmp(&a[i].key, &b[j].key);
        if (c == 0 && a[i].e.mode == b[j].e.mode && memcmp(a[i].e.id, b[j].e.id, 20) == 0) {
            i++;
            j++;
            continue;
        }
        if (c <= 0 && append_tree_entry(only_a, entry_type, &a[i++].e, kind_blob, kind_tree, kind_gitlink) < 0)
            goto done;
        if (c >= 0 && append_tree_entry(only_b, entry_type, &b[j++].e, kind_blob, kind_tree, kind_gitlink) < 0)
            goto done;
    }
    result = PyTuple_Pack(2, only_a, only_b);
done:
    Py_XDECREF(only_a);
    Py_XDECREF(only_b);
    PyMem_Free(a);
    PyMem_Free(b);
    PyBuffer_Release(&raw_a);
    PyBuffer_Release(&raw_b);
    return result;
}

/* ---- connectivity: checker.Checker.connected's inner loop over one tree's entries ----
 *
 * The twin of checker._connect_tree_py (the reference, same arguments, same results):
 * entries are RawTreeEntry tuples (mode_bytes, mode, name, id, kind) of a tree of the
 * pack; objects maps binary id -> (type, content) for the pack's objects; parent_maps
 * is a list of dicts name -> (kind, id) (the parents' trees at the same path).  Each
 * entry found in the pack goes into `reached` (a set) and, for a tree, onto `queue` as
 * (id, [the parents' subtrees of that name]); one found in neither the pack nor a
 * parent map under its name with the same (kind, id) goes onto `outside` as
 * (tree_id, id, kind).  Returns -1, or the index of the first entry whose object in the
 * pack has another type than its kind says (the caller says why).
 */
static PyObject *connect_tree(PyObject *self, PyObject *args)
{
    PyObject *entries, *objects, *parent_maps, *reached, *queue, *outside, *tree_id;
    PyObject *kind_blob, *kind_tree, *kind_gitlink, *type_blob, *type_tree;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!OOOOOO:connect_tree", &PyList_Type, &entries, &PyDict_Type, &objects,
                          &PyList_Type, &parent_maps, &PySet_Type, &reached, &PyList_Type, &queue, &PyList_Type,
                          &outside, &tree_id, &kind_blob, &kind_tree, &kind_gitlink, &type_blob, &type_tree))
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(entries), nmaps = PyList_GET_SIZE(parent_maps);
    for (Py_ssize_t m = 0; m < nmaps; m++) {
        if (!PyDict_Check(PyList_GET_ITEM(parent_maps, m))) {
            PyErr_SetString(PyExc_TypeError, "parent_maps must hold dicts");
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(entries, i);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 5) {
            PyErr_SetString(PyExc_TypeError, "entries must be RawTreeEntry tuples");
            return NULL;
        }
        PyObject *name = PyTuple_GET_ITEM(e, 2), *oid = PyTuple_GET_ITEM(e, 3), *kind = PyTuple_GET_ITEM(e, 4);
        int is = PyObject_RichCompareBool(kind, kind_gitlink, Py_EQ);
        if (is < 0)
            return NULL;
        if (is)
            continue; /* a commit of another repository */
        PyObject *found = PyDict_GetItemWithError(objects, oid); /* borrowed */
        if (found == NULL && PyErr_Occurred())
            return NULL;
        int is_tree = PyObject_RichCompareBool(kind, kind_tree, Py_EQ);
        if (is_tree < 0)
            return NULL;
        if (found != NULL) {
            if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) < 1) {
                PyErr_SetString(PyExc_TypeError, "objects must map ids to (type, content)");
                return NULL;
            }
            PyObject *want = is_tree ? type_tree : type_blob;
            if (!is_tree) {
                int is_blob = PyObject_RichCompareBool(kind, kind_blob, Py_EQ);
                if (is_blob < 0)
                    return NULL;
                if (!is_blob)
                    return PyLong_FromSsize_t(i); /* no type is right for an unknown kind */
            }
            int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(found, 0), want, Py_EQ);
            if (same < 0)
                return NULL;
            if (!same)
                return PyLong_FromSsize_t(i);
            if (PySet_Add(reached, oid) < 0)
                return NULL;
            if (is_tree) {
                PyObject *below = PyList_New(0);
                if (below == NULL)
                    return NULL;
                for (Py_ssize_t m = 0; m < nmaps; m++) {
                    PyObject *b = PyDict_GetItemWithError(PyList_GET_ITEM(parent_maps, m), name);
                    if (b == NULL) {
                        if (PyErr_Occurred()) {
                            Py_DECREF(below);
                            return NULL;
                        }
                        continue;
                    }
                    if (!PyTuple_Check(b) || PyTuple_GET_SIZE(b) != 2) {
                        Py_DECREF(below);
                        PyErr_SetString(PyExc_TypeError, "parent maps must map names to (kind, id)");
                        return NULL;
                    }
                    int sub = PyObject_RichCompareBool(PyTuple_GET_ITEM(b, 0), kind_tree, Py_EQ);
                    if (sub < 0 || (sub && PyList_Append(below, PyTuple_GET_ITEM(b, 1)) < 0)) {
                        Py_DECREF(below);
                        return NULL;
                    }
                }
                PyObject *item = PyTuple_Pack(2, oid, below);
                Py_DECREF(below);
                if (item == NULL)
                    return NULL;
                int rc = PyList_Append(queue, item);
                Py_DECREF(item);
                if (rc < 0)
                    return NULL;
            }
            continue;
        }
        int in_parent = 0;
        for (Py_ssize_t m = 0; m < nmaps && !in_parent; m++) {
            PyObject *b = PyDict_GetItemWithError(PyList_GET_ITEM(parent_maps, m), name);
            if (b == NULL) {
                if (PyErr_Occurred())
                    return NULL;
                continue;
            }
            if (PyTuple_Check(b) && PyTuple_GET_SIZE(b) == 2) {
                int k = PyObject_RichCompareBool(PyTuple_GET_ITEM(b, 0), kind, Py_EQ);
                if (k < 0)
                    return NULL;
                if (k) {
                    k = PyObject_RichCompareBool(PyTuple_GET_ITEM(b, 1), oid, Py_EQ);
                    if (k < 0)
                        return NULL;
                }
                in_parent = k;
            } else {
                PyObject *want = PyTuple_Pack(2, kind, oid);
                if (want == NULL)
                    return NULL;
                in_parent = PyObject_RichCompareBool(b, want, Py_EQ);
                Py_DECREF(want);
                if (in_parent < 0)
                    return NULL;
            }
        }
        if (!in_parent) {
            PyObject *item = PyTuple_Pack(3, tree_id, oid, kind);
            if (item == NULL)
                return NULL;
            int rc = PyList_Append(outside, item);
            Py_DECREF(item);
            if (rc < 0)
                return NULL;
        }
    }
    return PyLong_FromLong(-1);
}

/* tree_map(entries) -> {name: (kind, id)} of RawTreeEntry tuples: checker._tree_map_py's twin. */
static PyObject *tree_map(PyObject *self, PyObject *args)
{
    PyObject *entries;
    if (!PyArg_ParseTuple(args, "O!:tree_map", &PyList_Type, &entries))
        return NULL;
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *e = PyList_GET_ITEM(entries, i);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 5) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "entries must be RawTreeEntry tuples");
            return NULL;
        }
        PyObject *value = PyTuple_Pack(2, PyTuple_GET_ITEM(e, 4), PyTuple_GET_ITEM(e, 3));
        if (value == NULL || PyDict_SetItem(out, PyTuple_GET_ITEM(e, 2), value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(value);
    }
    return out;
}

/* The entry of v (read_sorted's, n of them) whose key is key, or NULL. */
static const sorted_entry_t *find_key(const sorted_entry_t *v, Py_ssize_t n, const tree_name_t *key)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(&v[mid].key, key);
        if (c == 0)
            return &v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* find_key for keys asked in increasing order (ahead: larger than every key asked before):
   walks *cursor forward, so a tree read beside its parent's costs one pass over both, not a
   search per entry; a key not ahead (a tree out of order) is searched for. */
static const sorted_entry_t *seek_key(const sorted_entry_t *v, Py_ssize_t n, Py_ssize_t *cursor,
                                      const tree_name_t *key, int ahead)
{
    if (!ahead)
        return find_key(v, n, key);
    Py_ssize_t i = *cursor;
    int c = -1;
    while (i < n && (c = key_cmp(&v[i].key, key)) < 0)
        i++;
    *cursor = i;
    return i < n && c == 0 ? &v[i] : NULL;
}

/* 0 blob, 1 tree, 2 gitlink: objects.mode_kind of a mode. */
static int kind_class(uint32_t mode)
{
    switch (mode & S_IFMT_) {
    case S_IFREG_:
    case S_IFLNK_:
        return 0;
    case S_IFDIR_:
        return 1;
    default:
        return 2;
    }
}

/* connect_raw(raw, parent_raws, pack_ids, pack_types, reached, queue, outside, tree_id, kind_blob,
   kind_tree, kind_gitlink, type_blob, type_tree) -> -1, an index, or None.
   connect_tree's twin on the raw trees: raw is the pack's tree, parent_raws the parents' trees
   at the same path (bytes), pack_ids the pack's object ids (20 bytes each, sorted) and
   pack_types their type numbers (one byte each).  Same effects and result as connect_tree
   given parse_tree(raw) and the parents' {name: (kind, id)} maps; None, having changed
   nothing, when raw is not well formed or a parent tree is not simple (read_sorted: then
   a name may stand twice, and the caller takes connect_tree's path). */
static PyObject *connect_raw(PyObject *self, PyObject *args)
{
    Py_buffer raw, ids, types;
    PyObject *parent_raws, *reached, *queue, *outside, *tree_id, *kinds[3];
    int type_blob, type_tree;
    if (!PyArg_ParseTuple(args, "y*O!y*y*O!O!O!OOOOii:connect_raw", &raw, &PyList_Type, &parent_raws, &ids, &types,
                          &PySet_Type, &reached, &PyList_Type, &queue, &PyList_Type, &outside, &tree_id, &kinds[0],
                          &kinds[1], &kinds[2], &type_blob, &type_tree))
        return NULL;
    const Py_ssize_t nparents = PyList_GET_SIZE(parent_raws), nids = ids.len / 20;
    sorted_entry_t **par = NULL;
    Py_ssize_t *counts = NULL, *cursors = NULL;
    tree_name_t last = {NULL, 0, 0};
    int have_last = 0;
    PyObject *result = NULL;
    const unsigned char *idv = ids.buf, *typev = types.buf;
    if (ids.len % 20 != 0 || types.len != nids) {
        PyErr_SetString(PyExc_ValueError, "pack_ids must hold 20-byte ids, pack_types one byte each");
        goto done;
    }
    par = PyMem_Calloc((size_t)(nparents ? nparents : 1), sizeof(sorted_entry_t *));
    counts = PyMem_Calloc((size_t)(nparents ? nparents : 1), sizeof(Py_ssize_t));
    cursors = PyMem_Calloc((size_t)(nparents ? nparents : 1), sizeof(Py_ssize_t));
    if (par == NULL || counts == NULL || cursors == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t m = 0; m < nparents; m++) {
        PyObject *b = PyList_GET_ITEM(parent_raws, m);
        if (!PyBytes_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "parent_raws must hold bytes");
            goto done;
        }
        Py_buffer pb;
        memset(&pb, 0, sizeof pb);
        pb.buf = PyBytes_AS_STRING(b);
        pb.len = PyBytes_GET_SIZE(b);
        int rc = read_sorted(&pb, &par[m], &counts[m]);
        if (rc < 0)
            goto done;
        if (rc == 0)
            goto not_simple;
    }
    {
        /* the pack's tree must read whole before anything is touched */
        const unsigned char *p = raw.buf, *end = p + raw.len;
        while (p < end) {
            tree_entry_t e;
            if (next_entry(&p, end, &e) < 0)
                goto not_simple;
        }
    }
    const unsigned char *p = raw.buf, *end = p + raw.len;
    for (Py_ssize_t i = 0; p < end; i++) {
        tree_entry_t e;
        next_entry(&p, end, &e);
        const int kind = kind_class(e.mode);
        if (kind == 2)
            continue; /* a commit of another repository */
        const tree_name_t key = {e.name, e.name_len, kind == 1};
        const int ahead = !have_last || key_cmp(&last, &key) < 0;
        if (ahead) {
            last = key;
            have_last = 1;
        }
        Py_ssize_t lo = 0, hi = nids, found = -1;
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            int c = memcmp(idv + 20 * mid, e.id, 20);
            if (c == 0) {
                found = mid;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (found >= 0) {
            if (typev[found] != (kind == 1 ? type_tree : type_blob)) {
                result = PyLong_FromSsize_t(i);
                goto done;
            }
            PyObject *oid = PyBytes_FromStringAndSize((const char *)e.id, 20);
            if (oid == NULL || PySet_Add(reached, oid) < 0) {
                Py_XDECREF(oid);
                goto done;
            }
            if (kind == 1) {
                PyObject *below = PyList_New(0);
                for (Py_ssize_t m = 0; below != NULL && m < nparents; m++) {
                    const sorted_entry_t *s = seek_key(par[m], counts[m], &cursors[m], &key, ahead);
                    if (s == NULL)
                        continue;
                    PyObject *sub = PyBytes_FromStringAndSize((const char *)s->e.id, 20);
                    if (sub == NULL || PyList_Append(below, sub) < 0)
                        Py_CLEAR(below);
                    Py_XDECREF(sub);
                }
                PyObject *item = below == NULL ? NULL : PyTuple_Pack(2, oid, below);
                Py_XDECREF(below);
                int rc = item == NULL ? -1 : PyList_Append(queue, item);
                Py_XDECREF(item);
                if (rc < 0) {
                    Py_DECREF(oid);
                    goto done;
                }
            }
            Py_DECREF(oid);
            continue;
        }
        int in_parent = 0;
        for (Py_ssize_t m = 0; m < nparents && !in_parent; m++) {
            const sorted_entry_t *s = seek_key(par[m], counts[m], &cursors[m], &key, ahead);
            in_parent = s != NULL && kind_class(s->e.mode) == kind && memcmp(s->e.id, e.id, 20) == 0;
        }
        if (!in_parent) {
            PyObject *oid = PyBytes_FromStringAndSize((const char *)e.id, 20);
            PyObject *item = oid == NULL ? NULL : PyTuple_Pack(3, tree_id, oid, kinds[kind]);
            Py_XDECREF(oid);
            int rc = item == NULL ? -1 : PyList_Append(outside, item);
            Py_XDECREF(item);
            if (rc < 0)
                goto done;
        }
    }
    result = PyLong_FromLong(-1);
    goto done;
not_simple:
    result = Py_None;
    Py_INCREF(result);
done:
    for (Py_ssize_t m = 0; par != NULL && m < nparents; m++)
        PyMem_Free(par[m]);
    PyMem_Free(par);
    PyMem_Free(counts);
    PyMem_Free(cursors);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&types);
    return result;
}

/* ---- a pack's entries: packfile.read_pack's loop ---------------------------------------- */

/* Entries declared larger than this go the reference's way (it grows its buffer as it
   inflates; this one allocates the declared size at once). */
#define ENTRIES_BIG (64 << 20)

/* pack_entries(data, max_objects, max_object_size, max_total_inflated, entry_type) -> list of
   entry_type(offset, type_num, content, base_id, base_offset) (packfile.RawEntry), or None.
   list(packfile.read_pack(data, limits)) compiled, for a pack whose SHA-1 trailer the caller
   checked: None wherever the reference would raise, or where this one does not decide (a
   size header past 57 bits, an entry over ENTRIES_BIG): the caller then asks the reference. */
static PyObject *pack_entries(PyObject *self, PyObject *args)
{
    Py_buffer data;
    unsigned long long max_objects, max_object_size, max_total;
    PyTypeObject *entry_type;
    if (!PyArg_ParseTuple(args, "y*KKKO!:pack_entries", &data, &max_objects, &max_object_size, &max_total,
                          &PyType_Type, &entry_type))
        return NULL;
    PyObject *out = NULL;
    const unsigned char *d = data.buf;
    z_stream zs;
    int zs_ready = 0;
    if (!PyType_IsSubtype(entry_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple type");
        goto fail;
    }
    if (data.len < 32 || memcmp(d, "PACK", 4) != 0)
        goto refused;
    const uint32_t version = ((uint32_t)d[4] << 24) | ((uint32_t)d[5] << 16) | ((uint32_t)d[6] << 8) | d[7];
    const uint32_t count = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    if ((version != 2 && version != 3) || count > max_objects)
        goto refused;
    const Py_ssize_t len = data.len - 20;
    Py_ssize_t pos = 12;
    unsigned long long total = 0;
    zs_ready = 0;
    memset(&zs, 0, sizeof zs);
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    for (uint32_t index = 0; index < count; index++) {
        const Py_ssize_t start = pos;
        if (pos >= len)
            goto refused;
        unsigned int byte = d[pos++];
        const int type_num = (byte >> 4) & 7;
        unsigned long long size = byte & 0x0f;
        int shift = 4;
        while (byte & 0x80) {
            if (pos >= len || shift > 53)
                goto refused;
            byte = d[pos++];
            size |= (unsigned long long)(byte & 0x7f) << shift;
            shift += 7;
        }
        if (size > max_object_size || size > ENTRIES_BIG)
            goto refused;
        PyObject *base_id = Py_None, *base_offset = Py_None;
        Py_INCREF(base_id);
        Py_INCREF(base_offset);
        if (type_num == 7) {
            if (pos + 20 > len) {
                Py_DECREF(base_id);
                Py_DECREF(base_offset);
                goto refused;
            }
            Py_DECREF(base_id);
            base_id = PyBytes_FromStringAndSize((const char *)d + pos, 20);
            pos += 20;
        } else if (type_num == 6) {
            unsigned long long rel;
            int ok = pos < len;
            if (ok) {
                byte = d[pos++];
                rel = byte & 0x7f;
                while (ok && (byte & 0x80)) {
                    if (pos >= len || rel > (1ULL << 56)) {
                        ok = 0;
                        break;
                    }
                    byte = d[pos++];
                    rel = ((rel + 1) << 7) | (byte & 0x7f);
                }
            }
            if (!ok || rel == 0 || rel > (unsigned long long)start || (unsigned long long)start - rel < 12) {
                Py_DECREF(base_id);
                Py_DECREF(base_offset);
                goto refused;
            }
            Py_DECREF(base_offset);
            base_offset = PyLong_FromSsize_t(start - (Py_ssize_t)rel);
        } else if (type_num < 1 || type_num > 4) {
            Py_DECREF(base_id);
            Py_DECREF(base_offset);
            goto refused;
        }
        total += size;
        if (base_id == NULL || base_offset == NULL || total > max_total) {
            Py_XDECREF(base_id);
            Py_XDECREF(base_offset);
            if (PyErr_Occurred())
                goto fail;
            goto refused;
        }
        /* inflate into size + 1 bytes: a stream that fills them inflates past its size */
        PyObject *content = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size + 1);
        if (content == NULL) {
            Py_DECREF(base_id);
            Py_DECREF(base_offset);
            goto fail;
        }
        /* one stream for the pack, reset per entry (its state is allocated once, not per object) */
        int zrc = zs_ready ? inflateReset(&zs) : inflateInit(&zs);
        if (zrc != Z_OK) {
            Py_DECREF(content);
            Py_DECREF(base_id);
            Py_DECREF(base_offset);
            PyErr_NoMemory();
            goto fail;
        }
        zs_ready = 1;
        zs.next_in = (unsigned char *)d + pos;
        zs.avail_in = (uInt)((len - pos) > 0x7fffffff ? 0x7fffffff : (len - pos));
        zs.next_out = (unsigned char *)PyBytes_AS_STRING(content);
        zs.avail_out = (uInt)(size + 1);
        zrc = inflate(&zs, Z_FINISH);
        const unsigned long long got = zs.total_out, used = zs.total_in;
        if (zrc != Z_STREAM_END || got != size || (len - pos) > 0x7fffffff) {
            Py_DECREF(content);
            Py_DECREF(base_id);
            Py_DECREF(base_offset);
            goto refused;
        }
        pos += (Py_ssize_t)used;
        if (_PyBytes_Resize(&content, (Py_ssize_t)size) < 0) {
            Py_DECREF(base_id);
            Py_DECREF(base_offset);
            goto fail;
        }
        PyObject *offset = PyLong_FromSsize_t(start), *type_obj = PyLong_FromLong(type_num);
        PyObject *entry = entry_type->tp_alloc(entry_type, 5);
        if (offset == NULL || type_obj == NULL || entry == NULL) {
            Py_XDECREF(offset);
            Py_XDECREF(type_obj);
            Py_XDECREF(entry);
            Py_DECREF(content);
            Py_DECREF(base_id);
            Py_DECREF(base_offset);
            goto fail;
        }
        PyTuple_SET_ITEM(entry, 0, offset);
        PyTuple_SET_ITEM(entry, 1, type_obj);
        PyTuple_SET_ITEM(entry, 2, content);
        PyTuple_SET_ITEM(entry, 3, base_id);
        PyTuple_SET_ITEM(entry, 4, base_offset);
        int rc = PyList_Append(out, entry);
        Py_DECREF(entry);
        if (rc < 0)
            goto fail;
    }
    if (pos != len)
        goto refused;
    if (zs_ready)
        inflateEnd(&zs);
    PyBuffer_Release(&data);
    return out;
refused:
    if (zs_ready)
        inflateEnd(&zs);
    Py_XDECREF(out);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
fail:
    if (zs_ready)
        inflateEnd(&zs);
    Py_XDECREF(out);
    PyBuffer_Release(&data);
    return NULL;
}

/* compress_all(contents, level) -> [zlib.compress(c, level) for c in contents], one stream
   each (compress2: zlib's defaults for everything but the level, as zlib.compress), with
   the GIL let go for the whole list (a thread compressing beside the importer then takes
   the GIL twice a list, not twice an object). */
static PyObject *compress_all(PyObject *self, PyObject *args)
{
    PyObject *contents;
    int level;
    if (!PyArg_ParseTuple(args, "O!i:compress_all", &PyList_Type, &contents, &level))
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(contents);
    PyObject **items = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    unsigned char **outs = PyMem_Calloc((size_t)(n ? n : 1), sizeof(unsigned char *));
    uLongf *lens = PyMem_Calloc((size_t)(n ? n : 1), sizeof(uLongf));
    PyObject *result = NULL;
    int failed = 0;
    if (items == NULL || outs == NULL || lens == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyList_GET_ITEM(contents, i);
        if (!PyBytes_Check(c) || PyBytes_GET_SIZE(c) > 0x7fffffff) {
            PyErr_SetString(PyExc_TypeError, "contents must be bytes under 2 GiB");
            goto done;
        }
        Py_INCREF(c);
        items[i] = c;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        const uLong size = (uLong)PyBytes_GET_SIZE(items[i]);
        lens[i] = compressBound(size);
        outs[i] = malloc(lens[i] ? lens[i] : 1);
        if (outs[i] == NULL || compress2(outs[i], &lens[i], (const Bytef *)PyBytes_AS_STRING(items[i]), size, level) != Z_OK)
            failed = 1;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_MemoryError, "compress_all: zlib could not compress");
        goto done;
    }
    result = PyList_New(n);
    for (Py_ssize_t i = 0; result != NULL && i < n; i++) {
        PyObject *z = PyBytes_FromStringAndSize((const char *)outs[i], (Py_ssize_t)lens[i]);
        if (z == NULL)
            Py_CLEAR(result);
        else
            PyList_SET_ITEM(result, i, z);
    }
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        if (items != NULL)
            Py_XDECREF(items[i]);
        if (outs != NULL)
            free(outs[i]);
    }
    PyMem_Free(items);
    PyMem_Free(outs);
    PyMem_Free(lens);
    return result;
}

static PyMethodDef methods[] = {
    {"create_delta", create_delta, METH_VARARGS,
     "create_delta(base, target) -> bytes: the pinned delta of gitfs_p2p.pack.delta, compiled."},
    {"apply_delta", apply_delta, METH_VARARGS,
     "apply_delta(base, delta, max_size) -> bytes, or None where delta.apply_delta raises."},
    {"tree_scan", tree_scan, METH_VARARGS,
     "tree_scan(raw, special_first) -> (null_sha1, modes, special, orderly), or None (not well formed)."},
    {"tree_entries", tree_entries, METH_VARARGS,
     "tree_entries(raw, entry_type, blob, tree, gitlink, raw_form) -> list, or None (not well formed)."},
    {"tree_changes", tree_changes, METH_VARARGS,
     "tree_changes(raw_a, raw_b, entry_type, blob, tree, gitlink) -> (only_a, only_b), or None (not simple)."},
    {"connect_tree", connect_tree, METH_VARARGS,
     "connect_tree(entries, objects, parent_maps, reached, queue, outside, tree_id, kind_blob, kind_tree, kind_gitlink,"
     " type_blob, type_tree) -> -1, or the index of an entry of the wrong type: checker._connect_tree_py, compiled."},
    {"connect_raw", connect_raw, METH_VARARGS,
     "connect_raw(raw, parent_raws, pack_ids, pack_types, reached, queue, outside, tree_id, kind_blob, kind_tree,"
     " kind_gitlink, type_blob, type_tree) -> -1, an index, or None: connect_tree on raw trees."},
    {"pack_entries", pack_entries, METH_VARARGS,
     "pack_entries(data, max_objects, max_object_size, max_total_inflated, entry_type) -> list, or None:"
     " list(packfile.read_pack(data, limits)) for a pack whose trailer was checked, compiled."},
    {"compress_all", compress_all, METH_VARARGS,
     "compress_all(contents, level) -> [zlib.compress(c, level) for c in contents], the GIL let go meanwhile."},
    {"tree_map", tree_map, METH_VARARGS, "tree_map(entries) -> {name: (kind, id)}: checker._tree_map_py, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gitfs_p2p.pack._speedups", "Compiled twins of pure-Python functions of gitfs_p2p.pack.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
