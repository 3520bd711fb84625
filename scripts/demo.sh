#!/usr/bin/env bash
# Outpost in ~20 s (run after `npm ci`; builds dist/ if missing):
#   one integration-proxy on SQLite in a temp dir, two agents of one pool,
#   a stream of `ping` jobs; one agent is killed (kill -9) in the middle of a
#   job, and the job finishes on the other agent once its lease expires.
#   Prints the jobs and `GET /v1/agents`, then stops everything.
# Needs only node, curl and bash. Logs stay in the temp dir until the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/bin/agent.js ] && [ -f dist/bin/integration-proxy.js ] || npm run -s build

DIR=$(mktemp -d -t outpost-demo-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const v=JSON.parse(s);$1})"; }

PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
ADMIN="admin-$(node -e 'console.log(require("crypto").randomBytes(12).toString("hex"))')"
URL="http://127.0.0.1:$PORT"
# A short lease (3 s), reaper (500 ms) and presence window (5 s) so that failover shows within seconds.
export PROXY_HOST=127.0.0.1 PROXY_PORT="$PORT" PROXY_STORE="sqlite:$DIR/proxy.db" PROXY_ADMIN_TOKEN="$ADMIN" \
  PROXY_LEASE_TTL_MS=3000 PROXY_REAPER_INTERVAL_MS=500 PROXY_PRESENCE_MS=5000 PROXY_LOG_LEVEL=warn

say "integration-proxy on $URL (SQLite in $DIR)"
AGENT_TOKEN=$(bin/integration-proxy token create --pool demo | tail -1)
bin/integration-proxy start >"$DIR/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "$URL/readyz" >/dev/null && break; sleep 0.1; done

say "two agents of pool 'demo'"
start_agent() {
  AGENT_PROXY_URL="$URL" AGENT_TOKEN="$AGENT_TOKEN" AGENT_ID="$1" AGENT_HEALTH_HOST=127.0.0.1 AGENT_HEALTH_PORT=0 \
    AGENT_WAIT_MS=5000 AGENT_CONCURRENCY=4 AGENT_LOG_FORMAT=json bin/agent start >"$DIR/$1.log" 2>&1 &
}
start_agent demo-agent-1; A1=$!; PIDS+=("$A1")
start_agent demo-agent-2; A2=$!; PIDS+=("$A2")
for a in demo-agent-1 demo-agent-2; do
  for _ in $(seq 1 100); do grep -q '"agent started"' "$DIR/$a.log" 2>/dev/null && break; sleep 0.1; done
  echo "  $a started"
done

api() { curl -sf -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' "$@"; }

say "enqueue 12 ping jobs (0.5–6 s each)"
BODY=$(node -e 'const d=[6000,500,800,1200,600,2000,900,700,1500,500,1000,800];console.log(JSON.stringify({jobs:d.map(ms=>({pool:"demo",type:"ping",payload:{delayMs:ms}}))}))')
IDS=$(api -X POST "$URL/v1/jobs/batch" -d "$BODY" | json 'console.log(v.jobs.map(j=>j.id).join(" "))')
LONG=${IDS%% *}
echo "  the first job ($LONG) pings for 6 s"

for _ in $(seq 1 100); do
  OWNER=$(api "$URL/v1/jobs/$LONG" | json 'console.log(v.status==="leased"?v.agentId:"")')
  [ -n "$OWNER" ] && break; sleep 0.05
done
VICTIM_PID=$([ "$OWNER" = demo-agent-1 ] && echo "$A1" || echo "$A2")
sleep 1
say "kill -9 $OWNER (pid $VICTIM_PID) in the middle of job $LONG"
kill -9 "$VICTIM_PID"
T0=$(node -e 'console.log(Date.now() / 1000)')

say "waiting for every job (the killed agent's lease expires after 3 s)"
for id in $IDS; do
  api "$URL/v1/jobs/$id?waitMs=20000" >/dev/null
done
api "$URL/v1/jobs/$LONG" >/dev/null
node -e "console.log('  all done ' + (Date.now() / 1000 - $T0).toFixed(1) + ' s after the kill')"
printf '  %-30s %-10s %-8s %s\n' JOB STATUS ATTEMPT AGENT
for id in $IDS; do
  api "$URL/v1/jobs/$id" | json 'console.log(`  ${v.id.padEnd(30)} ${v.status.padEnd(10)} ${String(v.attempt).padEnd(8)} ${v.agentId}${v.attempt>1?"   <- re-run after the kill":""}`)'
done

say "GET /v1/agents?pool=demo"
api "$URL/v1/agents?pool=demo" | json 'for (const a of v) console.log(`  ${a.agentId.padEnd(14)} ${a.status.padEnd(8)} inFlight=${a.inFlight} lastSeen=${a.lastSeenAt}`)'

say "stopping (SIGTERM drains the surviving agent)"
SURVIVOR_PID=$([ "$VICTIM_PID" = "$A1" ] && echo "$A2" || echo "$A1")
kill -TERM "$SURVIVOR_PID"
set +e; wait "$SURVIVOR_PID"; RC=$?; set -e
echo "  surviving agent exited with code $RC"
grep -h '"draining\|"released\|"stopped"' "$DIR"/demo-agent-*.log | sed 's/^/  /'
