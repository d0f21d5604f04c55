"""The ``creative-loop`` command line (also ``python -m loop``).

Exit codes: 0 success, 1 a runtime failure, 2 bad input (one line naming the
file, key and problem; never a traceback for a user's mistake).
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Table
from rich.text import Text

from loop import doctor, executors, fix, insights_command
from loop.cli_support import (
    ConfigOpt,
    config_from,
    console,
    current_actor,
    err_console,
    literal,
    output_file,
    output_folder,
    say,
    setup_logging,
    utf8_text,
)
from loop.config import MAX_DAYS, Config, currency_digits
from loop.web import commands as web_commands
from policies.errors import ConfigError, CreativeLoopError, NotFound

# The usage errors of the click that typer runs on (typer 0.29 carries its own copy of click).
_UsageError: Any = sys.modules[typer.BadParameter.__module__].UsageError

# A typo's bound: the runs' job list is built up front (10**11 runs was a MemoryError, not a one-line refusal).
MAX_RUNS = 10_000

app: typer.Typer = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Keep ad creatives fresh and cheap to test.",
)


@app.command()
def simulate(
    config: ConfigOpt = None,
    scenario: Annotated[Path | None, typer.Option(help="Scenario TOML (default: the bundled example).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON result here.")] = None,
    tiering: Annotated[str, typer.Option(help="tiered | pro-only")] = "tiered",
    policy: Annotated[str | None, typer.Option(help="Allocation policy (default: the config's).")] = None,
    days: Annotated[
        int | None, typer.Option(min=1, max=MAX_DAYS, help="Days to simulate (default: the scenario's).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the database, images and gallery.")] = Path("out"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Also write a self-contained HTML report.")] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Compare policies, e.g. thompson,uniform,epsilon_greedy.")
    ] = None,
    runs: Annotated[
        int | None, typer.Option("--runs", min=1, max=MAX_RUNS, help="Runs per policy with --compare (default 50).")
    ] = None,
    selection: Annotated[
        str | None,
        typer.Option(
            "--selection",
            help="Compare draft selection strategies on the same seeds, e.g. model,first "
            "(with --compare, or alone for the config's policy).",
        ),
    ] = None,
) -> None:
    """Run the loop offline on the simulated platform and score it (or compare policies)."""
    from connectors.ads.scenario import load_scenario
    from loop.simulate import TIERINGS, export_gallery, run_simulation, write_dashboard_config

    cfg = config_from(config)
    if tiering not in TIERINGS:
        raise ConfigError("--tiering", "tiering", f"expected one of {', '.join(TIERINGS)}, got {tiering!r}")
    if policy is not None:
        from policies.bandit import POLICY_NAMES

        if policy not in POLICY_NAMES:
            raise ConfigError("--policy", "policy", f"unknown policy {policy!r} (allowed: {', '.join(POLICY_NAMES)})")
    scen = load_scenario(scenario)
    total = days or scen.days
    for path, option in ((json_out, "--json"), (report, "--report")):
        if path is not None:
            output_file(path, option)
    if compare is not None or runs is not None or selection is not None:
        _simulate_compare(
            cfg, scen, scenario, compare, policy, runs or 50, total, tiering, json_out, report, quiet, selection
        )
        return
    output_folder(out, "--out")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("days"), TimeElapsedColumn(),
        console=err_console, disable=quiet,
    ) as progress:  # fmt: skip
        task = progress.add_task("days", total=total)
        run = run_simulation(
            cfg, scen, scenario_name=str(scenario) if scenario else "bundled example", days=total,
            tiering=tiering, policy=policy, out_dir=out, on_day=lambda i, n: progress.update(task, completed=i),
        )  # fmt: skip
    export_gallery(run.runtime, out)
    if report is not None:
        from loop.web.report import write_report

        write_report(run.runtime.engine, run.runtime.images, report)
    target = json_out or out / "result.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(run.result, indent=2) + "\n")
    dashboard = write_dashboard_config(cfg, out, scenario)
    if not quiet:
        _print_summary(run.result)
        say(f"result: {target}   images: {out / 'gallery'}")
        say(f"dashboard: {_program()} serve --config {_shown_path(dashboard)}")
    for line in run.errors:
        say(f"error: {line}", err=True)
    if run.errors:
        raise typer.Exit(1)  # a tick failed: the result is not the whole run


def _simulate_compare(
    cfg: Config, scen: Any, scenario: Path | None, compare: str | None, policy: str | None, runs: int,
    days: int, tiering: str, json_out: Path | None, report: Path | None, quiet: bool, selection: str | None = None,
) -> None:  # fmt: skip
    """``simulate --compare``: every policy on common random numbers (loop.compare), then the table (loop.compare_report)."""
    from loop.compare import compare_policies, parse_policies, parse_selections
    from loop.compare_report import rich_table, selection_table, write_report

    if compare is None and selection is None:
        raise ConfigError("--runs", "runs", "--runs needs --compare (e.g. --compare thompson,uniform)")
    if policy is not None:
        raise ConfigError("--compare", "compare", "give either --policy or --compare, not both")
    try:
        names = parse_policies(compare if compare is not None else cfg.model.defaults.policy)
    except ValueError as exc:
        raise ConfigError("--compare", "compare", str(exc)) from exc
    strategies: list[str] | None = None
    if selection is not None:
        try:
            strategies = parse_selections(selection)
        except ValueError as exc:
            raise ConfigError("--selection", "selection", str(exc)) from exc
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]comparing"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn(),
        console=err_console, disable=quiet,
    ) as progress:  # fmt: skip
        task = progress.add_task("runs", total=runs * len(names) * len(strategies or [None]))
        result = compare_policies(
            cfg, scen, names, runs, scenario_name=str(scenario) if scenario else "bundled example", days=days,
            tiering=tiering, on_run=lambda i, n: progress.update(task, completed=i), selections=strategies,
        )  # fmt: skip
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if report is not None:
        write_report(result, report)
    if not quiet:
        console.print(rich_table(result))
        if strategies:
            console.print(selection_table(result))
        for line in result.paired_lines():
            say(line)
        console.print(
            f"{runs} run(s) x {len(result.policies)} rows in {result.elapsed_s:.0f} s "
            f"({result.cpu_s:.0f} s CPU over {result.workers} process(es))"
        )


def _fatigue_line(f: dict[str, Any]) -> str:
    """``hero: day 23 (onset 20)``, ``hero: not detected (onset 55)`` or ``evergreen: day 40 (no onset: false alarm)``."""
    onset = f"(onset {f['true_onset_day']})" if f["true_onset_day"] is not None else "(no onset: false alarm)"
    seen = f"day {f['detected_day']}" if f["detected_day"] is not None else "not detected"
    return f"{f['creative']}: {seen} {onset}"


def _print_summary(result: dict[str, Any]) -> None:
    # The scenario is a path a user typed: "[/x]" in it is text, not markup (a MarkupError before).
    table = Table(
        title=literal(
            f"simulation: {result['scenario']} · {result['policy']} · {result['tiering']} · {result['days']} days"
        )
    )
    for col in (
        "campaign",
        "fatigue detected",
        "experiments",
        "winner",
        "test spend / cap",
        "credits / cap",
        "clicks recovered",
    ):
        table.add_column(col)
    for c in result["campaigns"]:
        d = currency_digits(c.get("currency"))
        fat = ", ".join(_fatigue_line(f) for f in c["fatigue"]) or "none"
        exps = ", ".join(e["state"] for e in c["experiments"]) or "none"
        winners = ", ".join(
            f"{e['winner']} (ctr {e['winner_true_ctr']:.4f} vs best {e['best_true_ctr']:.4f})"
            for e in c["experiments"] if e["winner"]
        ) or "none"  # fmt: skip
        table.add_row(*map(literal, (
            c["id"], fat, f"{len(c['experiments'])}: {exps}", winners,
            f"{c['test_spend']:,.{d}f} / {c['test_spend_cap']:,.{d}f}", f"{c['credit_spend']:,.{d}f} / {c['credit_cap']:,.{d}f}",
            f"{c['clicks_recovered']:.0f}",
        )))  # fmt: skip
    console.print(table)


@app.command(name="tick")
def tick_cmd(
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan everything, change nothing.")] = False,
) -> None:
    """Run one pass of the loop over every campaign (for cron)."""
    from loop.daemon import run_one_tick

    cfg = config_from(config)
    setup_logging(cfg)
    report = run_one_tick(cfg, dry_run=dry_run)
    for line in report.detected:
        say(f"fatigue detected: {line}")
    for line in report.transitions:
        say(line)
    if dry_run:
        say(f"dry run: {len(report.plan)} planned change(s), nothing sent")
        for line in report.plan:
            say(f"  would: {line}")
    for line in report.errors:
        say(f"error: {line}", err=True)  # one line each
    if report.errors:
        raise typer.Exit(1)


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the loop as a daemon on the configured interval or cron schedule."""
    from loop.daemon import run_daemon

    cfg = config_from(config)
    setup_logging(cfg)
    run_daemon(cfg)


