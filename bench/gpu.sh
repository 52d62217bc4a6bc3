#!/usr/bin/env bash
# The queue's ceiling and the model's throughput on one NVIDIA GPU, in one command (`make bench-gpu`).
#
# On a host with an NVIDIA driver (CUDA 12) and the photo sets beside the repository
# (../shared/datasets/faces, ../shared/datasets/lfw-dev, or FACES_DATASET_DIR / LFW_DIR):
#   1. a virtualenv (.venv-gpu) with the runtime and benchmark requirements, onnxruntime swapped for
#      onnxruntime-gpu of the same pinned version (its CUDA and cuDNN wheels included);
#   2. bench.ceiling with the null engine: the service's own ceiling on this host's cores
#      (single-photo jobs at 16 clients, 16-photo jobs at 4 clients);
#   3. bench.ceiling with the real model on CUDA (ORT_PROVIDERS): photos/s and faces/s end to end,
#      single-photo and 16-photo jobs, with WORKER_CONCURRENCY=2 sharing the card;
# Results: bench/results/gpu_ceiling_null.json and gpu_ceiling_real.json; a summary is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
ORT_VERSION=$(sed -n 's/^onnxruntime==//p' requirements.txt)
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r requirements.txt -r requirements-bench.txt
    "$VENV/bin/pip" uninstall --quiet -y onnxruntime
    "$VENV/bin/pip" install --quiet "onnxruntime-gpu[cuda,cudnn]==${ORT_VERSION}"
fi
"$VENV/bin/python" -c "import onnxruntime as o; p = o.get_available_providers(); print(p); assert 'CUDAExecutionProvider' in p"
FACES=${FACES_DATASET_DIR:-../shared/datasets/faces}
"$VENV/bin/python" -m bench.ceiling --faces-dir "$FACES" --rounds 3 --output gpu_ceiling_null
ORT_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    "$VENV/bin/python" -m bench.ceiling --real-engine --faces-dir "$FACES" --rounds 3 --jobs 300 --output gpu_ceiling_real
"$VENV/bin/python" - <<'PY'
import json
for name in ("gpu_ceiling_null", "gpu_ceiling_real"):
    for row in json.load(open(f"bench/results/{name}.json"))["summary"]:
        print(name, row["mode"], "jobs/s", row["jobs_s"], "photos/s", row["photos_s"], "faces/s", row.get("faces_s"))
PY
