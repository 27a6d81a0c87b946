#!/usr/bin/env bash
# The GPU measurement of issue 5 as one device-tool call, prepared on a machine without one.
#
# Here (the data must not be committed; /data/ is ignored):
#   mkdir -p data && cp -r ../shared/data/SIGNS data/ \
#     && cp ../shared/data/kaggle_ner/ner_dataset.csv.zip data/
# Then one call of the device tool, carrying data/, with a timeout of 600 s:
#   bash benchmarks/gpu_device_run.sh      (extra flags go to gpu_speed.py, e.g. --only ner)
# Rows are printed (and written to $OUT/gpu_speed.txt) as they are measured, so a run cut
# short by the time limit still returns the target rows, which come first.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src PYTHONUNBUFFERED=1
out="${OUT:-/tmp}/gpu_speed.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$out"
timeout 560 python benchmarks/gpu_speed.py --signs-raw data/SIGNS \
    --ner-corpus data/ner_dataset.csv.zip "$@" 2>&1 | grep -v "^ *warnings.warn" | tee -a "$out"