@app.command()
def status(config: ConfigOpt = None) -> None:
    """Campaigns, live creatives, open experiments and the last tick."""
    from loop.reports import status_rows

    cfg = config_from(config)
    rows = status_rows(cfg)
    table = Table(title="experiments")
    for col in ("id", "campaign", "state", "detected", "winner", "status", "reason", "test plan"):
        table.add_column(col, no_wrap=col in ("state", "detected"))
    for r in rows["experiments"]:
        table.add_row(
            *map(
                literal,
                (
                    r["id"],
                    r["campaign"],
                    r["state"],
                    r["detected"],
                    r["winner"] or "",
                    r["status"],
                    r["reason"],
                    r["plan"],
                ),
            )
        )
    console.print(table)
    live = Table(title="live creatives")
    for col in ("campaign", "creative", "ad", "status", "days", "ctr (7d)"):
        live.add_column(col)
    for r in rows["creatives"]:
        live.add_row(*map(literal, (r["campaign"], r["creative"], r["ad"], r["status"], r["days"], r["ctr"])))
    console.print(live)
    for flag in rows["flags"]:
        console.print(Text.assemble(("flag", "yellow"), literal(f": {flag}")), highlight=False, soft_wrap=True)
    day = f" (platform day {rows['last_tick_day']})" if rows.get("last_tick_day") else ""
    say(f"last tick: {rows['last_tick'] or 'never'}{day}")


