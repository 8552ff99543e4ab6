# The README's two commands. Both set everything up first (idempotent, minutes).
.PHONY: setup demo test bench-train

setup:
	@bash scripts/setup.sh --dev

# Main job on the embedded default data: train 3x3 / 5x5 / 1x5 for the same short wall-clock
# budget, export, benchmark, and write one report (runs/compare/report.md).
demo: setup
	.venv/bin/lkmseg compare --blocks 3x3,5x5,1x5 --size 128 --budget 30s \
		--batch-sizes 1 --bench-reps 10 --limit 16 --out runs/compare

test: setup
	.venv/bin/deptry .
	.venv/bin/python -m pytest -q

bench-train: setup
	.venv/bin/python benchmarks/train_speed.py
