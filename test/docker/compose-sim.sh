#!/usr/bin/env bash
# The docker-compose local simulation, for real: a Docker engine, the image built from ./Dockerfile, and
# `docker-compose up` of docker-compose.yml (synth, aggregator, three sites) with docker/compose.host.yml on top
# (host networking: every packet stays on 127.0.0.1). Checks that every container exited 0, that round 0's global Dice
# (the pretrained built-in model) beat the box baseline and the last round's beat round 0's, and that the final model folder exists; tears down containers
# and volumes (images stay as the build cache), stops the engine when it started one, and prints the Dice figures
# last.
#
#   bash test/docker/compose-sim.sh
#
# Engine: the one that answers `docker info`; if none does, it starts `dockerd --bridge=none --iptables=false`
# (no bridge network, no NAT rules) and stops it at the end. Base image: $FEDSAM_BASE_IMAGE if set, else one made
# here from Debian's packages and the npm registry by docker/base-image.sh (Docker Hub is not needed).
# Size: FEDSAM_ROUNDS (default 3), FEDSAM_EPOCHS (2), FEDSAM_IMAGES_PER_SITE (24); COMPOSE_SIM_TIMEOUT (s, default 900) bounds the run.
# Exit status: 0 passed, 1 failed, 77 skipped (no Docker engine can run here; the reason is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."

export FEDSAM_ROUNDS=${FEDSAM_ROUNDS:-3}
export FEDSAM_EPOCHS=${FEDSAM_EPOCHS:-2}
export FEDSAM_IMAGES_PER_SITE=${FEDSAM_IMAGES_PER_SITE:-24}
TIMEOUT=${COMPOSE_SIM_TIMEOUT:-900}
PROJECT=fedsam-sim-test-$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fedsam-compose-sim.XXXXXX")
COMPOSE=(docker-compose --ansi never -p "$PROJECT" -f docker-compose.yml -f docker/compose.host.yml)
OWN_DOCKERD=
LOGS_PID=
UP=
t_start=$(date +%s)

say() { echo "compose-sim: $*"; }
skip() { say "SKIP: $*"; cleanup; exit 77; }
fail() { say "FAIL: $*"; [ -s "$WORK/compose.log" ] && { say "last lines of the containers' logs:"; tail -n 60 "$WORK/compose.log" | cut -c1-400; }; cleanup; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }

cleanup() {
  trap - EXIT INT TERM
  [ -n "$LOGS_PID" ] && kill "$LOGS_PID" 2>/dev/null && wait "$LOGS_PID" 2>/dev/null
  LOGS_PID=
  if [ -n "$UP" ]; then
    "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 10 > "$WORK/down.log" 2>&1 || { say "warning: docker-compose down failed:"; cat "$WORK/down.log"; }
    # rebuilt images leave their predecessors untagged: drop ours (label org.fedsam.image), keep the cache in use
    docker image prune --force --filter label=org.fedsam.image=1 > /dev/null 2>&1 || true
    UP=
  fi
  if [ -n "$OWN_DOCKERD" ]; then
    kill -TERM "$OWN_DOCKERD" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$OWN_DOCKERD" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$OWN_DOCKERD" 2>/dev/null && { say "warning: dockerd $OWN_DOCKERD did not stop in 30 s; killing it"; kill -KILL "$OWN_DOCKERD"; }
    say "stopped the Docker engine it had started (pid $OWN_DOCKERD)"
    OWN_DOCKERD=
  fi
  rm -rf "$WORK"
}
trap 'fail "interrupted"' INT TERM
trap cleanup EXIT

bridges() { ip -br link 2>/dev/null | awk '$1 ~ /^(docker0|br-|veth)/ {print $1}' | tr '\n' ' '; }

# --- the engine ---------------------------------------------------------------------------------------------------
command -v docker > /dev/null || skip "no docker client (Debian: apt-get install docker.io)"
command -v docker-compose > /dev/null || skip "no docker-compose (Debian: apt-get install docker-compose)"
if docker info > /dev/null 2>&1; then
  say "using the Docker engine that is running ($(docker info -f '{{.ServerVersion}}'))"
