#!/usr/bin/env bash
# bench/sweep.sh - how Kraken's cost grows with load, connections, topics,
# fan-out and payload size (the figures of docs/performance.md).
#
# Runs nothing but bench/kraken_bench (which starts and stops its own server
# for every run), one short run per point, and prints CSV on stdout:
#   sweep,param,rep,<kraken_bench --csv columns>
# Progress and kraken_bench's own messages go to stderr.  Run it from the
# repository root after `make all` and building bench/kraken_bench.
#
#   bench/sweep.sh [SECTION...] > sweep.csv
#
# SECTIONs (default: all but latpayload, in this order):
#   load        latency workload vs load: closed loop at --depth 8, 4, 2, 1 and
#               fixed --rate 2000, 5000, 10000, 20000 publish requests/s per
#               publisher, each also against the null responder (%null)
#   conns       idle workload with 1000, 5000, 15000 connections (RSS/connection)
#   topics      idle workload, 15000 connections x 5, 20, 80 topics each
#   fanout      fanout workload with 50, 200, 400 subscribers
#   payload     fanout workload with 32, 64, 1024, 16384-byte payloads
#               (32 is the smallest: the payload carries a 32-byte stamp)
#   latpayload  latency workload with 32, 64, 1024, 16384-byte payloads
#               (32 is the smallest: the payload carries a 32-byte stamp)
#
# Environment: REPS (runs per point, default 1), DURATION (measured seconds
# per run, default 3), BENCH (default bench/kraken_bench), EXTRA (more
# kraken_bench options for every run, e.g. "--seed 7").
#
# Exit status: 1 if any run failed or reported a lost, duplicated, bad or
# unexpected delivery or an error (such lines are also echoed to stderr).
set -u

BENCH=${BENCH:-bench/kraken_bench}
REPS=${REPS:-1}
DURATION=${DURATION:-3}
EXTRA=${EXTRA:-}
header_done=0
status=0

# run SWEEP PARAM OPTIONS...: REPS runs of kraken_bench --csv OPTIONS
run() {
    local sweep=$1 param=$2 rep out line
    shift 2
    for ((rep = 1; rep <= REPS; rep++)); do
        echo "sweep.sh: $sweep $param (run $rep/$REPS): $BENCH --csv --duration $DURATION $* $EXTRA" >&2
        # shellcheck disable=SC2086
        if ! out=$("$BENCH" --csv --duration "$DURATION" "$@" $EXTRA); then
            echo "sweep.sh: FAILED: $sweep $param run $rep" >&2
            status=1
            continue
        fi
        {
            # kraken_bench prints a description of the run before its CSV header
            while IFS= read -r line && [ "${line#workload,}" = "$line" ]; do :; done
            if [ "$header_done" = 0 ]; then
                echo "sweep,param,rep,$line"
                header_done=1
            fi
            while IFS= read -r line; do
                echo "$sweep,$param,$rep,$line"
                # columns 21-25 of kraken_bench's CSV: lost,dup,bad,unexpected,errors
                # (the null responder delivers nothing by design: its rows count all as lost)
                IFS=, read -r -a f <<<"$line"
                [ "${f[1]}" = null ] && continue
                if [ "${f[20]:-0}" != 0 ] || [ "${f[21]:-0}" != 0 ] || [ "${f[22]:-0}" != 0 ] ||
                    [ "${f[23]:-0}" != 0 ] || [ "${f[24]:-0}" != 0 ]; then
                    echo "sweep.sh: NON-ZERO lost/dup/bad/unexpected/errors: $sweep $param run $rep: $line" >&2
                    status=1
                fi
            done
        } <<<"$out"
    done
}

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(load conns topics fanout payload)

for s in "${sections[@]}"; do
    case $s in
    load)
        for d in 8 4 2 1; do run load "depth=$d" --null --workloads latency --depth "$d"; done
        for r in 2000 5000 10000 20000; do run load "rate=$r" --null --workloads latency --rate "$r"; done
        ;;
    conns)
        for c in 1000 5000 15000; do run conns "$c" --workloads idle --idle-conns "$c"; done
        ;;
    topics)
        for t in 5 20 80; do run topics "$t" --workloads idle --idle-topics-per-conn "$t"; done
        ;;
    fanout)
        for n in 50 200 400; do run fanout "$n" --workloads fanout --fan-subs "$n"; done
        ;;
    payload)
        for b in 32 64 1024 16384; do run payload "$b" --workloads fanout --fan-payload "$b"; done
        ;;
    latpayload)
        for b in 32 64 1024 16384; do run latpayload "$b" --workloads latency --lat-payload "$b"; done
        ;;
    *)
        echo "sweep.sh: unknown section '$s' (load conns topics fanout payload latpayload)" >&2
        exit 2
        ;;
    esac
done
exit $status
