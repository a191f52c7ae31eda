#!/usr/bin/env python3
"""Writes tests/data/probe_statistics_reference.json: reference values for the probe's
binomial statistics (src/binomial.rs).

Wilson score intervals from statsmodels' proportion_confint(method="wilson"), exact
two-sided binomial p-values from scipy's binomtest, and exact McNemar p-values from
statsmodels' mcnemar(exact=True) on 2x2 tables whose discordant cells are b and c.
The versions used are written with the values. Run from the repository root:

    python -m venv .venv-ref && .venv-ref/bin/pip install scipy statsmodels
    .venv-ref/bin/python crates/wazn-eval/tests/gen_probe_statistics_reference.py
"""

import json
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

wilson = []
for k, n in [(0, 10), (10, 10), (3, 10), (1, 1), (0, 1), (95, 250), (16, 250), (2, 200), (128, 200), (50, 100), (1, 1000), (999, 1000)]:
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    wilson.append({"k": k, "n": n, "lo": float(lo), "hi": float(hi)})

binomial = []
for k, n, p in [(3, 10, 0.5), (0, 10, 0.5), (7, 20, 0.3), (2, 25, 0.25), (40, 100, 0.5), (1, 3, 0.5)]:
    binomial.append({"k": k, "n": n, "p": p, "p_value": float(binomtest(k, n, p).pvalue)})

mcnemar_rows = []
for b, c in [(0, 0), (1, 0), (5, 0), (3, 7), (10, 2), (12, 12), (25, 40), (0, 13), (60, 35), (150, 120)]:
    table = np.array([[50, b], [c, 50]])
    mcnemar_rows.append({"b": b, "c": c, "p_value": float(mcnemar(table, exact=True).pvalue)})

out = Path(__file__).parent / "data" / "probe_statistics_reference.json"
out.write_text(json.dumps({
    "versions": {"scipy": scipy.__version__, "statsmodels": statsmodels.__version__, "numpy": np.__version__},
    "wilson": wilson,
    "binomial_two_sided": binomial,
    "mcnemar_exact": mcnemar_rows,
}, indent=1) + "\n")
