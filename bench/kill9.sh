#!/usr/bin/env bash
# kill -9 at every step of a reset, looped, against the real server process; prints
#   stuck N, changed-without-audit N, duplicates N
# for this tree and for a baseline commit built in the same run (0, 0, 0 is the goal).
#
#   bench/kill9.sh [LOOPS] [BASELINE_COMMIT]     defaults: 100, 8e26445 (before crash-safe finish)
#
# Each loop starts a flow for the demo user (security questions), kills the server with
# SIGKILL at a random moment of one step (start, challenge, verify or the password write, in
# turn; the password kills are aimed at the measured length of that step), restarts it and
# drives the flow to its end. Then the audit log and the outbox are read from the database.
# SSPR_TEST_DB=postgres runs it on PostgreSQL (SSPR_TEST_POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
LOOPS=${1:-100}
BASE=${2:-8e26445}
BASE_LOOPS=${BASE_LOOPS:-20}

echo "== building this tree" >&2
cargo build -q -p sspr --bin sspr
cargo test -q -p sspr --test integration --no-run 2>/dev/null

run() { # label, loops, extra env...
  local label=$1 loops=$2; shift 2
  local out
  out=$(env "$@" KILL9_LOOPS="$loops" cargo test -q -p sspr --test integration \
    faults::kill_9 -- --nocapture 2>&1 || true)
  local line
  line=$(grep -E '^kill9: stuck' <<<"$out" | tail -1)
  local settled
  settled=$(grep -E '^kill9: writes interrupted' <<<"$out" | tail -1 | sed 's/^kill9: //')
  printf '| %s | %s | %s | %s |\n' "$label" "$loops" "${line#kill9: }" "${settled:-n/a}"
}

BASE_BIN=""
if [ -n "$BASE" ] && [ "$BASE" != "none" ]; then
  echo "== building baseline $BASE" >&2
  WT=$(mktemp -d /tmp/sspr-kill9-base.XXXXXX)
  git worktree add -q --detach "$WT" "$BASE"
  trap 'git worktree remove --force "$WT" >/dev/null 2>&1 || true' EXIT
  CARGO_TARGET_DIR="$PWD/target/kill9-baseline" cargo build -q --manifest-path "$WT/Cargo.toml" -p sspr --bin sspr
  BASE_BIN="$PWD/target/kill9-baseline/debug/sspr"
fi

echo
echo "| build | loops | result | writes interrupted mid-flight |"
echo "|---|---|---|---|"
run "this tree ($(git rev-parse --short HEAD))" "$LOOPS"
if [ -n "$BASE_BIN" ] && [ "${BASE_LOOPS}" != 0 ]; then
  # The baseline has no lease: a flow interrupted mid-write never settles, and the loop waits
  # 17 s on each before counting it stuck, so it runs fewer loops.
  run "baseline ($BASE)" "$BASE_LOOPS" KILL9_SSPR_BIN="$BASE_BIN" KILL9_BASELINE=1
fi

echo
echo "outbox (real SMTP listener, 40 messages, ${OUTBOX_KILLS:-4} kills while sending):"
KILL9_OUTBOX_KILLS=${OUTBOX_KILLS:-4} cargo test -q -p sspr --test integration \
  faults::kill_9_while -- --nocapture 2>&1 | grep -E '^outbox kill9' || true
