#!/usr/bin/env bash
# Installs what the tests need (pip packages, Debian's chromium and postgresql) and runs the whole suite.
# The README's test command; .ci/run calls it unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
python3 -m pip install -q -r requirements-test.txt
# compiled once here: with PYTHONDONTWRITEBYTECODE (set on this kind of machine) every app the tests start would
# compile the package again (the __pycache__ folders are ignored by git)
python3 -m compileall -q annotator bench tests
# a throwaway PostgreSQL server for the tests of the PostgreSQL backend, stopped on exit
pgdir=$(mktemp -d)
pgport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'bash scripts/pg.sh stop "$pgdir"' EXIT
# no fsync in this server: the tests check the app's commits, never a crash of PostgreSQL itself, and the
# suite's own disk traffic must not slow every PostgreSQL commit (the benches' server keeps fsync)
bash scripts/pg.sh start "$pgdir" "$pgport" -c fsync=off -c synchronous_commit=off -c full_page_writes=off
export ANNOTATOR_TEST_PG_URL="postgresql://postgres@127.0.0.1:$pgport/postgres" ANNOTATOR_REQUIRE_PG=1
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 ANNOTATOR_REQUIRE_BROWSER=1
# pytest exits 5 when it collected no test: that is a failure here too
if [ "$#" -gt 0 ]; then  # the tests named, as asked (add -n 4 for several workers)
  python3 -m pytest -q -p no:cacheprovider "$@"
  exit
fi
# The whole suite in two phases. Most tests wait on servers, browsers and child processes, so
# ANNOTATOR_TEST_WORKERS pytest-xdist workers (3 by default, on 2 cores) run them side by side, a whole
# file on one worker so that a module's servers start once. Then, alone on the machine, the tests marked
# `serial` (pytest.ini): they flood a server and check that it stays fair, which other workers' load could
# break. Both phases always run; the script fails if either does.
status=0
python3 -m pytest -q -p no:cacheprovider -n "${ANNOTATOR_TEST_WORKERS:-3}" --dist loadfile -m "not serial" || status=$?
python3 -m pytest -q -p no:cacheprovider -m serial || status=$?
exit "$status"
