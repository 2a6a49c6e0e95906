# The two commands a fresh machine needs: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MAMMOSEG := $(VENV)/bin/mammoseg
DEMO_DIR ?= experiments/runs/demo-data
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test demo study-data study study-decoders study-mias bench clean slurm-check

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: venv
	$(PY) -m pytest -q

# synth -> prepare -> ablate (train, evaluate, report) on the embedded synthetic default, with 20
# normal mammograms in mixed formats beside it; each step resumes, so an interrupted demo continues
# where it stopped.
demo: venv
	test -f $(DEMO_DIR)/cbis-ddsm/normals/synth_normals.json || $(MAMMOSEG) synth $(DEMO_DIR)/cbis-ddsm --cases 60 --seed 0 --normals 20 --overwrite
	$(MAMMOSEG) prepare $(DEMO_DIR)/cbis-ddsm --out $(DEMO_DIR)/prepared --image-size 128 --normals $(DEMO_DIR)/cbis-ddsm/normals
	$(MAMMOSEG) inspect $(DEMO_DIR)/prepared
	$(MAMMOSEG) ablate --config experiments/demo.toml
	@echo "report: $(CURDIR)/experiments/reports/demo/report.html"

# The synthetic study's data: 240 cases and 60 normal mammograms at 256x256, for `study`, `study-decoders` and the
# encoders of `study-mias`; made once, then reused.
STUDY_DIR ?= experiments/runs/study-data
study-data: venv
	test -f $(STUDY_DIR)/cbis-ddsm/normals/synth_normals.json || $(MAMMOSEG) synth $(STUDY_DIR)/cbis-ddsm --cases 240 --seed 1 --normals 60 --overwrite
	$(MAMMOSEG) prepare $(STUDY_DIR)/cbis-ddsm --out $(STUDY_DIR)/prepared --image-size 256 --normals $(STUDY_DIR)/cbis-ddsm/normals --workers 2

# The article's claims on 2 CPU cores: 6 arms x 3 seeds at 256x256 on the synthetic study's data
# (experiments/study.toml); resumes like the demo.
study: study-data
	$(MAMMOSEG) ablate --config experiments/study.toml
	@echo "report: $(CURDIR)/experiments/reports/study/report.html"
	@echo "the article's claims: $(CURDIR)/experiments/reports/study/findings.md"

# Beyond the article: the final network's first upsampling swapped for each design of docs/design.md §1.3,
# 7 arms x 3 seeds on the study's data (experiments/decoders.toml); about 115 minutes; resumes like the demo.
study-decoders: study-data
	$(MAMMOSEG) ablate --config experiments/decoders.toml
	@echo "report: $(CURDIR)/experiments/reports/decoders/report.html"

# The article's claims on real films: mini-MIAS as downloaded (MIAS: the folder of all-mias.tar.gz or of its
# films, and Info.txt), cut into 2 folds by woman; every arm starts from an encoder trained once on the synthetic
# study's data (experiments/mias_encoders.toml), then 6 arms x 2 seeds x 2 folds (experiments/study_mias.toml),
# then each arm and seed on two real CBIS-DDSM views with outlines (REAL_PAIRS, where present) as external
# validation; about 2 hours on 2 idle cores; resumes like the demo.
MIAS ?= ../shared/mias
REAL_PAIRS ?= ../shared/real-pairs
MIAS_DIR ?= experiments/runs/mias-data
study-mias: study-data
	$(MAMMOSEG) ablate --config experiments/mias_encoders.toml
	$(MAMMOSEG) prepare $(MIAS) --layout mias --out $(MIAS_DIR)/prepared --image-size 256 --folds 2 --val-fraction 0.2 --workers 2
	if test -d $(REAL_PAIRS); then $(MAMMOSEG) prepare $(REAL_PAIRS) --layout images-masks --out $(MIAS_DIR)/real-pairs --image-size 256 --test-only; \
	else echo "no $(REAL_PAIRS): the external validation on it is skipped"; fi
	$(MAMMOSEG) ablate --config experiments/study_mias.toml
	@echo "report: $(CURDIR)/experiments/reports/study-mias/report.html"
	@echo "the article's claims on real films: $(CURDIR)/experiments/reports/study-mias/findings.md"

# The ablation grid on a real one-node Slurm that scripts/slurm/local_cluster.sh starts on this machine
# (as root it installs slurm-wlm and munge with apt where missing): a job array of 2 arms x 2 seeds, two
# tasks stopped and requeued, the report job after the array; runs and report equal a serial ablate's.
slurm-check: venv
	MAMMOSEG_SLURM_CHECK=require $(PY) -m pytest -q -m slurm tests/test_slurm.py

clean:
	rm -rf $(VENV) experiments/runs experiments/reports
