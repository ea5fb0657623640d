# dmsae: the two commands of the README are `make reproduce` and `make test`; both set up everything they need.
SHELL := /bin/bash
PROFILE ?= small
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED = 1
# idle OpenMP threads must not spin: with 2 cores and parallel notebooks, spinning made SAE steps ~6x slower
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install setup reproduce study synth check-corpus test test-slow bench export readme docs

install:            ## create .venv and install everything (idempotent)
	@bash tools/install.sh

setup: install      ## + embedded corpus and converted model (idempotent)
	@$(VENV)/bin/nbdev_export
	@$(VENV)/bin/dmsae setup

# make reproduce stops when the corpus differs from the one that made the profile's committed figures
# (pins/corpus.json); ALLOW_CORPUS_CHANGE=1 runs anyway and records the new corpus as that of the new figures.
ALLOW_CORPUS_CHANGE ?=
reproduce: setup    ## run the paper notebooks with papermill on profile $(PROFILE)
	@$(PY) tools/reproduce.py --profile $(PROFILE) $(if $(filter 1 yes true,$(ALLOW_CORPUS_CHANGE)),--allow-corpus-change)

# the study (nbs/15_study.ipynb, params/study.yaml): hours of CPU in resumable stages; stages recorded under
# figures/study/chunks/ are skipped, STAGES=n runs at most n missing stages now (commit them, continue later)
STAGES ?=
study: setup        ## run missing study stages (STAGES=n: at most n), then redraw figures/study
	@$(PY) tools/reproduce.py --profile study --force $(if $(STAGES),--set max_stages=$(STAGES))

# the synthetic study (nbs/paper/07_synth.ipynb, params/synth.yaml): the same driver on a world with known features;
# SEEDS=[1] / VARIANTS=[paper] run only those chunks (two shells can run two seeds side by side on 2 cores)
SEEDS ?=
VARIANTS ?=
SYNTH_SET = $(strip $(if $(STAGES),max_stages=$(STAGES)) $(if $(SEEDS),"seeds=$(SEEDS)") \
	$(if $(VARIANTS),"variants=$(VARIANTS)"))
synth: setup        ## run missing stages of the synthetic study (STAGES=n: at most n), then redraw figures/synth
	@$(PY) tools/reproduce.py --profile synth --force $(if $(SYNTH_SET),--set $(SYNTH_SET))

check-corpus: setup ## the built corpus against its pins, and against the corpus of profile $(PROFILE)'s committed figures
	@$(PY) tools/pin_corpus.py
	@$(PY) tools/reproduce.py --profile $(PROFILE) --check-corpus

test: setup         ## nbdev_test (notebooks) + pytest, closing line "N passed, N failed"
	@$(PY) tools/run_tests.py

test-slow: setup    ## also the cells tagged #| slow and the pytest tests marked slow (DMSAE_SLOW=1)
	@$(PY) tools/run_tests.py --flags slow

bench: setup        ## CPU benchmarks, quick settings (< 15 min on 2 cores); tables in bench/results/*-quick.md (bench/README.md)
	@$(PY) bench/bench_cache.py --quick
	@$(PY) bench/bench_train.py --quick
	@$(PY) bench/bench_attribution.py --quick
	@$(PY) bench/bench_scaling.py --quick
	@$(PY) bench/collect.py

docs: install       ## the documentation site in _docs/html (offline; chapter outputs from the last `make test`)
	@$(PY) docs/build.py

readme: install      ## README.md from nbs/index.ipynb
	@$(PY) tools/make_readme.py

export: install
	@$(VENV)/bin/nbdev_export
