#!/bin/sh
# Checks of the shipped model graphs (graphs/*.json -> graphs/*.fbs):
#  (a) the committed JSON is exactly what tools/gen_graphs.py makes, and
#      every generated graph is listed in graphs/local.am;
#  (b) each built graphs/NAME.fbs holds exactly the generator's graph (read
#      back with the generator's own FlatBuffer reader, so float bounds and
#      64-bit seeds are compared bit for bit), decodes with flatc --json,
#      and the decoded JSON rebuilds to a binary that decodes the same;
#      seeds (many >= 2^63) survive flatc's JSON output unchanged;
#  (c) `gen_graphs.py --stats` gives the parameter and MAC counts of the
#      independent formulas of MODELS.md section 0.6.
# Environment: SMLP_TEST_SRCDIR, SMLP_TEST_BUILDDIR, FLATC, PYTHON3 (see
# AM_TESTS_ENVIRONMENT).  Exit 77 (skip) without Python.  Prints
# "N passed, M failed".
S=${SMLP_TEST_SRCDIR:-.}
B=${SMLP_TEST_BUILDDIR:-.}
FLATC=${FLATC:-flatc}
if [ -z "$PYTHON3" ] || [ "$PYTHON3" = no ]; then
    echo "SKIP: no python3"
    exit 77
fi
GEN="$S/tools/gen_graphs.py"
SCHEMA="$S/schemas/graph.fbs"
T=$(mktemp -d /tmp/smlp-graphs-test.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT INT TERM
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# (a) committed sources = generator output.
if "$PYTHON3" "$GEN" --check >"$T/check" 2>&1; then
    ok "graphs/*.json are what gen_graphs.py makes"
else
    bad "graphs/*.json differ from gen_graphs.py output"; show "$T/check"
fi

if ! "$PYTHON3" "$GEN" --list >"$T/names" 2>&1 || [ ! -s "$T/names" ]; then
    bad "gen_graphs.py --list"; show "$T/names"
    echo "$pass passed, $((fail)) failed"
    exit 1
fi

for n in $(cat "$T/names"); do
    if grep -q "graphs/$n\.json" "$S/graphs/local.am"; then
        ok "$n listed in graphs/local.am"
    else
        bad "$n missing from GRAPH_JSON in graphs/local.am"
    fi

    # (b) the built binary.
    fbs="$B/graphs/$n.fbs"
    if [ ! -s "$fbs" ]; then
        bad "$n: $fbs not built"
        continue
    fi
    if "$PYTHON3" "$GEN" --verify "$fbs" >"$T/verify" 2>&1; then
        ok "$n.fbs holds exactly the generator's graph"
    else
        bad "$n.fbs differs from the generator's graph"; show "$T/verify"
    fi
    mkdir -p "$T/d1" "$T/b2" "$T/d2"
    if "$FLATC" --json --strict-json -o "$T/d1" "$SCHEMA" -- "$fbs" \
            >"$T/err" 2>&1 && [ -s "$T/d1/$n.json" ]; then
        ok "$n.fbs decodes with flatc --json"
    else
        bad "$n.fbs does not decode"; show "$T/err"
        continue
    fi
    if "$FLATC" -b -o "$T/b2" "$SCHEMA" "$T/d1/$n.json" >"$T/err" 2>&1 &&
       "$FLATC" --json --strict-json -o "$T/d2" "$SCHEMA" -- "$T/b2/$n.fbs" \
            >>"$T/err" 2>&1 &&
       cmp -s "$T/d1/$n.json" "$T/d2/$n.json"; then
        ok "$n: decoded JSON rebuilds to the same graph"
    else
        bad "$n: decode/rebuild round trip"; show "$T/err"
    fi
    grep -o '"seed": *[0-9]*' "$S/graphs/$n.json" | tr -d ' ' >"$T/s0"
    grep -o '"seed": *[0-9]*' "$T/d1/$n.json" | tr -d ' ' >"$T/s1"
    if [ -s "$T/s0" ] && cmp -s "$T/s0" "$T/s1"; then
        ok "$n: seeds survive flatc (largest $(sed 's/.*://' "$T/s0" |
            sort -n | tail -n 1))"
    else
        bad "$n: seeds changed by flatc"
    fi
done

# (c) parameter and MAC counts.  Expected values: mixer_s/b/l are
# total_p / total_m of mixer() in reference/param_macs.py (the MODELS.md
# section 0.6 formulas; Mixer-B/16 and L/16 agree with mmpretrain's
# 59.88 M / 12.61 G and 208.2 M / 44.57 G); mixer_fmnist is the same
# formulas with one input channel, computed by hand:
#   emb 4*4*1*128+128, block (49*64+64+64*49+49)+(128*512+512+512*128+128)
#   +4*128, head 2*128+128*10+10; MACs 49*16*128 + 6*(128*2*49*64 +
#   49*2*128*512) + 128*10.
# The sparse graphs: mixer() with the last blocks' blk_p/blk_m replaced by
# sparse_block()'s params/macs from reference/param_macs.py (Sparse-B is
# its "illustrative Sparse-B": 132.03 M, 15.15 G; no re-represent 128.13 M,
# 14.46 G; k_c = 1 13.31 G), the embedding with Cin = 1 for fmnist, and
# for the hash graph without the gates' params and MACs (and k_c = 1);
# topk, per_image and cf05 only change attributes.
# The MoCo graphs: the sparse graph's parameters without the head, plus
# projector C*h + 2h + h*h + 2h + h*d and predictor d*h + 2h + h*d (no
# biases; batch-norm gains and shifts); MACs: 4 backbones (query and
# momentum encoders on two views, the sparse graph's MACs less the head's
# C*K), 4 projectors (C*h + h*h + h*d), 2 predictors (2*d*h) and the loss
# at batch 1 (2*d: two 1 x 1 x d similarity products).  fmnist:
# C 128, h 512, d 128, K 10; B: C 768, h 4096, d 256, K 1000.
if "$PYTHON3" "$GEN" --stats >"$T/stats" 2>&1; then
    ok "gen_graphs.py --stats runs"
else
    bad "gen_graphs.py --stats"; show "$T/stats"
fi
while read -r n params macs; do
    got=$(awk -v n="$n" '$1 == n { print $2, $3 }' "$T/stats")
    if [ "$got" = "$params $macs" ]; then
        ok "$n: $params params, $macs MACs/image"
    else
        bad "$n: stats '$got', want '$params $macs'"
    fi
done <<'EOF'
mixer_fmnist 835376 43453696
mixer_s 18528264 3776958464
mixer_b 59880472 12601767936
mixer_l 208196168 44547678208
sparse_mlp_fmnist 1768988 62068992
sparse_mlp_s 33377304 4963520512
sparse_mlp_b 132030632 15154722816
sparse_mlp_l 741670248 53423611904
sparse_mlp_b_topk 132030632 15154722816
sparse_mlp_b_per_image 132030632 15154722816
sparse_mlp_b_cf05 132030632 15154722816
sparse_mlp_b_norr 128125456 14456272896
sparse_mlp_b_k1 132030632 13305034752
sparse_mlp_b_last4 204180792 17707677696
sparse_mlp_b_hash 132012072 13300217856
moco_sparse_mlp_fmnist 2295058 250106112
moco_sparse_mlp_b 154354880 60703900160
EOF

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
