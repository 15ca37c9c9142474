#!/bin/sh
# Installs requirements/runtime.txt (the lock's pins without the development tools) into the
# image's venv, every file checked against its hash, with no dependency resolution (as
# `make install` does with the full lock). torch goes on its own:
#   cpu: the lock's own torch==2.13.0+cpu (the same hash) from /wheels when a copy is there
#        (deploy/docker/wheels/README.md), else from the PyTorch CPU index and nowhere else;
#   gpu: deploy/docker/torch-gpu.txt instead (PyPI's CUDA build of the same release, hashed).
set -eu
variant="${1:-cpu}"
python - requirements/runtime.txt /tmp/lock-without-torch.txt /tmp/torch-cpu.txt <<'PY'
import sys

source, rest, torch = sys.argv[1:]
entries = {"rest": [], "torch": []}
current = "rest"
for line in open(source):
    if not line.startswith((" ", "#", "\n")):
        current = "torch" if line.startswith("torch==") else "rest"
    entries[current].append(line)
if not entries["torch"]:
    sys.exit("no torch entry in the lock")
open(rest, "w").writelines(entries["rest"])
open(torch, "w").writelines(entries["torch"])
PY
pip install --no-cache-dir --require-hashes --no-deps -r /tmp/lock-without-torch.txt
case "$variant" in
  cpu)
    pip install --no-cache-dir --require-hashes --no-deps --find-links /wheels \
      --index-url https://download.pytorch.org/whl/cpu -r /tmp/torch-cpu.txt
    ;;
  gpu)
    pip install --no-cache-dir --require-hashes --no-deps -r deploy/docker/torch-gpu.txt
    ;;
  *)
    echo "VARIANT must be cpu or gpu, not $variant" >&2
    exit 2
    ;;
esac
rm -f /tmp/lock-without-torch.txt /tmp/torch-cpu.txt
