# The two commands a new clone needs: `make run` and `make test`. Everything else is optional.
# uv is used when installed; otherwise it is bootstrapped into .tools/ with the system Python.

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif
RUN := $(UV) run --frozen

.PHONY: install run test lint typecheck check schema bench-api bench-sync bench-summary bench-generate bench-usage bench-close bench-close-sync bench-upcoming stop clean bench-forecast bench-forecast-read

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(UV)
	$(UV) sync --frozen --quiet

run: install
	$(RUN) billing run

# Tests run in parallel (pytest-xdist), each worker with its own database and Redis db. Four
# workers on two cores: the suite mostly waits (real Celery workers, a browser, the mock's
# faults), and on the 2-core build box -n 4 beat -n 2 and a serial run. The quick inner loop:
# `uv run pytest -m "not slow"`.
TEST_WORKERS ?= 4

test: install
	$(RUN) pytest -q -n $(TEST_WORKERS)

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install
	$(RUN) mypy gql models sync stripe_mock devstack demo commands client cli.py bootstrap.py settings.py outage.py migrations_runner.py

check: lint typecheck test

schema: install
	$(RUN) python -m gql.export_schema > schema.graphql

bench-generate: install
	$(RUN) python bench/generate.py

bench-api: install
	$(RUN) python bench/api.py

bench-sync: install
	$(RUN) python bench/sync.py

bench-summary: install
	$(RUN) python bench/summary.py

bench-usage: install
	$(RUN) python bench/usage.py

bench-close: install
	$(RUN) python bench/close.py

bench-close-sync: install
	$(RUN) python bench/close_sync.py

bench-upcoming: install
	$(RUN) python bench/upcoming.py

bench-forecast: install
	$(RUN) python bench/forecast.py

bench-forecast-read: install
	$(RUN) python bench/forecast_read.py

stop: install
	$(RUN) billing stop

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache test-output
