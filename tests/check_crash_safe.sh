#!/bin/sh
# Crash safety of smlp-train's checkpoints (issue 7, part 4).
#
# A reference run trains mixer_fmnist on a tiny data set for EPOCHS short
# epochs (one checkpoint per epoch, so writes are frequent).  Then a run
# of the same job is killed with SIGKILL at a random moment, ROUNDS times,
# each time resuming from whatever checkpoint is on disk.  After every
# kill the checkpoint on disk must be whole (the safetensors header
# matches the file size) and must load in smlp itself (smlp-run
# --weights), and its position must never go back.  First 10 kills are
# aimed at the writes (as soon as the writer's temporary file appears),
# then ROUNDS at random times.  Finally the job is
# resumed to the end: its checkpoint must equal the reference run's,
# tensor for tensor and byte for byte (parameters, optimizer state).
# Kill times are drawn from a seeded generator (SMLP_CRASH_SEED, default
# 1) and printed, so that a failure can be replayed.
# Prints "N passed, M failed"; exit 77 without python3.
B=${SMLP_TEST_BUILDDIR:-.}
TRAIN="$B/tools/smlp-train"
RUN="$B/tools/smlp-run"
MIXER="$B/graphs/mixer_fmnist.fbs"
PY=${PYTHON3:-python3}
[ "$PY" = no ] && PY=python3
command -v "$PY" >/dev/null 2>&1 || { echo "skip - no python3"; exit 77; }
ROUNDS=${SMLP_CRASH_ROUNDS:-12}
EPOCHS=24
T=$(mktemp -d /tmp/smlp-crash-test.XXXXXX)
. "${SMLP_TEST_SRCDIR:-.}/tests/shlib.sh"

# Data: 64 training and 32 test images of 10 easy classes (shlib.sh).
make_idx_data "$T/data" 64 32 || exit 99

