#!/usr/bin/env bash
# Unpack Rhubarb Lip Sync 1.14.0 for the tests into .cache/tools/rhubarb/ (binary + res/), when its archive is at
# hand: $RHUBARB_ARCHIVE, else the shared tools folder beside the main checkout (../shared/tools; for a git worktree,
# beside the repository that owns it). Idempotent. Without the archive it says so and the Rhubarb tests skip;
# users install Rhubarb from its GitHub releases page (README, "Lip-sync").
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=rhubarb-1.14.0-linux-x86_64.tar.xz
DEST=.cache/tools/rhubarb
STAMP=.cache/tools/rhubarb.unpacked

candidates=()
[ -n "${RHUBARB_ARCHIVE:-}" ] && candidates+=("$RHUBARB_ARCHIVE")
candidates+=("../shared/tools/$NAME")
if common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
    candidates+=("$(dirname "$(dirname "$common")")/shared/tools/$NAME")
fi
archive=""
for candidate in "${candidates[@]}"; do
    if [ -f "$candidate" ]; then archive=$candidate; break; fi
done
if [ -z "$archive" ]; then
    echo "install_rhubarb: no $NAME found (looked at: ${candidates[*]}); the Rhubarb tests will be skipped" >&2
    exit 0
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stat -c '%s %Y' "$archive")" ] && [ -x "$DEST/rhubarb" ]; then
    exit 0
fi
rm -rf "$DEST" && mkdir -p .cache/tools
tar -xJf "$archive" -C .cache/tools
"$DEST/rhubarb" --version >/dev/null
stat -c '%s %Y' "$archive" > "$STAMP"
echo "install_rhubarb: unpacked $archive into $DEST"
