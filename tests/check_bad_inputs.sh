#!/bin/sh
# The bad-input catalogue: tests/bad_inputs/cases.txt lists untrusted or
# wrong inputs to tools/smlp-run, one case a line,
#
#   name | exit status | substring of the message | sh command
#
# The command runs in a fresh subshell (in a scratch directory $T, with
# the helpers below) and its output must contain the substring and its
# exit status must be the one given.  A command that exits 77 is skipped
# (and says why).  Inputs are made here: graphs from the JSON files of
# tests/bad_inputs/ with flatc, optionally edited by sed; checkpoints by
# printf; corrupt files by byte surgery on the shipped mixer_fmnist graph.
# Every run of smlp-run is bounded by a timeout (a hang fails the case).
# Prints "N passed, M failed" (and the skips).
#
# Helpers for the commands:
#   run ARGS...            tools/smlp-run ARGS (60 s at most)
#   $G, $SG                the built mixer_fmnist and sparse_mlp_fmnist
#   $FIX                   the fixture plugins (tests/plugins)
#   fbs NAME [SED]         tests/bad_inputs/NAME.json (or NAME.json from the
#                          source tree when NAME has a '/'), edited by
#                          the sed script SED, compiled; prints the path
#   copy NAME              a copy of $G as $T/NAME.fbs; prints its path
#   st FILE HEADER [N [DATA]]  a safetensors file: HEADER's length (8 bytes,
#                          little-endian), HEADER, N zero bytes, then the
#                          printf format DATA; prints FILE
#   u16/u32/s32 FILE OFF   reads a little-endian integer
#   poke FILE OFF FMT      overwrites bytes at OFF with printf FMT
#   poke32 FILE OFF V      overwrites a little-endian uint32 at OFF
#   field FILE TABLE ID    position of field ID of the FlatBuffer table at
#                          TABLE (0 when absent)
#   deref FILE POS         where the uoffset stored at POS points
S=${SMLP_TEST_SRCDIR:-.}
B=${SMLP_TEST_BUILDDIR:-.}
IN="$S/tests/bad_inputs"
G="$B/graphs/mixer_fmnist.fbs"
SG="$B/graphs/sparse_mlp_fmnist.fbs"
FIX="$B/tests/plugins/.libs"
T=$(mktemp -d /tmp/smlp-bad-inputs.XXXXXX)
trap 'chmod -R u+rwx "$T" 2>/dev/null; rm -rf "$T"' EXIT INT TERM
export OPENBLAS_NUM_THREADS=1
pass=0
fail=0
skip=0
n_fbs=0

run() { timeout 60 "$B/tools/smlp-run" "$@"; }

fbs() {
    n_fbs=$((n_fbs + 1))
    case $1 in
    */*) src="$S/$1.json" base=$(basename "$1") ;;
    *) src="$IN/$1.json" base=$1 ;;
    esac
    sed "${2:-}" "$src" >"$T/$base-$n_fbs.json" &&
        "${FLATC:-flatc}" -b -o "$T" "$S/schemas/graph.fbs" \
            "$T/$base-$n_fbs.json" >&2 &&
        echo "$T/$base-$n_fbs.fbs"
}

copy() { cp "$G" "$T/$1.fbs" && echo "$T/$1.fbs"; }

# byte N: the byte N (0..255) as a printf format.
byte() { printf '\\%03o' "$1"; }

le64() {
    v=$1 i=0
    while [ $i -lt 8 ]; do
        printf "$(byte $((v & 255)))"
        v=$((v >> 8)) i=$((i + 1))
    done
}

st() {
    {
        le64 "${#2}"
        printf '%s' "$2"
        [ "${3:-0}" -gt 0 ] && head -c "$3" /dev/zero
        [ -n "${4:-}" ] && printf "$4"
    } >"$1"
    echo "$1"
}

u16() { od -An -tu2 -j "$2" -N2 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
s32() { od -An -td4 -j "$2" -N4 "$1" | tr -d ' '; }

poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }

poke32() {
    poke "$1" "$2" "$(byte $(($3 & 255)))$(byte $((($3 >> 8) & 255)))$(byte \
$((($3 >> 16) & 255)))$(byte $((($3 >> 24) & 255)))"
}

field() {
    vt=$(($2 - $(s32 "$1" "$2")))
    slot=$((4 + 2 * $3))
    if [ $((slot + 2)) -gt "$(u16 "$1" "$vt")" ]; then echo 0; return; fi
    fo=$(u16 "$1" $((vt + slot)))
    if [ "$fo" -eq 0 ]; then echo 0; else echo $(($2 + fo)); fi
}

deref() { echo $(($2 + $(u32 "$1" "$2"))); }

# Trims surrounding blanks.
trim() { sed 's/^[[:space:]]*//; s/[[:space:]]*$//'; }

while IFS= read -r line; do
    case $line in '#'* | '') continue ;; esac
    name=$(printf '%s\n' "$line" | cut -d'|' -f1 | trim)
    want=$(printf '%s\n' "$line" | cut -d'|' -f2 | trim)
    needle=$(printf '%s\n' "$line" | cut -d'|' -f3 | trim)
    cmd=$(printf '%s\n' "$line" | cut -d'|' -f4- | trim)
    (cd "$T" && eval "$cmd") >"$T/out" 2>&1 </dev/null
    got=$?
    if [ "$got" -eq 77 ]; then
        skip=$((skip + 1))
        echo "skip - $name: $(tail -n 1 "$T/out")"
    elif [ "$got" -ne "$want" ]; then
        fail=$((fail + 1))
        echo "FAIL - $name: exit $got, want $want"
        sed 's/^/  | /' "$T/out"
    elif ! grep -qF -- "$needle" "$T/out"; then
        fail=$((fail + 1))
        echo "FAIL - $name: no '$needle' in the output"
        sed 's/^/  | /' "$T/out"
    elif grep -v 'WARNING: AddressSanitizer failed to allocate' "$T/out" |
         grep -qE 'AddressSanitizer|runtime error:|LeakSanitizer'
    then
        # (that warning is ASan's allocator returning NULL as asked:
        # allocator_may_return_null, Makefile.am)
        fail=$((fail + 1))
        echo "FAIL - $name: sanitizer report"
        sed 's/^/  | /' "$T/out"
    else
        pass=$((pass + 1))
        echo "ok - $name"
    fi
done <"$IN/cases.txt"
[ "$skip" -gt 0 ] && echo "$skip skipped"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -ge 30 ]