@app.command()
def spend(
    config: ConfigOpt = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Also write the rows to this CSV file ('-': standard output).")
    ] = None,
) -> None:
    """The money ledger per campaign and cap period: period start, cap, spent, reserved, left."""
    from loop.reports import SPEND_COLUMNS, csv_safe, spend_table

    cfg = config_from(config)
    if csv_path is not None:
        output_file(csv_path, "--csv")
    rows = spend_table(cfg)
    if csv_path is not None:
        import csv
        import io

        buf = io.StringIO()
        # RFC 4180 line ends: a field holding a CR or LF is then quoted (with "\n" alone a CR went out bare).
        writer = csv.DictWriter(buf, fieldnames=SPEND_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        for r in rows:
            # A leading =, +, -, @, tab or CR would be a formula; an empty cell (a lifetime cap's start) stays empty.
            writer.writerow({k: csv_safe(v) for k, v in r.items()})
        if str(csv_path) == "-":
            sys.stdout.write(buf.getvalue())
            return
        try:
            csv_path.write_text(buf.getvalue(), newline="")
        except OSError as exc:
            raise ConfigError(str(csv_path), "--csv", exc.strerror or str(exc)) from None
    table = Table(title="ledger (currency units, by cap period)")
    for col in ("campaign", "account", "period", "start", "cap", "spent", "reserved", "left"):
        table.add_column(col, justify="left" if col in ("campaign", "account", "period", "start") else "right")
    for r in rows:
        table.add_row(
            literal(r["campaign"]), r["account"], r["period"], r["period_start"],
            *(literal(f"{r[k]:,.{currency_digits(r['currency'])}f} {r['currency']}".strip())
              for k in ("cap", "spent", "reserved", "left")),
        )  # fmt: skip
    console.print(table)


@app.command()
def approve(
    experiment_id: Annotated[
        str, typer.Argument(metavar="ID", help="Experiment id (see `status`).", callback=utf8_text)
    ],
    config: ConfigOpt = None,
    note: Annotated[str, typer.Option(help="A note for the audit log.", callback=utf8_text)] = "",
) -> None:
    """Approve what an experiment waits for (drafts or the pro render)."""
    from loop.reports import decide_approval

    exp = decide_approval(config_from(config), experiment_id, approve=True, actor=current_actor(), reason=note)
    say(f"approved {exp.id} ({exp.approved_stage}); the next tick acts on it")


@app.command()
def reject(
    experiment_id: Annotated[
        str, typer.Argument(metavar="ID", help="Experiment id (see `status`).", callback=utf8_text)
    ],
    config: ConfigOpt = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).", callback=utf8_text)] = "rejected",
) -> None:
    """Reject an experiment: it is abandoned with the reason stored."""
    from loop.reports import decide_approval

    exp = decide_approval(config_from(config), experiment_id, approve=False, actor=current_actor(), reason=reason)
    say(f"rejected {exp.id}: {exp.reason}")


