# Two entry points, each one command on a fresh machine:
#   make demo   set up, then run the main job (examples/fashion_mnist_end_to_end.py)
#   make test   set up, then run the test suite once per Keras backend
#   make lint   set up, then check format and lint (ruff, as CI does)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
DEMO_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup data demo lint format test test-tensorflow test-jax test-torch test-no-onednn bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in the extra: it is the CPU wheel; any other
	# torch spec pulls several GB of CUDA packages.
	$(PY) -m pip install --quiet -e ".[tensorflow,jax,torch,tflite,hub,test,lint,examples]"
	touch $(STAMP)

# Fashion-MNIST from Debian's package where apt is usable; otherwise the
# loader falls back to the Keras dataset cache or a download.
data:
	@if [ ! -f $(FMNIST)/t10k-labels-idx1-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) \
	     || echo "apt-get could not install dataset-fashion-mnist"; \
	  else \
	    echo "Fashion-MNIST not in $(FMNIST); install Debian's dataset-fashion-mnist"; \
	  fi; \
	fi

demo: setup
	KERAS_BACKEND=tensorflow $(PY) examples/fashion_mnist_end_to_end.py $(DEMO_ARGS)

# Keras' style (pyproject.toml [tool.ruff]): CI runs this before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# One pytest process per backend: the Keras backend is fixed per process.
# Conversion needs TensorFlow whatever the caller's backend, so the
# converter tests (keras-hub models' too), the Android client tests and the
# end-to-end example's smoke test (it converts too) run once, in the
# TensorFlow process.
test: setup test-tensorflow test-jax test-torch

test-tensorflow: setup
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q tests

CONVERTS := --ignore=tests/test_converters.py --ignore=tests/test_android.py \
	--ignore=tests/test_hub_converters.py \
	--ignore=tests/test_examples.py

test-jax: setup
	KERAS_BACKEND=jax $(PY) -m pytest -q tests $(CONVERTS)

test-torch: setup
	KERAS_BACKEND=torch $(PY) -m pytest -q tests $(CONVERTS)

# The machine class CI may not run on: TensorFlow turns oneDNN on by default
# only on CPUs with AVX-512 VNNI / BF16 / AMX, and its own CPU kernels lack
# some convolutions (NCHW, unequal-stride depthwise). CI runs the layer and
# converter tests again with oneDNN off, as an AVX2-only CPU runs them.
test-no-onednn: setup
	TF_ENABLE_ONEDNN_OPTS=0 KERAS_BACKEND=tensorflow $(PY) -m pytest -q \
	  tests/test_group_nl_conv.py tests/test_converters.py tests/test_android.py \
	  tests/test_machine.py

bench: setup
	$(PY) benchmarks/layer_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
