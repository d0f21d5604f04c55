"""Calibrated CUSUM thresholds for :mod:`policies.fatigue` (generated, do not edit).

Regenerate with ``.venv/bin/python bench/policies.py --calibrate``: for each
relative drop ``delta`` and expected clicks per day ``λ``, the smallest ``h``
giving at most 0.001 false alarms per monitored ad-day on 8000 stable
binomial series of 60 days (seed 20240601), baseline 14 days, testing from day
7.  See :func:`policies.fatigue.calibrate_threshold`.
"""

TARGET_FALSE_ALARM_RATE = 0.001
BASELINE_DAYS = 14
MIN_BASELINE_DAYS = 7
DELTAS = (0.1, 0.15, 0.2, 0.25, 0.3)
LAMBDAS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
THRESHOLDS = {
    0.1: (2.416, 3.226, 4.606, 6.018, 6.955, 7.795, 7.227, 6.76, 6.103, 5.468, 4.16, 0.0),
    0.15: (3.512, 4.531, 6.049, 7.105, 7.716, 7.193, 6.759, 6.123, 5.457, 3.696, 0.0, 0.0),
    0.2: (4.318, 5.462, 7.155, 7.976, 7.322, 6.613, 6.08, 5.654, 3.916, 0.0, 0.0, 0.0),
    0.25: (5.228, 6.27, 7.523, 7.331, 7.084, 6.265, 5.844, 5.176, 1.017, 0.0, 0.0, 0.0),
    0.3: (5.769, 6.689, 7.415, 7.146, 6.452, 6.089, 5.545, 4.176, 0.0, 0.0, 0.0, 0.0),
}
