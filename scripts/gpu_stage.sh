#!/bin/bash
# Here, around one `run` of the device tool (docs/gpu.md). The working tree travels in at
# most 64 MiB and the shipped weights alone are 67 MB, so `aside` moves them into the ignored
# .gpu/ folder (and packs the store there once, ≈ 47 MB); `back` returns them. Both print what
# would travel. Safe to repeat; after `back`, `git status` shows the weights unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  aside)
    mkdir -p .gpu/weights
    [ -f .gpu/fer2013.pack.npz ] ||
      .venv/bin/ferkit data pack data/fer2013.h5 --out .gpu/fer2013.pack.npz
    find src/ferkit/weights -maxdepth 1 -type f \( -name '*.safetensors' -o -name '*.onnx' \) \
      -exec mv -t .gpu/weights {} +
    ;;
  back)
    if [ -d .gpu/weights ]; then find .gpu/weights -maxdepth 1 -type f -exec mv -t src/ferkit/weights {} +; fi
    ;;
  *) echo "usage: scripts/gpu_stage.sh aside|back" >&2; exit 2 ;;
esac
tree=$( (git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null || true) | awk '{s+=$1} END {print s+0}')
pack=$(stat -c %s .gpu/fer2013.pack.npz 2>/dev/null || echo 0)
echo "working tree $((tree / 1048576)) MiB + carried pack $((pack / 1048576)) MiB (limit 64 MiB)"
