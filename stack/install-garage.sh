#!/usr/bin/env bash
# Builds Garage (the S3 server) once with `cargo install` and caches the binary under
# ~/.cache/tributary, keyed by version and feature set, so later runs reuse it.
set -euo pipefail
GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"
GARAGE_FEATURES="bundled-libs,lmdb"
cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/garage-${GARAGE_VERSION}-${GARAGE_FEATURES//,/-}"
if [ -x "$cache/bin/garage" ]; then
  echo "$cache/bin/garage"
  exit 0
fi
mkdir -p "$cache"
echo "building garage $GARAGE_VERSION (first run only, several minutes)" >&2
CARGO_TARGET_DIR="$cache/target" cargo install garage --version "=$GARAGE_VERSION" --locked \
  --no-default-features --features "$GARAGE_FEATURES" --root "$cache" >&2
rm -rf "$cache/target"
echo "$cache/bin/garage"
