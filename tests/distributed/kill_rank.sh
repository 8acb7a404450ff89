#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Failure behaviour of `mpirun -np 2 sentiment_trainer train`: a rank killed (SIGKILL) mid-run ends the whole job with
# an error naming that rank, and a rank that stops answering (SIGSTOP) ends it after --ddp-timeout with an error
# naming the collective; neither takes longer than 60 s, and every checkpoint left behind is complete (a 2-process
# resume from the newest one trains on).
# Usage: kill_rank.sh SENTIMENT_TRAINER SHARED_DIR WORK_DIR
set -euo pipefail
prog=$1
shared=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
head -n 201 "$shared/data/sentiment/sst2/train.tsv" >"$work/train.tsv"
cat >"$work/config.json" <<'JSON'
{"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
 "intermediate_size": 64, "max_position_embeddings": 128, "hidden_act": "gelu"}
JSON
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
job=
fail() {
  echo "kill_rank.sh: FAILED: $*" >&2
  exit 1
}
# a failed check leaves no rank behind
trap '[ -z "$job" ] || pkill -9 -P "$job" 2>/dev/null || true; [ -z "$job" ] || kill -9 "$job" 2>/dev/null || true' EXIT

# train [extra flags...]: mpirun -np 2 in the background into $work/$name, output in $work/$name.log
start_training() {
  local name=$1
  shift
  mpirun -np 2 --oversubscribe --bind-to none "$prog" train --config "$work/config.json" \
    --tokenizer "$shared/data/bert-base-uncased" --train "$work/train.tsv" --validation-split 0.1 \
    --output-dir "$work/$name" --batch-size 4 --max-steps 100000 --eval-strategy no --save-strategy steps \
    --save-steps 4 --save-total-limit 2 --logging-steps 1 --threads 1 "$@" >"$work/$name.log" 2>&1 &
  job=$!
}

# the PID of rank $2 of the job writing into $work/$1
rank_pid() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "--output-dir $work/$1 " || continue
    tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "${p#/proc/}"; return; }
  done
}

# the newest checkpoint's step in $work/$1 (0 when none)
newest_step() {
  local d step=0
  for d in "$work/$1"/checkpoint-*; do
    [ -d "$d" ] && [ "${d##*-}" -gt "$step" ] && step=${d##*-}
  done
  echo "$step"
}

# waits until the job writing into $work/$1 has saved a checkpoint at step $2 or later (--save-total-limit may
# already have removed checkpoint-$2 itself)
wait_for_checkpoint() {
  local i
  for i in $(seq 600); do
    [ "$(newest_step "$1")" -ge "$2" ] && return
    kill -0 "$job" 2>/dev/null || fail "$1 ended before checkpoint-$2: $(tail -5 "$work/$1.log")"
    sleep 0.2
  done
  fail "$1: no checkpoint at step $2 or later after 120 s"
}

# waits for the job to end; sets rc (its exit status) and secs (the seconds it took after $1, from date +%s%3N)
wait_job() {
  for _ in $(seq 600); do
    kill -0 "$job" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$job" 2>/dev/null && fail "the job still runs 60 s after the failure"
  rc=0
  wait "$job" || rc=$?
  job=
  local ms=$(($(date +%s%3N) - $1))
  secs=$((ms / 1000)).$(printf %03d $((ms % 1000)))
}

check_checkpoints_complete() {
  local d
  for d in "$work/$1"/checkpoint-*; do
    for f in config.json model.safetensors optimizer.safetensors trainer_state.json; do
      [ -s "$d/$f" ] || fail "$d is incomplete: no $f"
    done
  done
}

for victim in 1 0; do
  name=killed-$victim
  start_training "$name"
  wait_for_checkpoint "$name" 8
  pid=$(rank_pid "$name" "$victim")
  [ -n "$pid" ] || fail "no process of rank $victim found"
  t0=$(date +%s%3N)
  kill -9 "$pid"
  wait_job "$t0"
  echo "kill_rank.sh: rank $victim killed: the job ended in $secs s with status $rc"
  [ "$rc" -ne 0 ] || fail "the job exited 0 after rank $victim was killed"
  grep -q "rank $victim" "$work/$name.log" || fail "the job's output does not name rank $victim: $(tail -20 "$work/$name.log")"
  check_checkpoints_complete "$name"
done

# a resume from the newest checkpoint the killed writer (rank 0) left trains on with 2 processes
step=$(newest_step killed-0)
newest=$work/killed-0/checkpoint-$step
mpirun -np 2 --oversubscribe --bind-to none "$prog" train --config "$work/config.json" \
  --tokenizer "$shared/data/bert-base-uncased" --train "$work/train.tsv" --validation-split 0.1 \
  --output-dir "$work/killed-0" --batch-size 4 --max-steps $((step + 2)) --eval-strategy no --save-strategy steps \
  --save-steps 4 --save-total-limit 2 --logging-steps 1 --threads 1 --resume-from-checkpoint "$newest" \
  >"$work/resumed.log" 2>&1 || fail "the resume from $newest failed: $(tail -5 "$work/resumed.log")"
grep -q "Resumed from $newest at step $step" "$work/resumed.log" || fail "no resume message in $work/resumed.log"

# a rank that hangs: the other gives up after --ddp-timeout and names the collective
name=stopped
start_training "$name" --ddp-timeout 5
wait_for_checkpoint "$name" 4
pid=$(rank_pid "$name" 1)
[ -n "$pid" ] || fail "no process of rank 1 found"
t0=$(date +%s%3N)
kill -STOP "$pid"
wait_job "$t0"
kill -9 "$pid" 2>/dev/null || true
echo "kill_rank.sh: rank 1 stopped: the job ended in $secs s with status $rc"
[ "$rc" -ne 0 ] || fail "the job exited 0 after rank 1 stopped"
grep -q "did not complete within 5 s" "$work/$name.log" || fail "no timeout error: $(tail -20 "$work/$name.log")"
check_checkpoints_complete "$name"
echo "kill_rank.sh: passed"