def _program() -> str:
    """How this program was started, when that is a command a user can type again (else its name)."""
    import shlex

    called = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if called is not None and called.name == "creative-loop" and called.exists():
        return shlex.quote(str(called))
    return "creative-loop"


def _shown_path(path: Path) -> str:
    import shlex

    try:
        return shlex.quote(str(path.resolve().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path))


def main(argv: list[str] | None = None) -> int:
    """Entry point: translate our errors into one line and an exit code."""
    try:
        rv = app(args=argv, prog_name="creative-loop", standalone_mode=False)
    except _UsageError as exc:
        exc.show()
        return 2
    except typer.Abort:
        say("aborted", err=True)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (ConfigError, NotFound) as exc:
        _error_line(str(exc))
        return 2
    except CreativeLoopError as exc:
        _error_line(str(exc))
        return 1
    except Exception as exc:
        line = _outage_line(exc)
        if line is None:
            raise
        _error_line(line)
        return 1
    return int(rv or 0)


def entry() -> NoReturn:
    """The ``creative-loop`` console script (and ``python -m loop``): :func:`main`, then exit.

    Python's shutdown runs one more cyclic garbage collection over every object still alive, the
    imported libraries' and the command's: 0.15-0.2 s of a tick (bench/README), for memory the
    system takes back anyway.  ``gc.freeze()`` takes them out of the collector's sight; ``atexit``
    (log handlers, the process's database engines), thread joins and reference-counted cleanup
    still run.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def _error_line(text: str) -> None:
    """The one line of a failed command: a value quoted from a file or the platform cannot break it or the terminal."""
    from loop.logs import printable

    print(f"creative-loop: {printable(text)}", file=sys.stderr)


def _outage_line(exc: BaseException) -> str | None:
    """One line for the world failing under a command (a database gone, a full disk); None for a bug."""
    from storage.db import disk_full, is_outage, unavailable

    if disk_full(exc):
        assert isinstance(exc, OSError)
        return f"cannot write {exc.filename or 'a file'}: {exc.strerror} (free some disk space, then run it again)"
    if is_outage(exc):
        return str(unavailable(None, exc))
    return None


# Commands declared in their own modules, registered here (in this order in --help).
app.command()(doctor.doctor)
app.command()(executors.worker)  # the Celery executor's worker
app.command()(fix.fix)  # inpainting a variant
app.command()(insights_command.insights)  # what wins for the account
app.command()(web_commands.serve)
app.command()(web_commands.report)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