# The checkpoints are read by st (shlib.sh, tests/st.py).  kill.py
# killwrite OUT LIMIT CMD...: runs CMD, watches for OUT.tmp.* (a checkpoint
# being written) and kills CMD with SIGKILL 0-3 ms after one appears (or
# after LIMIT seconds); prints "write" when a temporary file was there at
# the kill, else "time".  kill.py sleeps SEED N: N seeded kill times.
cat >"$T/kill.py" <<'PY'
import glob, os, random, signal, subprocess, sys, time
cmd = sys.argv[1]
if cmd == "killwrite":
    out, limit = sys.argv[2], float(sys.argv[3])
    p = subprocess.Popen(sys.argv[4:], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    r, t0, hit = random.Random(os.getpid()), time.time(), "time"
    while p.poll() is None and time.time() - t0 < limit:
        if glob.glob(out + ".tmp.*"):
            time.sleep(r.uniform(0, 0.003))
            hit = "write" if glob.glob(out + ".tmp.*") else "time"
            break
        time.sleep(0.0002)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait()
    print(hit)
elif cmd == "sleeps":
    r = random.Random(int(sys.argv[2]))
    print(" ".join("%.2f" % r.uniform(0.3, 2.5)
                   for _ in range(int(sys.argv[3]))))
PY
kp() { "$PY" "$T/kill.py" "$@"; }

JOB="$MIXER --data $T/data --batch 16 --limit-test 32 --threads 1 \
--epochs $EPOCHS --lr 2e-3 --progress lines"

# The reference: the whole job, uninterrupted.
if "$TRAIN" $JOB --out "$T/ref.st" >"$T/ref.log" 2>&1; then
    ok "reference run ($EPOCHS epochs)"
else
    bad "reference run"; sed 's/^/  | /' "$T/ref.log"
    echo "$pass passed, $fail failed"; exit 1
fi

# Kills aimed at the writes: as soon as a temporary checkpoint file shows
# up (the writer is between mkstemp and rename), within 0-3 ms.
last=0
inwrite=0
for i in 1 2 3 4 5 6 7 8 9 10; do
    if [ -f "$T/c.st" ]; then res="--resume $T/c.st"; else res=; fi
    # shellcheck disable=SC2086
    hit=$(kp killwrite "$T/c.st" 20 "$TRAIN" $JOB --out "$T/c.st" $res)
    [ "$hit" = write ] && inwrite=$((inwrite + 1))
    [ -f "$T/c.st" ] || continue
    if ! st check "$T/c.st" 2>"$T/why"; then
        bad "after a kill during a write the checkpoint is not whole"
        sed 's/^/  | /' "$T/why"
    elif ! "$RUN" "$MIXER" --weights "$T/c.st" --repeat 1 >"$T/run.log" 2>&1
    then
        bad "smlp-run cannot load the checkpoint after a kill during a write"
        sed 's/^/  | /' "$T/run.log"
    fi
    step=$(st meta "$T/c.st" train.step "?")
    if [ "$step" -lt "$last" ] 2>/dev/null; then
        bad "the checkpoint went back from step $last to $step"
    fi
    last=$step
done
if [ $inwrite -ge 1 ]; then
    ok "$inwrite of 10 kills landed while a checkpoint was being written; the previous one stayed whole and loadable"
else
    bad "no kill landed inside a checkpoint write (the test aims at them)"
fi
sleeps=$(kp sleeps "${SMLP_CRASH_SEED:-1}" "$ROUNDS")
echo "# kill after (s): $sleeps"
kills=0
whole=0
loads=0
for s in $sleeps; do
    if [ -f "$T/c.st" ]; then
        "$TRAIN" $JOB --out "$T/c.st" --resume "$T/c.st" >"$T/c.log" 2>&1 &
    else
        "$TRAIN" $JOB --out "$T/c.st" >"$T/c.log" 2>&1 &
    fi
    pid=$!
    sleep "$s"
    if kill -KILL $pid 2>/dev/null; then kills=$((kills + 1)); fi
    wait $pid 2>/dev/null
    [ -f "$T/c.st" ] || continue
    if st check "$T/c.st" 2>"$T/why"; then
        whole=$((whole + 1))
    else
        bad "after a kill at ${s}s the checkpoint is not whole"
        sed 's/^/  | /' "$T/why"
    fi
    # smlp itself loads it (parameters by name, shapes and dtypes checked).
    if "$RUN" "$MIXER" --weights "$T/c.st" --repeat 1 >"$T/run.log" 2>&1
    then loads=$((loads + 1))
    else bad "smlp-run cannot load the checkpoint after a kill at ${s}s"
         sed 's/^/  | /' "$T/run.log"; fi
    step=$(st meta "$T/c.st" train.step "?")
    if [ "$step" -lt "$last" ] 2>/dev/null; then
        bad "the checkpoint went back from step $last to $step"
    fi
    last=$step
done
ok "$kills kills with SIGKILL at random times; checkpoint whole $whole times, loaded $loads times (last at step $last)"

# Finish from whatever is there.
if [ -f "$T/c.st" ]; then
    "$TRAIN" $JOB --out "$T/c.st" --resume "$T/c.st" >"$T/c.log" 2>&1
else
    "$TRAIN" $JOB --out "$T/c.st" >"$T/c.log" 2>&1
fi
rc=$?
if [ $rc -eq 0 ]; then ok "the killed job resumes to the end"
else bad "resume to the end: exit $rc"; sed 's/^/  | /' "$T/c.log"; fi
if st same "$T/ref.st" "$T/c.st" 2>"$T/why"; then
    ok "killed $kills times and resumed = uninterrupted run, bit for bit"
else
    bad "killed and resumed differs from the uninterrupted run"
    sed 's/^/  | /' "$T/why"
fi
if ls "$T" | grep -q '\.tmp'; then
    echo "# note: temporary files of killed writes: $(ls "$T" | grep '\.tmp' | tr '\n' ' ')"
fi
rm -rf "$T"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
