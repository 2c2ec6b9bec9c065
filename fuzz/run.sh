#!/bin/sh
# fuzz/run.sh NAME SECONDS DICT FLAGS SEEDDIR... - runs fuzz/fuzz_NAME (from
# the build directory, the current one) for SECONDS seconds on the seed
# directories, with the dictionary DICT and the extra libFuzzer options
# FLAGS (one word list).  New corpus entries go to fuzz/run/NAME/corpus,
# crash, leak, timeout and out-of-memory inputs to fuzz/run/NAME/, the log
# to fuzz/run/NAME.log.  Prints one summary line,
#   fuzz_NAME: N execs in S s (R/s), C crashes, corpus K inputs
# and the end of the log when the run failed; exits with libFuzzer's
# status (0: nothing found).
name=$1 secs=$2 dict=$3 flags=$4
shift 4
run=fuzz/run/$name
mkdir -p "$run/corpus" || exit 1
seeds=
for d in "$@"; do
    [ -d "$d" ] && seeds="$seeds $d"
done
# One BLAS thread (none is used while planning, but OpenBLAS starts its
# pool when a plugin is loaded); leaks are errors; UBSan stops at the
# first report (the build has -fno-sanitize-recover too).
OPENBLAS_NUM_THREADS=1 \
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "fuzz/fuzz_$name" -max_total_time="$secs" -print_final_stats=1 \
    -timeout=25 -rss_limit_mb=2048 -dict="$dict" \
    -artifact_prefix="$run/" $flags "$run/corpus" $seeds \
    >"$run.log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run.log" |
        tail -n 1)
# -fork=N prints no final stats: the last "#N: cov: ..." line has them.
[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$run.log" |
                           tail -n 1)
took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$run.log" |
       tail -n 1)
crashes=$(find "$run" -maxdepth 1 -type f \
          \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
             -o -name 'oom-*' \) | wc -l)
corpus=$(find "$run/corpus" -type f | wc -l)
[ -n "$took" ] || took=$secs
rate=$(( ${execs:-0} / (took > 0 ? took : 1) ))
echo "fuzz_$name: ${execs:-0} execs in $took s ($rate/s)," \
     "$crashes crashes, corpus $corpus inputs (log $run.log)"
if [ "$rc" -ne 0 ]; then
    echo "fuzz_$name: FAILED (exit $rc); the end of $run.log:"
    tail -n 60 "$run.log" | sed 's/^/  | /'
fi
exit "$rc"
