"""``creative-loop insights``: which traits win, one line per trait (``loop.insights``).

Each line is a plain sentence, ``warm grade: +6 % CTR [+2, +10], 41 variants``:
the trait level's effect on CTR against the average variant of the account,
its 90 % credible interval, and how many tested variants carry it.  A level
whose interval excludes zero is marked ``reliable``.  ``--json`` prints the
same as one JSON document.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loop.cli_support import ConfigOpt, config_from, say
from policies.errors import ConfigError


def insights(
    config: ConfigOpt = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign's experiments.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
) -> None:
    """What wins for the account: each trait's effect on CTR with its 90 % credible interval."""
    from loop.app import open_engine
    from loop.insights import insights as fit_insights
    from loop.insights import plans_for, sentence
    from storage.db import session as open_session

    cfg = config_from(config)
    plans = plans_for(cfg)
    if campaign is not None and campaign not in {p.id for p in plans}:
        raise ConfigError(
            "--campaign", "campaign", f"unknown campaign {campaign!r} (known: {', '.join(p.id for p in plans)})"
        )
    engine = open_engine(cfg.database_url)
    try:
        with open_session(engine) as session:
            found = fit_insights(session, plans, campaign=campaign)
    finally:
        engine.dispose()
    if as_json:
        say(json.dumps({"campaign": campaign, "accounts": [a.to_dict() for a in found]}, indent=2, ensure_ascii=False))
        return
    for account in found:
        say(account.header())
        for e in account.effects:
            say(f"  {sentence(e)}{' · reliable' if e.reliable else ''}")
        if account.untried:
            say(f"  untried: {', '.join(f'{f}={v}' for f, v in account.untried)}")
    say("effects are against the average variant; reliable: the 90 % credible interval excludes zero")
