# The two commands of the README's quick start:
#   make book   set up a virtual environment, install everything, build the executed book
#   make test   the same set-up, a strict build (warnings and cell errors fatal), then the tests
# Both work on a fresh machine; set PYTHON to choose the interpreter (3.10+).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
JB_FLAGS ?= -W -n --keep-going
# Idle torch/OpenMP threads sleep instead of spinning: on a small shared CPU spinning threads
# slowed the chapters' small tensor ops several-fold (benchmarks/README.md). Override freely.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: pdf pdf-deps notebooks lab lab-setup lab-check book test setup tests-only browser-deps clean clean-cache chapter-times chapter bench bench-quick experiments

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the pinned CPU wheel; requirements.txt then admits it and installs nothing more.
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/.installed
	$(BIN)/python scripts/vendor_static.py

book: setup
	env -u MPLBACKEND $(BIN)/jupyter-book build $(JB_FLAGS) .  # kernels draw figures inline
	@echo "Book built: _build/html/index.html"

# Run the chapters live: JupyterLab in the book's environment, the MyST chapters opening as notebooks
# (jupytext; lab/overrides.json makes "Jupytext Notebook" their default viewer). LAB_ARGS: e.g. --no-browser.
LAB_ARGS ?=
lab-setup: setup
	$(BIN)/python -m pip install -q -r requirements-lab.txt
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp lab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json

# As root (in a container) JupyterLab needs --allow-root: added then.
lab: lab-setup
	cd book && ../$(BIN)/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

# What `make lab` gives a student, checked: a server in book/, every chapter opened as a notebook through
# its REST API, Markdown's default viewer, the widget manager, and one chapter run as served.
lab-check: lab-setup
	$(BIN)/python scripts/check_lab.py --execute primer

# The Colab button's notebooks: notebooks/<page>.ipynb from each executable page (commit them; a test
# fails when one is stale).
notebooks: setup
	$(BIN)/python scripts/export_notebooks.py

# The whole book as one PDF through LaTeX (XeLaTeX): _build/latex/moe-theory.pdf. Installs Debian's TeX Live
# packages if missing (root or sudo). The chapters' outputs come from the execution cache of `make book`
# (run it first, or the PDF build executes every chapter itself). Not part of CI.
PDF_DEBS ?= texlive-xetex texlive-latex-extra texlive-fonts-recommended latexmk fonts-freefont-otf poppler-utils
pdf-deps:
	@if command -v xelatex >/dev/null && command -v latexmk >/dev/null && command -v pdftoppm >/dev/null \
	  && fc-list | grep -q FreeSerif; then echo "TeX Live present"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -q && \
	  $$SUDO apt-get install -y -q $(PDF_DEBS); fi

pdf: pdf-deps setup
	env -u MPLBACKEND $(BIN)/jupyter-book build -n --keep-going --builder pdflatex .
	@ls -l _build/latex/moe-theory.pdf && echo "PDF built: _build/latex/moe-theory.pdf"

# Headless Chromium and its driver for the browser test (Debian/Ubuntu; needs root or sudo).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "chromium present"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -q && \
	  $$SUDO apt-get install -y -q chromium chromium-driver; fi

test: browser-deps book
	$(BIN)/python -m pytest -q

tests-only: setup
	$(BIN)/python -m pytest -q

chapter-times:
	$(BIN)/python scripts/chapter_times.py

# One chapter alone, strictly, in _build_chapters/$(NAME) (own cache), then the browser check on it:
#   make chapter NAME=tropical
chapter: setup
	$(BIN)/python scripts/build_chapter.py $(NAME) --browser

# Speed and memory, printed as ratios against baselines measured in the same run (benchmarks/README.md).
bench: setup
	$(BIN)/python -m pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run_all.py

bench-quick: setup
	$(BIN)/python -m pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run_all.py --quick

# Full-scale reproductions, regenerating the committed results/ files (slow: see each command's --help).
# JOBS: worker processes for Experiment I (one torch thread each; default: one per core).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
experiments: setup
	@start=$$(date +%s); \
	  $(BIN)/python -m moe_theory.experiments.manifold --jobs $(JOBS) && \
	  echo "Experiment I: wall time $$(( $$(date +%s) - start )) s" && \
	  $(BIN)/python -m moe_theory.experiments.manifold --variants --jobs $(JOBS) && \
	  echo "Experiment I and its variants: wall time $$(( $$(date +%s) - start )) s" && \
	  $(BIN)/python -m moe_theory.experiments.compositional && \
	  echo "make experiments: wall time $$(( $$(date +%s) - start )) s"

clean-cache:
	rm -rf _build/.jupyter_cache

clean:
	rm -rf _build
