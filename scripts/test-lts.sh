#!/usr/bin/env bash
# Runtime matrix, second leg: runs the jest suite again on the Node LTS that the
# Docker image uses (NODE_LTS_MAJOR, read from the Dockerfile), installed from
# the npm registry as the package node@<major>. better-sqlite3 is rebuilt for
# that Node ABI in a copy of node_modules, so the Node 20 tree is untouched.
# Prints `LTS: N passed, N failed` and exits non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAJOR=$(sed -n 's/^ARG NODE_VERSION=\([0-9]*\).*/\1/p' Dockerfile)
CACHE="${OUTPOST_SERVICES_DIR:-/tmp/outpost-services}/node$MAJOR"
log() { echo "[lts] $*" >&2; }
mkdir -p "$CACHE"
# A report left by an earlier run must never count for this one.
rm -f "$CACHE/work/.test-results/jest-lts.json"
if [ ! -x "$CACHE/node_modules/.bin/node" ]; then
  log "installing node@$MAJOR from the npm registry"
  (cd "$CACHE" && npm install --no-save --no-audit --no-fund --loglevel=error "node@$MAJOR" >&2) || exit 1
fi
NODE_BIN="$CACHE/node_modules/.bin"
HEADERS=$(dirname "$(dirname "$(dirname "$(find "$CACHE/node_modules" -path '*include/node/node_api.h' | head -1)")")")
log "using $("$NODE_BIN/node" --version) (headers: $HEADERS)"

# A work copy of the project with its own node_modules rebuilt for this ABI.
WORK="$CACHE/work"
LOCK_SUM=$(sha1sum package-lock.json | cut -c1-12)
if [ ! -f "$WORK/.lock-$LOCK_SUM" ]; then
  rm -rf "$WORK"; mkdir -p "$WORK"
  cp -a node_modules "$WORK/node_modules"
  cp package.json package-lock.json "$WORK/"
  (cd "$WORK" && PATH="$NODE_BIN:$PATH" npm rebuild better-sqlite3 --nodedir="$HEADERS" --loglevel=error >&2) || exit 1
  touch "$WORK/.lock-$LOCK_SUM"
fi
# Fresh sources and build output on every run.
rsync -a --delete --exclude node_modules --exclude .git --exclude '.lock-*' "$ROOT/" "$WORK/" 2>/dev/null \
  || { (cd "$ROOT" && tar cf - --exclude=./node_modules --exclude=./.git .) | (cd "$WORK" && tar xf -); }
cd "$WORK"
# shellcheck disable=SC1091
source "$ROOT/.services/env"
REPORT=.test-results/jest-lts.json
mkdir -p .test-results; rm -f "$REPORT" "${REPORT%.json}.totals.json"
PATH="$NODE_BIN:$PATH" node --experimental-vm-modules node_modules/jest/bin/jest.js --json --outputFile="$REPORT" "$@"
PATH="$NODE_BIN:$PATH" node -e '
  const r = require(process.argv[1]);
  console.log(`LTS: ${r.numPassedTests} passed, ${r.numFailedTests + r.numRuntimeErrorTestSuites} failed`);
  // The same counts for the combined last line of .ci/run.
  require("fs").writeFileSync(process.argv[1].replace(/\.json$/, ".totals.json"), JSON.stringify({ passed: r.numPassedTests, failed: r.numFailedTests + r.numRuntimeErrorTestSuites }));
  process.exit(r.numFailedTests + r.numRuntimeErrorTestSuites > 0 || r.numPassedTests === 0 ? 1 : 0);
' "$PWD/$REPORT"
