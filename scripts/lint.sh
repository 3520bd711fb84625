#!/usr/bin/env bash
# `npm run -s lint` (and a step of `npm test`): ESLint with typescript-eslint (eslint.config.js) and the layering
# of CONTRIBUTING.md checked by dependency-cruiser (.dependency-cruiser.mjs), side by side on the two cores.
# Prints each tool's findings, then one line naming what failed; exits non-zero when either found an error.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=node_modules/.bin
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT

# `typescript` is TypeScript 6 (the compiler API that typescript-eslint reads types with) and `tsc` must stay
# TypeScript 7 (@typescript/native), the compiler of the build: both come from package.json's aliases, and npm
# links `tsc` by path order. Checked here so a change of layout cannot silently build with the other one.
TSC_VERSION=$("$BIN/tsc" --version 2>&1)
case "$TSC_VERSION" in
  "Version 7."*) ;;
  *) echo "lint: node_modules/.bin/tsc is '$TSC_VERSION', expected TypeScript 7 (@typescript/native); run npm ci"; exit 1 ;;
esac

"$BIN/eslint" --max-warnings 0 . >"$LOGS/eslint" 2>&1 &
ESLINT_PID=$!
"$BIN/depcruise" --config .dependency-cruiser.mjs --output-type err-long lib bin >"$LOGS/depcruise" 2>&1 &
DEPCRUISE_PID=$!
wait "$ESLINT_PID"; ESLINT_RC=$?
wait "$DEPCRUISE_PID"; DEPCRUISE_RC=$?

cat "$LOGS/eslint" "$LOGS/depcruise"
FAILED=()
[ "$ESLINT_RC" -eq 0 ] || FAILED+=("eslint (exit $ESLINT_RC: the findings above; rules in eslint.config.js)")
[ "$DEPCRUISE_RC" -eq 0 ] || FAILED+=("layering (dependency-cruiser, exit $DEPCRUISE_RC: an import against CONTRIBUTING.md \"Layout and imports\"; rules in .dependency-cruiser.mjs)")
if [ ${#FAILED[@]} -gt 0 ]; then
  for f in "${FAILED[@]}"; do echo "lint FAILED: $f"; done
  exit 1
fi
echo "lint: eslint and layering clean"
