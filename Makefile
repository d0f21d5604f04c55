# creative-loop: `make run` and `make test` set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch: a plain `torch` requirement pulls a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0

.PHONY: run test venv install dev lint unit pg bench clean browser-deps redis

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_CPU)
	$(BIN)/pip install -q -e '.[dev,postgres,diffusion,gemini,google,browser,celery,bench]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.dev-installed

## run: the main job on the embedded defaults (simulated platform, procedural generator, SQLite)
run: install
	$(BIN)/creative-loop simulate --out out --json out/result.json

# The browser test drives Debian's chromium through playwright (never `playwright install`);
# without it that one test skips.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
		|| echo "note: could not install chromium; the browser test will skip"

# The Celery tests need Redis; start the machine's if it is not answering (idempotent).
redis:
	@redis-cli ping >/dev/null 2>&1 || { mkdir -p /var/lib/redis /var/log/redis && redis-server --daemonize yes \
		--bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log \
		&& for i in 1 2 3 4 5 6 7 8 9 10; do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done; } \
		|| echo "note: could not start Redis; the Celery tests will skip"

## test: lint, type-check (mypy, configured in pyproject.toml), then every test on SQLite and on PostgreSQL
test: dev browser-deps redis
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	CREATIVE_LOOP_TEST_PG=$${CREATIVE_LOOP_TEST_PG-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(BIN)/python -m pytest -q -n 2

bench: dev
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/tick.py
	$(BIN)/python bench/generation.py

clean:
	rm -rf out data .pytest_cache
