#!/usr/bin/env bash
# Run the whole test suite (slow and browser tests included) with the venv that scripts/setup.sh
# made; extra arguments go to pytest. Artifacts land in test-artifacts/: junit.xml, pytest.log, and
# whatever tests write to $QA_TEST_ARTIFACTS (screenshots and the like).
# Exit status: pytest's, except that "no tests collected" (pytest's 5) is a failure too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ARTIFACTS=$PWD/test-artifacts
mkdir -p "$ARTIFACTS"
export QA_TEST_ARTIFACTS=$ARTIFACTS

printf '\n\033[1m==> tests (pytest, every marker; artifacts in %s)\033[0m\n' "$ARTIFACTS"
set +e
.venv/bin/python -m pytest -ra --durations=15 \
  --junitxml="$ARTIFACTS/junit.xml" -o junit_suite_name=qa \
  "$@" 2>&1 | tee "$ARTIFACTS/pytest.log"
rc=${PIPESTATUS[0]}
set -e

if [ "$rc" -eq 5 ]; then
  echo "run-tests.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
