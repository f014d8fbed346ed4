#!/bin/bash
# A real movie clip for study 2 (docs/studies.md), fetched from a package registry, never
# committed: OpenCV's face-tracking sample `Megamind.avi` (11 s, 720×528, 24 fps, an animated
# film scene: two characters, dim light, cuts between them), as Debian's `opencv-doc` ships it.
# Writes data/clips/Megamind.avi (checked against its SHA-256) and prints the path; a no-op
# when it is already there. Needs `apt-get download` (Debian's archive, no root needed).
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/clips/Megamind.avi
sha=0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5
member=./usr/share/doc/opencv-doc/examples/data/Megamind.avi
if [ -f "$out" ] && echo "$sha  $out" | sha256sum --check --status; then echo "$out"; exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q opencv-doc >/dev/null 2>&1) ||
  { echo "fetch_clip: apt-get download opencv-doc failed (no Debian archive reachable?)" >&2; exit 1; }
dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb | tar -x -C "$work" "$member"
echo "$sha  $work/$member" | sha256sum --check --status ||
  { echo "fetch_clip: $member in opencv-doc is not the clip this script knows (SHA-256 differs)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
mv "$work/$member" "$out.part" && mv "$out.part" "$out"
echo "$out"
