#!/bin/sh
# Builds the original Erlang Kraken (github.com/Asana/kraken) for
# `make test-original` (docs/cluster.md, "Tests"), from a checkout of its
# source, into OUT (a directory outside this repository: nothing of the
# original is committed here).
#
#   test/build_original.sh SRC OUT
#
# SRC: a source tree (with src/*.erl) or a git directory (its HEAD is
# exported).  Its `log4erl' dependency is replaced by a shim written here
# (log4erl calls go to OTP's logger); its `sync' dependency (a development
# reloader) is not needed.  OUT/ebin then holds the application; OUT/COMMIT
# names the commit when SRC was a git directory.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SRC OUT" >&2; exit 2; }
src=$1
out=$2
rm -rf "$out"
mkdir -p "$out/src" "$out/ebin"
if [ -d "$src/src" ]; then
    cp "$src"/src/*.erl "$src"/src/*.hrl "$src"/src/kraken.app.src "$out/src/" 2>/dev/null || true
    git -C "$src" rev-parse HEAD > "$out/COMMIT" 2>/dev/null || echo unknown > "$out/COMMIT"
else
    git --git-dir="$src" archive HEAD src | tar -x -C "$out"
    git --git-dir="$src" rev-parse HEAD > "$out/COMMIT"
fi
cat > "$out/src/log4erl.erl" <<'ERL'
%% A stand-in for log4erl (written for Kraken in C's tests): the calls the
%% original Kraken makes, sent to OTP's logger.
-module(log4erl).
-export([add_console_appender/2, add_file_appender/2, change_log_level/1,
         debug/1, debug/2, info/1, info/2, warn/1, warn/2, error/1, error/2]).
add_console_appender(_, _) -> ok.
add_file_appender(_, _) -> ok.
change_log_level(_) -> ok.
debug(F) -> debug(F, []).
debug(F, A) -> logger:debug(F, A).
info(F) -> info(F, []).
info(F, A) -> logger:info(F, A).
warn(F) -> warn(F, []).
warn(F, A) -> logger:warning(F, A).
error(F) -> ?MODULE:error(F, []).
error(F, A) -> logger:error(F, A).
ERL
printf '{application, log4erl, [{description, "log4erl stand-in"}, {vsn, "0"},\n  {modules, [log4erl]}, {registered, []}, {applications, [kernel, stdlib]}]}.\n' \
    > "$out/ebin/log4erl.app"
erlc -W0 -o "$out/ebin" "$out"/src/*.erl
cp "$out/src/kraken.app.src" "$out/ebin/kraken.app"
echo "built the original Kraken $(cat "$out/COMMIT") in $out/ebin"
