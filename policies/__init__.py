"""Pure decisions for creative-loop: fatigue detection, the bandit, the caps.

Nothing in this package performs I/O or imports another package of the
project, so a marketer can tune and test a policy in a notebook::

    import numpy as np
    from policies.bandit import ThompsonSampling
    from policies.fatigue import detect

The error tree of the whole project lives here too (``policies.errors``),
at the bottom of the dependency graph, so that every layer can raise it.
"""
