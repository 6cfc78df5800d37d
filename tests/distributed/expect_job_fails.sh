#!/bin/sh
# Passes when COMMAND fails (non-zero status) within MAX_SECONDS and its output matches PATTERN
# (grep -E; empty: anything): a job with a dead or hung rank must end, on every rank, in bounded
# time. Status 77 (skipped) passes through. COMMAND is killed after 3 * MAX_SECONDS.
#   expect_job_fails.sh MAX_SECONDS PATTERN COMMAND [ARGS...]
set -u
max=$1 pattern=$2
shift 2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s%N)
timeout -s KILL $((max * 3)) "$@" >"$log" 2>&1
rc=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
cat "$log"
[ $rc -eq 77 ] && exit 77
echo "expect_job_fails: status $rc after $elapsed_ms ms (limit ${max} s)"
if [ $rc -eq 0 ]; then echo "expect_job_fails: the job succeeded but should have failed"; exit 1; fi
if [ $elapsed_ms -gt $((max * 1000)) ]; then echo "expect_job_fails: too slow"; exit 1; fi
if [ -n "$pattern" ] && ! grep -Eq "$pattern" "$log"; then echo "expect_job_fails: no line matches '$pattern'"; exit 1; fi
exit 0
