# The README's two commands: `make run` and `make test`. Everything else is a helper.
JOBS ?= $(shell nproc)
MODEL ?= models/needle-v2-demo
HTTP_ADDRESS ?= 127.0.0.1:8000
ARGS ?=
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

.PHONY: deps run build test test-asan fuzz bench goldens format clean

deps:
	scripts/install_deps.sh

build: deps
	cmake --preset release
	cmake --build --preset release -j $(JOBS)

# Builds and runs the service on the bundled default model, the small trained needle model
# (models/needle-v2-demo, see its README.md), with the OpenAI-compatible API on
# HTTP_ADDRESS (empty turns it off); Ctrl-C stops it.
run: build
	build/release/server/mla-server --model_dir=$(MODEL) --http_address=$(HTTP_ADDRESS) $(ARGS)

# The random tiny model the tests use is committed; this recreates it (same seed, same
# bytes) if removed.
models/tiny-v2-lite/config.json:
	$(PYTHON) tools/make_tiny_model.py --variant v2-lite --out models/tiny-v2-lite

# Builds everything (warnings are errors, CUDA compiled when nvcc is present) and runs
# every test; GPU tests skip cleanly without a device.
test: deps
	cmake --preset ci
	cmake --build --preset ci -j $(JOBS)
	ctest --preset ci -j $(JOBS)

test-asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

# Coverage-guided fuzz targets (clang + libFuzzer, ASan/UBSan) for long runs; see
# tests/fuzz/README.md. `make test` already runs every target briefly.
fuzz:
	scripts/install_deps.sh --fuzz
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS)

bench: deps
	cmake --preset bench
	cmake --build --preset bench -j $(JOBS)

# Regenerates the committed golden outputs with Hugging Face transformers (needs PyPI).
goldens:
	tools/reference/make_goldens.sh

format:
	git ls-files '*.cc' '*.h' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf build