else
  command -v dockerd > /dev/null || skip "no Docker engine runs and dockerd is not installed (Debian: apt-get install docker.io)"
  [ "$(id -u)" = 0 ] || skip "no Docker engine runs and starting dockerd needs root"
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then rm -f /var/run/docker.pid; fi
  before=$(bridges)
  dockerd --bridge=none --iptables=false > "$WORK/dockerd.log" 2>&1 &
  OWN_DOCKERD=$!
  for _ in $(seq 120); do
    docker info > /dev/null 2>&1 && break
    kill -0 "$OWN_DOCKERD" 2>/dev/null || { OWN_DOCKERD=; tail -n 15 "$WORK/dockerd.log"; skip "dockerd --bridge=none --iptables=false exited at start (its log is above)"; }
    sleep 0.5
  done
  docker info > /dev/null 2>&1 || { tail -n 15 "$WORK/dockerd.log"; skip "dockerd did not answer within 60 s (its log is above)"; }
  say "started dockerd --bridge=none --iptables=false (pid $OWN_DOCKERD, $(docker info -f '{{.ServerVersion}}'))"
  [ "$(bridges)" = "$before" ] || fail "a bridge interface appeared when the engine started: $(bridges)"
fi
[ -z "$(docker network ls -q --filter driver=bridge)" ] || say "note: this engine has bridge networks (not ours; our containers use the host's network)"

# --- the image ----------------------------------------------------------------------------------------------------
if [ -z "${FEDSAM_BASE_IMAGE:-}" ]; then
  t=$(date +%s)
  export FEDSAM_BASE_IMAGE="fedsam-base:node$(node --version | sed 's/^v//')"
  [ "$(id -u)" = 0 ] || skip "no FEDSAM_BASE_IMAGE given and docker/base-image.sh needs root (debootstrap); set FEDSAM_BASE_IMAGE=node:20-bookworm-slim where Docker Hub is reachable"
  bash docker/base-image.sh "$FEDSAM_BASE_IMAGE" || fail "could not make the base image"
  say "base image $FEDSAM_BASE_IMAGE ready in $(elapsed "$t") s"
fi
t=$(date +%s)
UP=1 # from here on, cleanup runs docker-compose down
"${COMPOSE[@]}" build > "$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log"; fail "docker-compose build failed"; }
# the dependency stage under a tag of its own: it stays the cache of `npm ci`, and the untagged stages of earlier
# builds can go (docker image prune in cleanup)
DOCKER_BUILDKIT=0 docker build -q --network host --target deps --build-arg BASE_IMAGE="$FEDSAM_BASE_IMAGE" -t fedsam:deps . > /dev/null 2>> "$WORK/build.log" \
  || say "warning: could not tag the dependency stage (its cache may be pruned)"
build_s=$(elapsed "$t")
say "image fedsam:latest built in $build_s s ($(docker image inspect -f '{{.Size}}' fedsam:latest | awk '{printf "%.0f MB", $1/1e6}'), from $FEDSAM_BASE_IMAGE)"

# --- the simulation -----------------------------------------------------------------------------------------------
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
export FEDSAM_TEST_GRPC_PORT; FEDSAM_TEST_GRPC_PORT=$(free_port)
export FEDSAM_TEST_METRICS_PORT; FEDSAM_TEST_METRICS_PORT=$(free_port)
export FEDSAM_TEST_DASHBOARD_PORT; FEDSAM_TEST_DASHBOARD_PORT=$(free_port)
t=$(date +%s)
say "docker-compose up: $FEDSAM_ROUNDS rounds, 3 sites x $FEDSAM_IMAGES_PER_SITE images, aggregator on 127.0.0.1:$FEDSAM_TEST_GRPC_PORT"
# -d: compose itself waits for synth to finish (depends_on: service_completed_successfully) before starting the rest
timeout "$TIMEOUT" "${COMPOSE[@]}" up -d > "$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; "${COMPOSE[@]}" logs --no-color > "$WORK/compose.log" 2>&1; fail "docker-compose up failed"; }
"${COMPOSE[@]}" logs -f --no-color > "$WORK/compose.log" 2>&1 &
LOGS_PID=$!
id_of() { "${COMPOSE[@]}" ps -q "$1"; }
aggregator=$(id_of aggregator)
[ -n "$aggregator" ] || fail "no aggregator container"
# the aggregator's dashboard (on 127.0.0.1 through the host network): its state while the rounds run
dash="http://127.0.0.1:$FEDSAM_TEST_DASHBOARD_PORT/api/state"
for _ in $(seq 120); do
  curl -fsS --max-time 2 "$dash" > "$WORK/state.json" 2>/dev/null && grep -q '"phase":"fit"' "$WORK/state.json" && break
  sleep 1
