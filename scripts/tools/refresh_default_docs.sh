#!/usr/bin/env bash
# docs/figures/default/ as today's code makes it: the README's first command (the embedded default sweep on
# the bundled mini-set, ~5-10 min on 2 cores) into a fresh work dir, then its tables and figures copied.
# Run it whenever a change moves the default results, and name the commit in the change's note.
#
#   scripts/tools/refresh_default_docs.sh [WORKDIR]      (default WORKDIR: a new temporary folder, removed after)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WD=${1:-$(mktemp -d -t dng_default_XXXX)}
[ $# -ge 1 ] || trap 'rm -rf "$WD"' EXIT
python3 -m dng_jax.sweep --workdir "$WD" --no-progress
DEST=docs/figures/default
mkdir -p "$DEST"
for f in results.csv table1.md differences.csv fig2_latent_tsne.png fig5_panels.png fig6_map_known.png \
         fig7_map_unknown.png fig8_entropy_std.png; do
  [ -f "$WD/$f" ] && cp "$WD/$f" "$DEST/$f"
done
echo "docs/figures/default refreshed from $WD at commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
