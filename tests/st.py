#!/usr/bin/env python3
"""Safetensors files for the shell tests, with Python's standard library.

A file: an 8-byte little-endian header length n, n bytes of JSON (each
tensor's dtype, shape and data_offsets into the data; "__metadata__", a
map of strings), the data.  Every read checks that the file is whole:
its size is 8 + n + the largest data offset.

From a shell suite (tests/shlib.sh: `st CMD ARGS...`):
  check FILE [--min-tensors N] [--has KEY]...
        a whole file, of N tensors or more, whose metadata has each KEY
  meta FILE KEY [DEFAULT]
        print metadata KEY (DEFAULT, or nothing, where it is absent)
  same A B
        the same tensor names, and each tensor's dtype, shape and bytes
  near A B --rel R [--floor F] [--min-tensors N]
        the same names, dtypes and shapes; every F32 element x of A and
        y of B: |x - y| / max(F, |x|) <= R (F: 0 if not given); other
        dtypes byte for byte
  near A B --scale tensor --rel R [--abs E] [--min-tensors N]
        as above, but per tensor: max |x - y| <= R max |x| + E
  setmeta IN OUT KEY VALUE
        a copy of IN with metadata KEY set to VALUE (OUT may be IN)
  delmeta IN OUT KEY...
        a copy without those metadata keys; KEY* removes every key that
        starts with KEY; each KEY must remove something
  poke IN OUT NAME INDEX|all VALUE
        a copy with element INDEX (or every element) of tensor NAME set
        to VALUE (a number; nan and inf too)
A failed check prints why on stderr and exits 1.

From Python (tests/shlib.sh: `stpy - ARGS <<'PY'` puts tests/ on the
path; or sys.path.insert(0, SRCDIR + "/tests")):
  import st
  f = st.read(path)       f.names, f.meta, f.dtype(k), f.shape(k),
                          f.raw(k) (bytes), f.values(k) (an array.array),
                          f.tensors() (name -> values)
  st.same(a, b); st.near(a, b, rel, ...)   (paths or Files; raise st.Fail)
  st.write(path, {name: (dtype, shape, values or bytes)}, meta, align)
  st.f32(x)               x rounded to float32
"""
import array
import json
import math
import struct
import sys

# dtype -> array typecode (sizes as on the platforms we build on)
CODES = {"F64": "d", "F32": "f", "I64": "q", "I32": "i", "I16": "h",
         "I8": "b", "U64": "Q", "U32": "I", "U16": "H", "U8": "B",
         "BOOL": "B"}


class Fail(AssertionError):
    """A check that does not hold; the message says which and why."""


def fail(msg):
    raise Fail(msg)


class File:
    """A safetensors file: head (name -> dtype, shape, data_offsets),
    meta (the metadata, {} if none) and data (the bytes after the
    header)."""

    def __init__(self, path, whole=True):
        b = open(path, "rb").read()
        if len(b) < 8:
            fail("%s: %d bytes, no header length" % (path, len(b)))
        n = struct.unpack("<Q", b[:8])[0]
        head = json.loads(b[8:8 + n])
        self.path = path
        self.meta = head.pop("__metadata__", {})
        self.head = head
        self.data = b[8 + n:]
        end = max([v["data_offsets"][1] for v in head.values()] + [0])
        if whole and 8 + n + end != len(b):
            fail("%s: %d bytes, header says %d" % (path, len(b), 8 + n + end))

    @property
    def names(self):
        return sorted(self.head)

    def dtype(self, k):
        return self.head[k]["dtype"]

    def shape(self, k):
        return self.head[k]["shape"]

    def raw(self, k):
        lo, hi = self.head[k]["data_offsets"]
        return self.data[lo:hi]

    def values(self, k):
        return unpack(self.dtype(k), self.raw(k))

    def tensors(self):
        """Every tensor's values: name -> array.array."""
        return {k: self.values(k) for k in self.names}


def read(path, whole=True):
    return path if isinstance(path, File) else File(path, whole)


