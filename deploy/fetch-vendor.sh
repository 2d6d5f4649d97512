#!/usr/bin/env bash
# Front-end libraries the pages load from /static/vendor/, fetched with npm at build time
# (never from a CDN: classrooms may be cut off from the internet; never committed). Each is
# pinned to a version and to npm's sha512 of its tarball, checked before anything is unpacked.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

TARGET=web/static/vendor
# name@version  sha512 (npm's "integrity")  file in the tarball -> file in $TARGET
PACKAGES=(
  "hls.js@1.7.4 sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg== package/dist/hls.light.min.mjs hls.mjs"
)

command -v npm >/dev/null || { echo "error: npm is required" >&2; exit 1; }
mkdir -p "$TARGET"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for entry in "${PACKAGES[@]}"; do
  read -r spec integrity member name <<<"$entry"
  stamp="$TARGET/.$name.integrity"
  [ -f "$TARGET/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$integrity" ] && continue
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tarball=$(ls "$work"/*.tgz)
  actual=$(node -e 'const fs = require("fs"), c = require("crypto");
    process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"));' "$tarball")
  if [ "$actual" != "$integrity" ]; then
    echo "error: $spec integrity mismatch: got $actual" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$work" "$member"
  mv "$work/$member" "$TARGET/$name"
  echo "$integrity" >"$stamp"
  rm -f "$tarball"
  echo "vendored $spec -> $TARGET/$name"
done
