# Two commands on a fresh machine: `make demo` runs the default job, `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The virtualenv is rebuilt only when the dependencies change.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
DEMO ?= demo
DEMO_SAMPLES ?= 4000
DEMO_BROKEN ?= 20

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(BIN)/curate synth --out $(DEMO) --samples $(DEMO_SAMPLES) --broken-samples $(DEMO_BROKEN) > /dev/null
	@echo "== training the tiny DFN on the trusted set $(DEMO)/hq"
	$(BIN)/curate train-dfn $(DEMO)/hq --out $(DEMO)/dfn > /dev/null
	@echo "== pipelines/dfn.py on local Ray: ingest, embed with the DFN, keep the top 30%"
	$(BIN)/python pipelines/dfn.py --input $(DEMO)/pool --run $(DEMO)/run --model $(DEMO)/dfn \
		--keep-fraction 0.3 --runner ray > /dev/null
	@# The synth images are 64 px: the basic filter's size rule is set for them here, not its DataComp default.
	$(BIN)/curate filter basic $(DEMO)/run --min-side 32 > /dev/null
	@echo "== accounting (read = kept + quarantined)"
	@$(BIN)/curate sql $(DEMO)/run --saved accounting
	@echo "== why the quarantined ones were quarantined"
	@$(BIN)/curate sql $(DEMO)/run --saved quarantine_reasons
	@echo "== kept and dropped per stage"
	@$(BIN)/curate sql $(DEMO)/run --saved stage_counts
	@echo "== the stages, what each read, and whether it is current"
	@$(BIN)/curate status $(DEMO)/run
	@echo "== score histogram"
	@$(BIN)/curate report $(DEMO)/run | grep png
	@echo "Query it:  $(BIN)/curate sql $(DEMO)/run \"SELECT caption, dfn_score FROM samples ORDER BY dfn_score LIMIT 5\""

# Two pytest-xdist workers, one per core of the 2-core machines it is timed on; tests/conftest.py decides what runs
# together on a worker (a module's tests, every Ray test).
test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2

bench: venv
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/dfn_quality.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache

# Not part of `make test` or CI: `ray up` / `ray submit` / `ray down` of a pipeline script on this machine,
# through ray_cluster.local.yaml over ssh to 127.0.0.1 (apt-installs openssh-server and rsync when missing).
# PIPELINE and PIPELINE_ARGS override what it submits; see scripts/cluster_smoke.sh and docs/cluster-smoke.md.
.PHONY: cluster-smoke
cluster-smoke: venv
	scripts/cluster_smoke.sh $(or $(PIPELINE),pipelines/dfn.py) $(PIPELINE_ARGS)
