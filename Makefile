# Two commands on a fresh machine: `make book` and `make test`.  Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install book test lint bench clean lab

# MathJax for the book's formulas, served from the built book itself (no CDN): the npm
# package, of which the build needs the TeX-to-HTML bundle and the files it loads later
# (fonts, extensions, menu).  The copy in .mathjax/static is what _config.yml points at.
MATHJAX_VERSION := 3.2.2
MATHJAX := .mathjax/static/mathjax/tex-chtml.js

# The book builds with no network: where the machine allows it, in a network namespace of
# its own whose only interface is loopback (the kernels and howto's gateway use 127.0.0.1),
# so a chapter that reaches for the internet fails the build instead of passing by luck.
OFFLINE := $(shell unshare -rn ip link set lo up >/dev/null 2>&1 && \
	echo "unshare -rn sh -c 'ip link set lo up && exec \"\$$@\"' offline")

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,test]'
	@touch $(STAMP)

$(MATHJAX):
	rm -rf .mathjax && mkdir -p .mathjax/static/mathjax
	npm install --prefix .mathjax --no-audit --no-fund --silent mathjax@$(MATHJAX_VERSION)
	cd .mathjax/node_modules/mathjax && cp LICENSE es5/tex-chtml.js ../../static/mathjax/ && \
		cp -r es5/input es5/output es5/ui es5/a11y es5/adaptors ../../static/mathjax/

# JupyterLab from the venv opens the chapters (MyST markdown) as notebooks: jupytext >= 1.16
# leaves .md files to the text editor unless the notebook viewer is made their default.
# The setting goes into the venv's own Jupyter config (etc/jupyter/labconfig), so it holds
# for `.venv/bin/jupyter lab` and touches nothing in the home folder.
LABCONFIG := $(VENV)/etc/jupyter/labconfig/default_setting_overrides.json

$(LABCONFIG): $(STAMP)
	$(BIN)/jupytext-config --settings-file $(LABCONFIG) set-default-viewer markdown myst

# What a reader needs to run the chapters: Python packages and the JupyterLab setting (no npm).
install: $(STAMP) $(LABCONFIG)

# A clean, strict build: every chapter executed, any error or warning fails it.  The stamp
# (dated when the build started) tells the book tests that _build holds a successful build;
# they rebuild when a chapter, the config, the package or the catalogs are newer.
book: install $(MATHJAX)
	rm -rf _build
	@mkdir _build && touch _build/.book-started
	$(OFFLINE) $(BIN)/jupyter-book build . -W -n --keep-going
	@mv _build/.book-started _build/.book-ok

lint: install
	$(BIN)/ruff check .

# One pytest run: unit tests, then the book tests on the build made just before (nbval on
# the executed chapters, papermill on the data chapter, links, every page in Chromium).
test: install lint book
	$(BIN)/python -m pytest

# JupyterLab from the project's environment, opening the chapters as notebooks.
lab: install
	$(BIN)/jupyter lab

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build .pytest_cache .ruff_cache tests/.oracle .mathjax
