# Set-up: `make install` then `make demo`; tests: `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# llama.cpp builds from source: CPU backend only, portable (no -march=native), no multimodal tools.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_CUDA=OFF
export PIP_DISABLE_PIP_VERSION_CHECK = 1
DEMO   ?= out/demo
TOY_REFS := rarecli/toyworld/weights/refs

.PHONY: install demo test test-realsize test-all lint bench-perf bench-realsize bench-gpu check-gpu wheelhouse toy-world eval-toy eval-toy-augment toy-shapes eval-toy-shapes clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,local]"
	@# open_clip's modules import torchvision; we install it without dependencies for the real CLIP BPE
	@# vocabulary it ships (used by the embedded tokenizers). See README "Why no torchvision".
	$(BIN)/pip install -q --no-deps "open_clip_torch>=3.3,<4"
	$(BIN)/rare --version

demo:
	@mkdir -p $(DEMO)
	@# The toy world (trained, committed): "seven" is a rare class. Plain sampling, then SeedSelect and
	@# NAO-SeedSelect from five held-out sevens (the toy CLIP is picked by --clip-model auto).
	$(BIN)/rare seedselect "a handwritten digit seven" --method sd --model toy-digits --num-images 2 --out $(DEMO)/sd
	$(BIN)/rare seedselect "a handwritten digit seven" --refs $(TOY_REFS)/seven --model toy-digits \
		--method nao-seedselect --inner-steps 10 --num-images 2 --out $(DEMO)/nao-seedselect
	$(BIN)/rare seedselect "a handwritten digit seven" --refs $(TOY_REFS)/seven --model toy-digits \
		--inner-steps 10 --iters 10 --num-images 2 --out $(DEMO)/seedselect
	@# One picture, a row per method, each image captioned with the digit the toy judge sees in it.
	@rm -f $(DEMO)/side-by-side.png
	$(BIN)/python -m rarecli.toyworld side-by-side $(DEMO)/side-by-side.png $(DEMO)/sd $(DEMO)/seedselect \
		$(DEMO)/nao-seedselect --max-per-row 2 --toy-judge

test:
	$(BIN)/python -m pytest -q -x -p no:cacheprovider

# The architecture twins at real size (tests/test_realsize.py): builds about 10.5 GB of random-weight
# models into the rare cache once (about 3 minutes), then about 10 minutes on 2 CPU cores, 18 GB of memory.
test-realsize:
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/python -m pytest -q -x -p no:cacheprovider -m realsize

# ruff, then the layer contract in pyproject.toml ([tool.importlinter]): an upward import fails here.
lint:
	$(BIN)/ruff check rarecli tests benchmarks tools
	$(BIN)/lint-imports

# Every benchmarks/perf_*.py takes --out FILE.json; each writes out/bench/<its name>.json. The real-size
# one (perf_realsize.py: GBs of twins, about 40 minutes on a CPU) has its own target, bench-realsize.
bench-perf:
	@mkdir -p out/bench
	@for script in benchmarks/perf_*.py; do \
		name=$$(basename $$script .py); \
		[ "$$name" = perf_realsize ] && continue; \
		echo "$$script -> out/bench/$$name.json"; \
		PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(BIN)/python $$script --out out/bench/$$name.json || exit 1; \
	done

# SeedSelect, NAO-SeedSelect and R2F on the SD2.1-base / ViT-H-14 / SD3-medium twins; committed results in
# docs/realsize/. On a GPU: make bench-realsize REALSIZE_ARGS="--sizes 512 --steps 10 20 --dtypes fp32 fp16"
REALSIZE_ARGS ?= --iters 1
bench-realsize:
	@mkdir -p out/bench
	OMP_NUM_THREADS=2 PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(BIN)/python benchmarks/perf_realsize.py \
		--out out/bench/perf_realsize.json $(REALSIZE_ARGS)

# A CUDA machine: every command at its defaults, every family, every dtype, --offload and --attention-slicing,
# on the architecture twins at real size (built once, on the GPU); one JSON report (docs/gpu/ holds a real
# run). About 6 minutes on an H200; CHECK_GPU_ARGS="--with-flux" adds FLUX.1-schnell (a 34 GB twin).
CHECK_GPU_ARGS ?=
check-gpu:
	@mkdir -p out/gpu
	$(BIN)/python tools/check_gpu.py --out out/gpu/check-gpu.json --budget 900 $(CHECK_GPU_ARGS)

# A CUDA machine: SeedSelect's time and memory per variant and per phase, set-up, NAO-SeedSelect's first
# image, and R2F / R2F+ / plain against diffusers' own SD3 pipeline at 1024² (benchmarks/gpu_perf.py).
bench-gpu:
	@mkdir -p out/gpu
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(BIN)/python benchmarks/gpu_perf.py --out out/gpu/gpu-perf.json --budget 1200

# For a GPU machine without internet: rare's wheel and its dependencies' wheels, torch excepted, at the
# versions this environment runs, for WHEEL_PYTHON on manylinux x86-64 (README "Offline GPU machines").
WHEEL_PYTHON ?= 3.12
wheelhouse:
	$(BIN)/python tools/wheelhouse.py --out wheelhouse --python-version $(WHEEL_PYTHON)

# The toy world (rarecli/toyworld): trains the committed weights from scikit-learn's digits, on the
# CPU, in about 15 minutes on 2 shared cores; `git diff --stat` afterwards shows what changed.
toy-world:
	$(BIN)/python -m rarecli.toyworld build --out rarecli/toyworld/weights

# Plain sampling on every digit; SeedSelect, NAO-SeedSelect and R2F on the rare ones (about an hour on
# one thread: SeedSelect runs 100 iterations, and its accuracy at the CLI's default 30 is read off the
# same run). TOY_SEEDS=4 TOY_SS_ITERS=30 gives a quick look.
TOY_EVAL ?= out/toy-eval
TOY_SEEDS ?= 20
TOY_SS_ITERS ?= 100
eval-toy:
	OMP_NUM_THREADS=1 $(BIN)/python -m rarecli.toyworld evaluate --out $(TOY_EVAL) --seeds $(TOY_SEEDS) \
		--seedselect-iters $(TOY_SS_ITERS)

# Does `rare augment` help a classifier learn the rare digits from their five shots? Generates 100 images
# per rare digit with plain sampling, SeedSelect and NAO-SeedSelect (half- and whole-path starts) through
# `rare augment` (resumable), then trains the judge's CNN from 5 seeds per row. Results: docs/toy-augment/.
TOY_AUGMENT ?= out/toy-augment
eval-toy-augment:
	OMP_NUM_THREADS=1 $(BIN)/python -m rarecli.toyworld augment-eval --out $(TOY_AUGMENT)

# The shapes world (rarecli/toyworld/shapes): coloured shapes with rare colour-shape pairs, an SD3-shaped
# pipeline trained on the CPU (about 15 minutes on 2 cores); committed under rarecli/toyworld/shapes-weights.
toy-shapes:
	OMP_NUM_THREADS=2 $(BIN)/python -m rarecli.toyworld shapes-build

# R2F (each level), AAPB (adaptive and fixed gamma) and R2F+ against plain sampling in the shapes world, 20
# seeds per prompt; results in docs/toy-shapes/.
TOY_SHAPES_EVAL ?= out/toy-shapes-eval
eval-toy-shapes:
	OMP_NUM_THREADS=1 $(BIN)/python -m rarecli.toyworld shapes-eval --out $(TOY_SHAPES_EVAL) --seeds $(TOY_SEEDS)

clean:
	rm -rf out .pytest_cache .ruff_cache