def unpack(dtype, raw):
    if dtype not in CODES:
        fail("dtype %s: not one st.py reads" % dtype)
    a = array.array(CODES[dtype])
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def pack(dtype, values):
    a = array.array(CODES[dtype], values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def dump(path, head, meta, data, align=1):
    """Writes head (tensors), then meta if not None, padded with spaces
    to a multiple of align, then data."""
    h = dict(head)
    if meta is not None:
        h["__metadata__"] = meta
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % align)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(hb)) + hb + data)


def write(path, tensors, meta=None, align=1):
    """tensors: name -> (dtype, shape, values), in the data's order;
    values a sequence of numbers or the bytes themselves."""
    head, data = {}, b""
    for name, (dtype, shape, vals) in tensors.items():
        raw = vals if isinstance(vals, (bytes, bytearray)) else pack(
            dtype, vals)
        head[name] = {"dtype": dtype, "shape": list(shape),
                      "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    dump(path, head, meta, data, align)


def same_names(a, b):
    if a.names != b.names:
        fail("tensor names differ: only in %s: %s; only in %s: %s" % (
            a.path, sorted(set(a.names) - set(b.names)),
            b.path, sorted(set(b.names) - set(a.names))))


def same_kind(a, b, k):
    ka = (a.dtype(k), a.shape(k))
    kb = (b.dtype(k), b.shape(k))
    if ka != kb:
        fail("tensor %s: %s %s against %s %s" % (k, ka[0], ka[1], kb[0],
                                                  kb[1]))
    if len(a.raw(k)) != len(b.raw(k)):
        fail("tensor %s: %d bytes against %d" % (k, len(a.raw(k)),
                                                 len(b.raw(k))))


def first_diff(a, b, k):
    """Where tensor k of a and b first differ, in words."""
    ra, rb = a.raw(k), b.raw(k)
    if a.dtype(k) in CODES:
        size = array.array(CODES[a.dtype(k)]).itemsize
        for i in range(0, len(ra), size):
            if ra[i:i + size] != rb[i:i + size]:
                return "element %d: %r against %r" % (
                    i // size, a.values(k)[i // size],
                    b.values(k)[i // size])
    return "%d bytes against %d" % (len(ra), len(rb))


def same(a, b):
    """The same names, and per tensor the same dtype, shape and bytes."""
    a, b = read(a), read(b)
    same_names(a, b)
    for k in a.names:
        same_kind(a, b, k)
        if a.raw(k) != b.raw(k):
            fail("tensor %s differs (%s)" % (k, first_diff(a, b, k)))


def near(a, b, rel, floor=None, scale="element", abs_=0.0, min_tensors=0):
    """The same names, dtypes and shapes; F32 values close (see the
    head of this file: scale "element" or "tensor"), others the same
    bytes.  NaN against anything fails."""
    if scale not in ("element", "tensor"):
        fail("scale %r is not element or tensor" % scale)
    if scale == "element" and abs_:
        fail("--abs is for --scale tensor")
    if scale == "tensor" and floor is not None:
        fail("--floor is for --scale element")
    a, b = read(a), read(b)
    same_names(a, b)
    if len(a.names) < min_tensors:
        fail("%s: %d tensors, want %d or more" % (a.path, len(a.names),
                                                  min_tensors))
    for k in a.names:
        same_kind(a, b, k)
        if a.dtype(k) != "F32":
            if a.raw(k) != b.raw(k):
                fail("%s: %s values differ (%s)" % (k, a.dtype(k),
                                                    first_diff(a, b, k)))
            continue
        va, vb = a.values(k), b.values(k)
        for i, (x, y) in enumerate(zip(va, vb)):
            if math.isnan(x) or math.isnan(y):
                fail("%s[%d]: %r against %r" % (k, i, x, y))
        if scale == "element":
            fl = floor or 0.0
            for i, (x, y) in enumerate(zip(va, vb)):
                den = max(fl, abs(x))
                if x != y and not (den and abs(x - y) / den <= rel):
                    fail("%s[%d]: %r against %r" % (k, i, x, y))
        elif va:
            big = max(abs(x) for x in va)
            err = max(abs(x - y) for x, y in zip(va, vb))
            if not err <= rel * big + abs_:
                i = max(range(len(va)), key=lambda j: abs(va[j] - vb[j]))
                fail("%s: %r against max %r ([%d]: %r against %r)" % (
                    k, err, big, i, va[i], vb[i]))


def check(path, min_tensors=0, has=()):
    f = read(path)
    if len(f.names) < min_tensors:
        fail("%s: %d tensors, want %d or more" % (path, len(f.names),
                                                  min_tensors))
    for key in has:
        if key not in f.meta:
            fail("%s: no metadata %s" % (path, key))


def delmeta(f, keys):
    for d in keys:
        gone = [k for k in f.meta
                if k == d or (d.endswith("*") and k.startswith(d[:-1]))]
        if not gone:
            fail("%s: no metadata %s" % (f.path, d))
        for k in gone:
            del f.meta[k]


def poke(f, name, index, value):
    if name not in f.head:
        fail("%s: no tensor %s" % (f.path, name))
    dtype = f.dtype(name)
    v = f.values(name)
    x = float(value) if dtype in ("F32", "F64") else int(value)
    if index == "all":
        v = array.array(v.typecode, [x]) * len(v)
    else:
        v[int(index)] = x
    lo, hi = f.head[name]["data_offsets"]
    f.data = f.data[:lo] + pack(dtype, v) + f.data[hi:]


def options(args, names):
    """Splits args into positionals and the --options in names (a map
    option -> True if it may repeat)."""
    pos, opt = [], {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and a[2:] in names:
            if i + 1 == len(args):
                fail("option %s needs a value" % a)
            if names[a[2:]]:
                opt.setdefault(a[2:], []).append(args[i + 1])
            else:
                opt[a[2:]] = args[i + 1]
            i += 2
        elif a.startswith("--"):
            fail("unknown option %s" % a)
        else:
            pos.append(a)
            i += 1
    return pos, opt


def usage(want):
    fail("usage: st.py %s" % want)


def main(argv):
    if not argv:
        usage("check|meta|same|near|setmeta|delmeta|poke ARGS... "
              "(see its head)")
    cmd, args = argv[0], argv[1:]
    if cmd == "check":
        pos, opt = options(args, {"min-tensors": False, "has": True})
        if len(pos) != 1:
            usage("check FILE [--min-tensors N] [--has KEY]...")
        check(pos[0], int(opt.get("min-tensors", 0)), opt.get("has", []))
    elif cmd == "meta":
        if len(args) not in (2, 3):
            usage("meta FILE KEY [DEFAULT]")
        default = args[2] if len(args) == 3 else ""
        print(read(args[0]).meta.get(args[1], default))
    elif cmd == "same":
        if len(args) != 2:
            usage("same A B")
        same(args[0], args[1])
    elif cmd == "near":
        pos, opt = options(args, {"rel": False, "floor": False,
                                  "abs": False, "scale": False,
                                  "min-tensors": False})
        if len(pos) != 2 or "rel" not in opt:
            usage("near A B --rel R [--floor F | --scale tensor "
                  "[--abs E]] [--min-tensors N]")
        near(pos[0], pos[1], float(opt["rel"]),
             float(opt["floor"]) if "floor" in opt else None,
             opt.get("scale", "element"), float(opt.get("abs", 0)),
             int(opt.get("min-tensors", 0)))
    elif cmd in ("setmeta", "delmeta", "poke"):
        want = {"setmeta": (4, 4, "setmeta IN OUT KEY VALUE"),
                "delmeta": (3, None, "delmeta IN OUT KEY..."),
                "poke": (5, 5, "poke IN OUT NAME INDEX|all VALUE")}[cmd]
        if len(args) < want[0] or (want[1] and len(args) > want[1]):
            usage(want[2])
        f = read(args[0])
        if cmd == "setmeta":
            f.meta[args[2]] = args[3]
        elif cmd == "delmeta":
            delmeta(f, args[2:])
        else:
            poke(f, args[2], args[3], args[4])
        dump(args[1], f.head, f.meta, f.data)
    else:
        usage("check|meta|same|near|setmeta|delmeta|poke ARGS...")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Fail as e:
        print("st.py %s: %s" % (" ".join(sys.argv[1:2]), e), file=sys.stderr)
        sys.exit(1)
