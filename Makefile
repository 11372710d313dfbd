# Targets named in README.md. Each one creates .venv when needed: `plan` from requirements.txt (the
# program), the others from requirements-dev.txt (the program, its tests and tools).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: init plan test format golden bench state-backend clean

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

## init: write Pulumi.yaml and the stack files for your organization and tenancy, e.g.
## ARGS='--owner acme --infra-repository acme-infra --repository acme-api=services ...' (asks for what is left out)
init: $(VENV)/.installed
	$(PY) tools/init.py $(ARGS)

## plan: the offline plan of STACK (default dev): resources, key inputs, outputs
plan: $(VENV)/.installed
	$(PY) tools/plan.py --stack $(STACK)

## test: ruff (format check and lint), then every test, in two workers (the engine's tests in two groups, one in each)
test: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	@$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo 'pytest collected no tests: that is a failure, not a pass' >&2; exit 1; fi; \
	  exit $$rc

## refusals: every ConfigError of settings.py and BadInputError of the deploy program reached by a test? (a few minutes)
.PHONY: refusals
refusals: $(VENV)/.dev-installed
	$(PY) tools/refusals.py

## mutation: mutation testing of rules, settings, the deploy program's input gate and the pipeline's decisions (mutmut), e.g. SCOPE=deploy;
## fails on a surviving mutant docs/development.md does not explain (one to two hours on two cores)
.PHONY: mutation
mutation: $(VENV)/.dev-installed
	$(PY) tools/mutation.py $(if $(SCOPE),--scope $(SCOPE))

## format: apply ruff's formatting and safe fixes
format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## golden: regenerate the golden copies of every generated file under tests/golden/
golden: $(VENV)/.dev-installed
	$(PY) tools/golden.py

## state-backend: create or check the state bucket, e.g. ARGS='--namespace NS --region R --bucket B'
## (a Customer Secret Key in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); prints the login line
state-backend: $(VENV)/.dev-installed
	$(PY) tools/state_backend.py $(ARGS)

## bench: the performance table (bench/)
bench: $(VENV)/.dev-installed
	$(PY) tools/bench.py

## bench-deploy: the deploy on the real Docker engine behind the edge: deploy and rollback times, failed requests (root)
.PHONY: bench-deploy
bench-deploy: $(VENV)/.dev-installed
	$(PY) tools/bench_deploy.py

## bench-build: build-test's image build on the real Docker engine, cold and warm from the layer cache (root)
.PHONY: bench-build
bench-build: $(VENV)/.dev-installed
	$(PY) tools/bench_build.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build
