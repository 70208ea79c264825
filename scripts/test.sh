#!/usr/bin/env bash
# Installs what the tests need (pip packages, Debian's chromium) and runs the whole suite.
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
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 ANNOTATOR_REQUIRE_BROWSER=1
# pytest exits 5 when it collected no test: that is a failure here too
python3 -m pytest -q -p no:cacheprovider "$@"
