# plantnseek: `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install mutation clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: seed README example 1 — SynFlow singleshot on circle, depth 5, width 50 (about 10 s)
demo: $(STAMP)
	$(BIN)/plantnseek fit --config configs/synflow_singleshot.yaml
	@echo "Open TensorBoard with: $(BIN)/tensorboard --logdir lightning_logs"

## test: the whole suite (slow end-to-end tests included)
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## mutation: mutmut over the scorers, masking, the pruning callback and the metrics, on a fast test
## selection (setup.cfg [mutmut]); not part of `make test`. Surviving mutants: tests/mutation_equivalent.md
MUT := build/mutation
mutation: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[mutation]'
	rm -rf $(MUT) && mkdir -p $(MUT)
	cp -r plantnseek tests setup.cfg $(MUT)/ && cp -r callbacks $(MUT)/plantnseek/callbacks
	cd $(MUT) && $(CURDIR)/$(BIN)/mutmut run $(MUTMUT_ARGS); $(CURDIR)/$(BIN)/mutmut results --all true > results.txt; \
	  grep -c ": killed" results.txt; grep -v ": killed" results.txt

## clean: remove what `make` and the README's commands create (lightning_logs/ keeps its README.md)
clean:
	rm -rf $(VENV) results Results examples/results examples/lightning_logs build .pytest_cache
	find lightning_logs -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
