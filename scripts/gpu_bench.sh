#!/usr/bin/env bash
# The device half of scripts/gpu_bench.py: sets up a bare GPU machine (its own python3 with torch; our packages as
# wheels carried in .gpu1/ and .gpu2/, see docs/benchmarks.md "GPU rows") and runs the parts, each under its own
# time limit. Two calls on one warm machine, because the carried files of one call are limited to 64 MiB and
# warp-lang's library alone is 75 MB compressed: `one` stashes the first part of it and runs Pong and DT, `two`
# adds the rest and runs the warp backend and MPO on it.
#     bash scripts/gpu_bench.sh one    (carry .gpu1)     bash scripts/gpu_bench.sh two    (carry .gpu2)
set -u
OUT=${OUT:-gpu_bench_out}
mkdir -p "$OUT"
STASH=/root/gpu_stash
SITE=$STASH/site
export PYTHONUNBUFFERED=1 MUJOCO_GL=disable PYTHONPATH=$SITE:$PWD MINARI_DATASETS_PATH=$STASH/datasets
# rlkit's sub-packages live beside rlkit/ (setup.cfg's package_dir): links make the source tree importable
for p in envs agents bench configs pretrained; do [ -e rlkit/$p ] || ln -s ../$p rlkit/$p; done
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
part() {  # part SECONDS ARGS...: one gpu_bench.py part under a time limit, its output appended to the log
  local limit=$1; shift
  log "part $* (limit ${limit}s)"
  timeout -k 5 "$limit" python3 scripts/gpu_bench.py "$@" --out "$STASH/runs" >>"$OUT/log.txt" 2>&1
  log "exit $?"
}
case "${1:-}" in
one)
  mkdir -p $STASH $SITE
  cp -r .gpu1/warp.so.zst.part00 .gpu1/bin .gpu1/datasets $STASH/
  export PATH=$STASH/bin:$PATH  # the image has no zstd
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee -a "$OUT/log.txt"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE .gpu1/whl/*.whl \
    >>"$OUT/log.txt" 2>&1 || { log "pip failed"; tail -20 "$OUT/log.txt"; exit 1; }
  mkdir -p $STASH/d3site && LD_LIBRARY_PATH=$STASH/bin zstd -dc .gpu1/d3site.tar.zst | tar xf - -C $STASH/d3site
  part 40 dt --device cuda --threads 4 --steps 2000 --warmup 500
  PYTHONPATH=$STASH/d3site:$SITE:$PWD part 50 d3rlpy-dt --device cuda --threads 4 --steps 2000 --warmup 500
  part 40 dt --device cpu --threads 8 --steps 400 --warmup 100
  ;;
two)
  [ -f $STASH/warp.so.zst.part00 ] || { log "the machine is not the one of call one (no stash)"; exit 3; }
  export PATH=$STASH/bin:$PATH
  LD_LIBRARY_PATH=$STASH/bin zstd -dc .gpu2/warp-rest.tar.zst | tar xf - -C $SITE
  mkdir -p $SITE/warp/bin; cat $STASH/warp.so.zst.part00 .gpu2/warp.so.zst.rest | LD_LIBRARY_PATH=$STASH/bin zstd -dc > $SITE/warp/bin/warp.so
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE .gpu2/mujoco_warp-*.whl \
    >>"$OUT/log.txt" 2>&1 || log "pip mujoco_warp failed"
  python3 -c "import warp as wp; wp.init(); print('warp', wp.__version__, wp.get_cuda_devices())" 2>&1 | tee -a "$OUT/log.txt"
  part 130 warp-env --device cuda --sizes 1024 4096 16384 --steps 30 --warmup 3
  part 170 mpo-warp --device cuda --threads 4 --envs 8 --steps 20000 --eval-every 4000
  cp $STASH/runs/mpo-warp-cuda-8/metrics.jsonl "$OUT/mpo_warp_metrics.jsonl" 2>/dev/null
  ;;
*) echo "usage: $0 one|two"; exit 2 ;;
esac
grep -h '^RESULT' "$OUT/log.txt" > "$OUT/results.jsonl"
grep -v '^RESULT' "$OUT/log.txt" | grep -i -B2 -A12 'Traceback' | tail -60
cat "$OUT/results.jsonl"
