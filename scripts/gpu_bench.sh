#!/usr/bin/env bash
# The device half of scripts/gpu_bench.py: sets up a bare GPU machine (its own python3 with torch; our packages as
# wheels carried in .gpu1/ and .gpu2/, see docs/benchmarks.md "GPU rows") and runs the parts, each under its own
# time limit. Two calls on one warm machine, because the carried files of one call are limited to 64 MiB and
# warp-lang's library alone is 75 MB compressed: `one` stashes the first part of it and runs Pong and DT, `two`
# adds the rest and runs the warp backend and MPO on it.
#     bash scripts/gpu_bench.sh one    (carry .gpu1)     bash scripts/gpu_bench.sh two    (carry .gpu2)
# `atari` (carry .gpu1; GAME=Pong STEPS=100000 LIMIT=540) runs issue 21's Atari 100k comparison on its own; at the
# ~180 updates/s one process reached on the H200, 100k steps take ~9 min per run, so in one call the 9 runs are cut
# (their learning curves come back) unless several processes share the GPU well: size STEPS by a short call first.
# Issue the second call at once after the first returns: a machine idle for 30 s is given back, and with it the
# stash (/root/gpu_stash) that `two` needs. Build .gpu1/ and .gpu2/ here first (a CPU machine with pip access):
#     RLKIT_D3RLPY_VENV=/work/venvs/d3rlpy MINARI_DATASETS_PATH=... bash scripts/gpu_bench.sh prepare
# (add "/.gpu1/" and "/.gpu2/" to .git/info/exclude so that only `carry` sends them).
set -u
OUT=${OUT:-gpu_bench_out}
SOURCE_DATASETS=${MINARI_DATASETS_PATH:-$HOME/.minari/datasets}  # `prepare` copies hopper-medium from here
mkdir -p "$OUT"
STASH=/root/gpu_stash
SITE=$STASH/site
export PYTHONUNBUFFERED=1 MUJOCO_GL=disable PYTHONPATH=$SITE:$PWD MINARI_DATASETS_PATH=$STASH/datasets
link_packages() {  # on the GPU machine only: rlkit's sub-packages live beside rlkit/ (setup.cfg's package_dir)
  for p in envs agents bench configs pretrained; do [ -e rlkit/$p ] || ln -s ../$p rlkit/$p; done
}
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
part() {  # part SECONDS ARGS...: one gpu_bench.py part under a time limit, its output appended to the log
  local limit=$1; shift
  log "part $* (limit ${limit}s)"
  timeout -k 5 "$limit" python3 scripts/gpu_bench.py "$@" --out "$STASH/runs" >>"$OUT/log.txt" 2>&1
  log "exit $?"
}
case "${1:-}" in
prepare)  # here, not on the GPU machine: wheels for its Python 3.12, d3rlpy's packages, the dataset, warp split
  set -e
  PY=${PYTHON:-.venv/bin/python}
  W="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp"
  for v in 28 27 17 34 35 31 24; do W="$W --platform manylinux_2_${v}_x86_64"; done
  W="$W --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
  rm -rf .gpu1 .gpu2 && mkdir -p .gpu1/whl .gpu1/bin .gpu1/datasets/rlkit .gpu2 /tmp/gpu_prepare
  $PY -m pip download -q $W -d .gpu1/whl gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==4.0.1 \
    mujoco-core==4.0.1 glfw pyopengl ale-py==0.12.1 stable-baselines3==2.9.2 minari==0.5.4 shimmy==2.0.1
  $PY -m pip download -q $W -d .gpu2 mujoco-warp==4.0.0
  $PY -m pip download -q $W -d /tmp/gpu_prepare warp-lang==1.19.0
  cp -r "$SOURCE_DATASETS/rlkit/hopper-medium-v0" .gpu1/datasets/rlkit/
  SP=$(echo "$RLKIT_D3RLPY_VENV"/lib/python3*/site-packages)
  (cd "$SP" && tar cf - --exclude=__pycache__ d3rlpy d3rlpy-*.dist-info gym gym-*.dist-info gym_notices gymnasium \
    gymnasium-*.dist-info structlog dataclasses_json marshmallow farama_notifications) | zstd -19 -T0 -q -o .gpu1/d3site.tar.zst
  cp "$(command -v zstd)" .gpu1/bin/  # the GPU image has no zstd: carry it with the libraries it links
  for lib in liblz4.so.1 liblzma.so.5; do cp "$(ldconfig -p | grep -m1 "$lib" | awk '{print $NF}')" .gpu1/bin/; done
  (cd /tmp/gpu_prepare && rm -rf x && mkdir x && cd x && unzip -q ../warp_lang-*.whl && \
    zstd -19 -T0 -q --long=27 warp/bin/warp.so -o ../warp.so.zst && rm -rf warp/bin warp/examples warp/tests && \
    tar cf - . | zstd -19 -T0 -q -o ../warp-rest.tar.zst)
  # warp.so is ~75 MB compressed, over one call's 64 MiB: 23 MB travel with `one`, the rest with `two`
  head -c 23000000 /tmp/gpu_prepare/warp.so.zst > .gpu1/warp.so.zst.part00
  tail -c +23000001 /tmp/gpu_prepare/warp.so.zst > .gpu2/warp.so.zst.rest
  cp /tmp/gpu_prepare/warp-rest.tar.zst .gpu2/
  du -sb .gpu1 .gpu2  # each plus the repository must stay under 64 MiB
  exit 0
  ;;
one)
  link_packages
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
  link_packages
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
atari)  # issue 21's Atari 100k rows: DQN, + CURL, + DrQ (K = M = 1), 3 seeds, all 9 runs at once (carry .gpu1)
  link_packages
  mkdir -p $STASH $SITE
  [ -d $SITE/ale_py ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE \
    .gpu1/whl/*.whl >>"$OUT/log.txt" 2>&1 || { log "pip failed"; tail -20 "$OUT/log.txt"; exit 1; }
  GAME=${GAME:-Pong}; STEPS=${STEPS:-100000}; LIMIT=${LIMIT:-540}
  log "atari100k $GAME, $STEPS steps, limit ${LIMIT}s"
  timeout -k 5 "$LIMIT" python3 scripts/bench_curl.py --config configs/dqn_atari100k.yaml --device cuda --threads 1 \
    --parallel 9 --variants dqn dqn+curl dqn+drq1 --seeds 0 1 2 --steps "$STEPS" --evals 4 \
    --set "env.id=rlkit/$GAME-v0" log.progress=false log.tensorboard=false log.plot=false \
    --out $STASH/atari >>"$OUT/log.txt" 2>&1
  log "exit $?"
  for d in $STASH/atari/*/; do cp "$d/metrics.jsonl" "$OUT/atari_$(basename "$d").jsonl" 2>/dev/null; done
  cp $STASH/atari/table.md "$OUT/atari_table.md" 2>/dev/null
  ;;
*) echo "usage: $0 prepare|one|two|atari"; exit 2 ;;
esac
grep -h '^RESULT' "$OUT/log.txt" > "$OUT/results.jsonl"
grep -v '^RESULT' "$OUT/log.txt" | grep -i -B2 -A12 'Traceback' | tail -60
cat "$OUT/results.jsonl"
