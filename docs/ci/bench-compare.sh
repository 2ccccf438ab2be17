#!/usr/bin/env bash
# Benchmarks two commits of a crate on this machine and compares them:
# what docs/ci/bench.yml runs on a pull request, and what you run locally.
#
#   BIN=mybench docs/ci/bench-compare.sh REPO BASE_REF HEAD_REF OUT_DIR
#
# Builds the bench binary BIN of each commit (in a git worktree of REPO,
# sharing one target dir, so only what differs recompiles), then runs them
# interleaved, RUNS times a side, alternating which goes first (ABBA), each
# run with RUNMETRICS_BENCH_OUT=<OUT_DIR>/try<t>/<side>-<i>: the binary
# writes there one run file per benchmark, named after it (CriterionRuns'
# new/<id>.json, or end_run's file renamed). Then
#   runmetrics compare --each --format markdown --fail-on-regression \
#       'OUT_DIR/try<t>/base-*' 'OUT_DIR/try<t>/head-*'
# merges each benchmark's runs a side and judges against their spread; the
# table goes to OUT_DIR/comment.md (the last try's; each try's beside its
# runs) for the pull-request comment.
#
# Settings (environment): RUNS (runs a side, default 5); TRIES (whole
# rounds of runs and comparison, default 1: more to measure the recipe's
# false-alarm rate); PROFILE (cargo profile, default release); THRESHOLD
# (compare's, default 5%); RUNMETRICS (the CLI, default `runmetrics` on
# PATH); CARGO_TARGET_DIR (default OUT_DIR/target); CARGO_FLAGS (added to
# cargo build).
#
# Prints one line per try ("try 1: regressed" or "try 1: no regression")
# and exits 1 when a try found a regression, 0 when none did, 2 when
# something failed.
set -euo pipefail

if [ $# -ne 4 ]; then
  echo "usage: BIN=<bench binary> $0 REPO BASE_REF HEAD_REF OUT_DIR" >&2
  exit 2
fi
repo=$1
base_ref=$2
head_ref=$3
out=$4
bin=${BIN:?set BIN to the name of the bench binary (a [[bin]] of the crate)}
runs=${RUNS:-5}
tries=${TRIES:-1}
profile=${PROFILE:-release}
threshold=${THRESHOLD:-5%}
runmetrics=${RUNMETRICS:-runmetrics}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$out/target}
case $profile in
  dev | test) profile_dir=debug ;;
  bench) profile_dir=release ;;
  *) profile_dir=$profile ;;
esac

work=$(mktemp -d)
cleanup() {
  for side in base head; do
    git -C "$repo" worktree remove --force "$work/$side" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Build each side once, keeping its binary.
for side in base head; do
  if [ "$side" = base ]; then ref=$base_ref; else ref=$head_ref; fi
  git -C "$repo" worktree add --quiet --detach "$work/$side" "$ref"
  # shellcheck disable=SC2086
  (cd "$work/$side" && cargo build --quiet --profile "$profile" --bin "$bin" ${CARGO_FLAGS:-})
  cp "$CARGO_TARGET_DIR/$profile_dir/$bin" "$work/$side.bin"
done

regressed=0
for t in $(seq 1 "$tries"); do
  dir=$out/try$t
  rm -rf "$dir"
  mkdir -p "$dir"
  for i in $(seq 1 "$runs"); do
    if [ $((i % 2)) -eq 1 ]; then order="base head"; else order="head base"; fi
    for side in $order; do
      mkdir -p "$dir/$side-$i"
      (cd "$work/$side" && RUNMETRICS_BENCH_OUT="$dir/$side-$i" "$work/$side.bin" >/dev/null)
    done
  done
  status=0
  "$runmetrics" compare --each --format markdown --fail-on-regression --threshold "$threshold" \
    "$dir/base-*" "$dir/head-*" >"$dir/comment.md" 2>"$dir/compare.err" || status=$?
  cp "$dir/comment.md" "$out/comment.md"
  case $status in
    0) echo "try $t: no regression" ;;
    1)
      echo "try $t: regressed"
      regressed=1
      ;;
    *)
      cat "$dir/compare.err" >&2
      exit 2
      ;;
  esac
done
exit "$regressed"
