#!/usr/bin/env bash
# The test command (README): services, build, typecheck, then every jest suite.
# Ends with one plain line `N passed, N failed` from jest's JSON report and
# exits non-zero when a test failed or none ran.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh || { echo "services failed"; exit 1; }
# shellcheck disable=SC1091
source .services/env
npm run -s build || { echo "build failed"; exit 1; }
npm run -s typecheck || { echo "typecheck failed"; exit 1; }
mkdir -p .test-results
REPORT=.test-results/jest.json
rm -f "$REPORT"
node --experimental-vm-modules node_modules/jest/bin/jest.js --json --outputFile="$REPORT" "$@"
JEST_RC=$?
if [ ! -f "$REPORT" ]; then echo "0 passed, 1 failed"; exit 1; fi
node -e '
  const r = require(process.argv[1]);
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests + r.numRuntimeErrorTestSuites} failed` + (skipped ? `, ${skipped} skipped` : ""));
  process.exit(r.numFailedTests + r.numRuntimeErrorTestSuites > 0 || r.numPassedTests === 0 ? 1 : 0);
' "$PWD/$REPORT"
SUMMARY_RC=$?
[ $JEST_RC -ne 0 ] && [ $SUMMARY_RC -eq 0 ] && exit $JEST_RC
exit $SUMMARY_RC
