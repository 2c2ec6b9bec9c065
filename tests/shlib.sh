# tests/shlib.sh - what the shell tests share; sourced after T (the
# test's temporary directory) is set:
#   . "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"
# ok NAME / bad NAME count and print a result (pass, fail: the counts,
# printed by the caller as "N passed, M failed"); show FILE prints a file
# indented; expect NAME STATUS NEEDLE CMD... runs CMD and checks its exit
# status and that NEEDLE occurs in its output (stdout and stderr together;
# NEEDLE "" matches anything); make_idx_data DIR NTRAIN NTEST (python3)
# writes a tiny gzip'd IDX data set in Fashion-MNIST's layout.
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
show() { sed 's/^/  | /' "$1"; }

expect() {
    name=$1 want=$2 needle=$3
    shift 3
    "$@" >"$T/out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        bad "$name: exit $got, want $want"; show "$T/out"
    elif [ -n "$needle" ] && ! grep -qF -- "$needle" "$T/out"; then
        bad "$name: no '$needle' in output"; show "$T/out"
    else
        ok "$name"
    fi
}

# 28 x 28 images of 10 easy classes: class c is a bright bar at rows
# 3+2c..4+2c over noise (seeded: the same bytes every time).
make_idx_data() {
    mkdir -p "$1" && "${PY:-python3}" - "$@" <<'PY'
import gzip, random, struct, sys
d, ntrain, ntest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(0)
for prefix, n in (("train", ntrain), ("t10k", ntest)):
    px, lab = bytearray(), bytearray()
    for i in range(n):
        c = rnd.randrange(10)
        img = [rnd.randrange(40) for _ in range(784)]
        for r in (3 + 2 * c, 4 + 2 * c):
            for x in range(4, 24):
                img[r * 28 + x] = 180 + rnd.randrange(75)
        px += bytes(img)
        lab.append(c)
    with gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(px))
    with gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(lab))
PY
}
