# Two commands do everything: `make run` (the whole stack on embedded defaults) and `make test`.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: run test install bench-api bench-floor bench-instructions bench-payouts bench-export bench-batch clean

$(VENV_STAMP): requirements.txt
	@test -x $(PY) || python3 -m venv .venv
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(VENV_STAMP)

install: $(VENV_STAMP)

run: $(VENV_STAMP)
	@bash scripts/run.sh

test: $(VENV_STAMP)
	@bash scripts/test.sh

# Benchmarks (docs/benchmarks.md): measurements, not tests; they need PostgreSQL, Redis and wrk.
bench-api: $(VENV_STAMP)
	$(PY) bench/api_cashbacks.py

bench-floor: $(VENV_STAMP)
	$(PY) bench/floor.py

bench-instructions: $(VENV_STAMP)
	$(PY) bench/instructions.py

bench-payouts: $(VENV_STAMP)
	$(PY) bench/payout_drain.py

bench-export: $(VENV_STAMP)
	$(PY) bench/csv_export.py

bench-batch: $(VENV_STAMP)
	$(PY) bench/batch_upload.py

clean:
	rm -rf var/ .pytest_cache
