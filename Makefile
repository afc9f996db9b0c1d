# Two entry points, both self-installing and idempotent (see scripts/install.sh).
DEFAULT_TOPOLOGY ?= topologies/default.yaml
LAB = .venv/bin/lab

.PHONY: install demo test test-exercises unit bench fuzz
install:
	./scripts/install.sh

demo: install
	$(LAB) run $(DEFAULT_TOPOLOGY)

test: install
	./scripts/run-tests.sh

test-exercises: install
	./scripts/run-tests.sh -m exercises tests/integration/test_exercise.py tests/integration/test_autograder.py

unit: install
	.venv/bin/pytest -q tests/unit

bench: install
	.venv/bin/python bench/lab_lifecycle.py
	.venv/bin/python bench/kube_proxy.py
	.venv/bin/python bench/dns_ready.py
	.venv/bin/python bench/netpol.py --loop 20 --with-load
	.venv/bin/python bench/bgp.py
	.venv/bin/python bench/fabric.py
	.venv/bin/python bench/check_scale.py
	.venv/bin/python bench/faults.py
	.venv/bin/python bench/scenarios.py
	.venv/bin/python bench/exercises.py
	.venv/bin/python bench/ingress.py
	.venv/bin/python bench/loadbalancer.py

fuzz: install
	.venv/bin/python bench/fuzz.py --cases 100000
