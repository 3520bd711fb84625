#!/usr/bin/env bash
# The test command (README): lint (eslint + layering), services, build, typecheck, then every jest suite.
# Ends with one plain line `N passed, N failed` from jest's JSON report and
# exits non-zero when lint failed, a test failed, a unit/component test took over 10 s, or none ran.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-results
# Lint (scripts/lint.sh) needs neither the services nor the build: it runs while they start, and the
# run stops before jest when it fails.
LINT_LOG=.test-results/lint.log
bash scripts/lint.sh >"$LINT_LOG" 2>&1 &
LINT_PID=$!
bash scripts/services.sh || { echo "services failed"; exit 1; }
# shellcheck disable=SC1091
source .services/env
npm run -s build || { echo "build failed"; exit 1; }
npm run -s typecheck || { echo "typecheck failed"; exit 1; }
wait "$LINT_PID"
LINT_RC=$?
cat "$LINT_LOG"
[ $LINT_RC -eq 0 ] || { echo "lint failed (eslint or the layering rules, above; run: npm run -s lint)"; exit 1; }
REPORT=.test-results/jest.json
rm -f "$REPORT" "${REPORT%.json}.totals.json"
node --experimental-vm-modules node_modules/jest/bin/jest.js --json --outputFile="$REPORT" "$@"
JEST_RC=$?
if [ ! -f "$REPORT" ]; then echo "0 passed, 1 failed"; exit 1; fi
# Slow-test rule (CONTRIBUTING.md, tests): a test over 10 s fails the run unless its file is an
# integration test, by path (spec/e2e/, spec/connectors/) or by a `// @integration: <reason>` comment
# in its first lines. Each violation (a passed test) is printed by name and counted as failed, not passed, in the last line.
node -e '
  const fs = require("fs");
  const path = require("path");
  const r = require(process.argv[1]);
  const LIMIT_MS = 10_000;
  const integration = (file) => {
    const rel = path.relative(process.cwd(), file).split(path.sep).join("/");
    if (/^spec\/(e2e|connectors)\//.test(rel)) return true;
    try { return /^\s*\/\/ @integration:\s*\S/m.test(fs.readFileSync(file, "utf8").split("\n").slice(0, 20).join("\n")); } catch { return false; }
  };
  const slow = [];
  for (const f of r.testResults)
    for (const a of f.assertionResults)
      if (a.status === "passed" && (a.duration ?? 0) > LIMIT_MS && !integration(f.name))
        slow.push(`SLOW TEST (${a.duration} ms > ${LIMIT_MS} ms, not marked integration): ${path.relative(process.cwd(), f.name)} › ${a.fullName ?? a.title}`);
  for (const line of slow) console.log(line);
  if (slow.length) console.log(`${slow.length} test(s) over ${LIMIT_MS} ms in unit/component files: make them wait on state or a FakeClock, or mark the file // @integration: <reason> (CONTRIBUTING.md)`);
  const failed = r.numFailedTests + r.numRuntimeErrorTestSuites + slow.length;
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests - slow.length} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  // The same counts for the combined last line of .ci/run (which cannot re-derive the slow-test rule from the jest report).
  fs.writeFileSync(process.argv[1].replace(/\.json$/, ".totals.json"), JSON.stringify({ passed: r.numPassedTests - slow.length, failed }));
  process.exit(failed > 0 || r.numPassedTests === 0 ? 1 : 0);
' "$PWD/$REPORT"
SUMMARY_RC=$?
[ $JEST_RC -ne 0 ] && [ $SUMMARY_RC -eq 0 ] && exit $JEST_RC
exit $SUMMARY_RC