done
grep -q '"phase":"fit"' "$WORK/state.json" 2>/dev/null || fail "the aggregator's dashboard ($dash) did not show a fit round"
say "dashboard $dash: $(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(`round ${s.round}, phase ${s.phase}, sites ${s.sites.map((x)=>x.name+" "+x.state).join(", ")}`)' "$WORK/state.json")"
left=$(( TIMEOUT - $(elapsed "$t") ))
code=$(timeout "$left" docker wait "$aggregator") || fail "the aggregator did not finish within $TIMEOUT s"
[ "$code" = 0 ] || fail "the aggregator exited with $code"
for s in synth site-1 site-2 site-3; do
  id=$(id_of "$s")
  code=$(timeout 60 docker wait "$id") || fail "$s did not exit within 60 s of the aggregator"
  [ "$code" = 0 ] || fail "$s exited with $code"
done
sim_s=$(elapsed "$t")
say "all five containers exited 0 after $sim_s s"

# --- the results --------------------------------------------------------------------------------------------------
docker cp "$aggregator:/runs/server/history.json" "$WORK/history.json" || fail "no /runs/server/history.json in the aggregator's volume"
docker cp "$aggregator:/runs/final-model" "$WORK/final-model" || fail "no final model (/runs/final-model) in the aggregator's volume"
for f in config.json model.safetensors; do [ -s "$WORK/final-model/$f" ] || fail "the final model has no $f"; done
final_mb=$(du -m "$WORK/final-model/model.safetensors" | cut -f1)
box=$(sed -n 's/.*synth_1 *| synthetic data in .*box-baseline Dice \([0-9.]*\).*/\1/p' "$WORK/compose.log" | head -1)
figures=$(node - "$WORK/history.json" "${box:-}" <<'EOF'
const [file, box] = process.argv.slice(2);
const history = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
const rows = history.filter((r) => r.evaluate).map((r) => ({ round: r.round, mean: r.evaluate.metrics.dice,
  sites: Object.fromEntries(Object.entries(r.evaluate.sites).map(([k, v]) => [k, v.metrics.dice])) }));
if (rows.length < 2) { console.log(`ERROR only ${rows.length} evaluated rounds in history.json`); process.exit(1); }
const names = Object.keys(rows.at(-1).sites).sort();
const f = (v) => (typeof v === 'number' ? v.toFixed(3) : '-');
console.log(['round', ...names, 'weighted mean', 'box baseline'].join('\t'));
for (const r of rows) console.log([r.round, ...names.map((n) => f(r.sites[n])), f(r.mean), box || '-'].join('\t'));
const first = rows[0], last = rows.at(-1);
// the pretrained built-in model starts above the box baseline; the rounds must improve on it
const rose = first.round === 0 && last.mean > first.mean + 0.01 && (!box || first.mean > Number(box));
console.log(`${rose ? 'OK' : 'ERROR'} global Dice ${f(first.mean)} (round ${first.round}) -> ${f(last.mean)} (round ${last.round}), box baseline ${box || '-'}`);
process.exit(rose ? 0 : 1);
EOF
) || { echo "$figures"; fail "the global Dice did not rise"; }

after=$(bridges)
cleanup
[ -z "$after" ] || { say "FAIL: bridge interfaces appeared: $after"; exit 1; }
say "final model: config.json + model.safetensors (${final_mb} MB)"
say "time: image build ${build_s} s, simulation ${sim_s} s, whole test $(elapsed "$t_start") s"
say "PASS: validation Dice of the global model per round (docker-compose, $FEDSAM_ROUNDS rounds x $FEDSAM_EPOCHS epochs, 3 IID sites x $FEDSAM_IMAGES_PER_SITE images):"
echo "$figures" | sed '$d' | column -t -s $'\t'
echo "$figures" | tail -n 1
