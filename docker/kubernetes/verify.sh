#!/usr/bin/env bash
# Renders and checks the Kubernetes manifests (no cluster needed; run by .ci/run):
#   1. `kubectl kustomize` renders every overlay (datadog, datadog-admission, testagent);
#   2. `kubernetes-validate --strict` validates every rendered object against the schemas of
#      Kubernetes 1.37 (current) and 1.30 (the oldest the docs target), rejecting unknown fields;
#   3. contract.py checks that the objects fit the code, docker/, compose/ and BENCHMARKS.md
#      (labels and env mapping, ports, probes, the Secret, non-root, images, memory), then breaks
#      them in known ways and checks that every breakage is caught.
# Installs kubernetes-validate (docker/kubernetes/requirements.txt) into .venv-kubernetes/.
# Env: KUBERNETES_VERIFY_OUT=DIR keeps the rendered overlays there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/.venv-kubernetes"
OVERLAYS=(datadog datadog-admission testagent)
SCHEMAS=(1.37.0 1.30.0)
T0=$SECONDS

log() { printf '[k8s-verify %3ss] %s\n' "$((SECONDS - T0))" "$*"; }
die() { log "FATAL: $*"; exit 1; }

command -v kubectl >/dev/null ||
  die "kubectl not found: install kubectl (checked with 1.32, kustomize 5.5 built in), e.g. from Kubernetes' own package repository or the Google Cloud CLI's (Debian's kubernetes-client 1.20 is too old)"
kubectl kustomize --help >/dev/null 2>&1 || die "this kubectl has no 'kustomize' subcommand: install a current kubectl (checked with 1.32)"
command -v python3 >/dev/null || die "python3 not found (Debian: apt-get install python3 python3-venv)"

want="$(sed -n 's/^kubernetes-validate==//p' "$HERE/requirements.txt")"
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$want"; then
  log "installing kubernetes-validate $want into .venv-kubernetes"
  [ -x "$VENV/bin/python3" ] || python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" ||
    die "pip could not install docker/kubernetes/requirements.txt (PyPI must be reachable)"
fi

OUT="${KUBERNETES_VERIFY_OUT:-$(mktemp -d /tmp/k8s-verify.XXXXXX)}"
mkdir -p "$OUT"
[ -n "${KUBERNETES_VERIFY_OUT:-}" ] || trap 'rm -rf "$OUT"' EXIT

rendered=()
for overlay in "${OVERLAYS[@]}"; do
  kubectl kustomize "$HERE/$overlay" >"$OUT/$overlay.yaml" || die "kubectl kustomize docker/kubernetes/$overlay failed"
  log "rendered $overlay: $(grep -c '^kind:' "$OUT/$overlay.yaml") objects ($(grep '^kind:' "$OUT/$overlay.yaml" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}'))"
  rendered+=("$overlay=$OUT/$overlay.yaml")
done
# every overlay directory is checked (a new one must be added above)
for dir in "$HERE"/*/; do
  [ -f "$dir/kustomization.yaml" ] || continue
  name="$(basename "$dir")"
  [ "$name" = base ] && continue
  [[ " ${OVERLAYS[*]} " == *" $name "* ]] || die "docker/kubernetes/$name is not in verify.sh's OVERLAYS"
done

failed=0
for version in "${SCHEMAS[@]}"; do
  for overlay in "${OVERLAYS[@]}"; do
    if out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$OUT/$overlay.yaml" 2>&1)"; then
      log "ok   - $overlay: every object valid against Kubernetes $version (strict)"
    else
      failed=$((failed + 1))
      log "FAIL - $overlay: schema validation against Kubernetes $version (strict):"
      printf '%s\n' "$out" | sed 's/^/    /'
    fi
  done
done

# the validation can fail: an unknown field (a typo) in one object must be rejected
sed 's/^\(      \)automountServiceAccountToken: false$/&\n\1restartPolicyy: Always/' "$OUT/${OVERLAYS[0]}.yaml" >"$OUT/typo.yaml"
if grep -q restartPolicyy "$OUT/typo.yaml" && ! "$VENV/bin/kubernetes-validate" --strict --quiet -k "${SCHEMAS[0]}" "$OUT/typo.yaml" >/dev/null 2>&1; then
  log "ok   - schema self-test: a misspelt field is rejected"
else
  failed=$((failed + 1))
  log "FAIL - schema self-test: a misspelt field (restartPolicyy) was not rejected"
fi

if "$VENV/bin/python3" "$HERE/contract.py" "$ROOT" "${rendered[@]}"; then
  log "ok   - contract of ${OVERLAYS[*]} with the code, docker/, compose/ and BENCHMARKS.md"
else
  failed=$((failed + 1))
  log "FAIL - contract (lines above)"
fi
if "$VENV/bin/python3" "$HERE/contract.py" --self-test "$ROOT" "${rendered[@]}" >"$OUT/self-test.log"; then
  log "ok   - contract self-test: $(grep -c caught "$OUT/self-test.log") known breakages, every one caught"
else
  failed=$((failed + 1))
  log "FAIL - contract self-test:"
  sed 's/^/    /' "$OUT/self-test.log"
fi

if ((failed > 0)); then
  log "$failed check(s) failed"
  exit 1
fi
log "all checks passed"
