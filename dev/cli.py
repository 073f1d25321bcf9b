"""`hookstream dev`: the whole stack in one terminal, a scripted scenario and a live summary."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

EXIT_OK, EXIT_SCENARIO_FAILED, EXIT_STACK_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130
SUMMARY_EVERY_S = 2.0


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()  # progress must show up promptly when stdout is a pipe (CI)


@click.command()
@click.option("--scenario-only", is_flag=True,
              help="Play the scenario, check the expected balances, stop everything; exit 0 if they were "
                   "reached, 1 if not (2 if the stack did not start).")
@click.option("--no-scenario", is_flag=True, help="Only run the stack (with the live summary) until Ctrl-C.")
@click.option("--generation", type=click.Choice(["A", "B"], case_sensitive=False), default="B", show_default=True,
              help="Envelope generation the sandbox sends: A = operation/sub_operation, B = product/event_type.")
@click.option("--keep", is_flag=True,
              help="Keep the run directory (logs, ledger, broker data) after a clean run. "
                   "It is always kept when something failed.")
@click.option("--kafka-bootstrap", metavar="HOST:PORT", default=None,
              help="Use this running broker instead of starting one; topics get a per-run prefix "
                   "(dev-<run id>.) so runs never see each other's records.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where logs, the SQLite ledger, the spool and broker data go (an existing directory is "
                   "never deleted). Default: var/dev/<run id>.")
def dev(scenario_only: bool, no_scenario: bool, generation: str, keep: bool, kafka_bootstrap: str | None,
        run_dir: Path | None) -> None:
    """Start the local Kafka broker, topics, a SQLite ledger, the sandbox, the receiver and all five
    processors; seed and link sandbox cards and wallets; play a scenario with a live summary.

    Ctrl-C or SIGTERM stops everything: processors drain (SIGTERM, bounded wait, then SIGKILL),
    the broker stops last. Child logs are in the run directory.
    """
    if scenario_only and no_scenario:
        raise click.UsageError("--scenario-only and --no-scenario exclude each other")
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = (run_dir or Path("var/dev") / run_id).resolve()
    keep = keep or run_dir.exists()  # never delete a directory this run did not create
    run_dir.mkdir(parents=True, exist_ok=True)
    sys.exit(_run(run_dir, run_id, scenario_only=scenario_only, no_scenario=no_scenario,
                  generation=generation.upper(), keep=keep, kafka_bootstrap=kafka_bootstrap))


def _run(run_dir: Path, run_id: str, *, scenario_only: bool, no_scenario: bool, generation: str, keep: bool,
         kafka_bootstrap: str | None) -> int:
    from hookstream.dev import scenario
    from hookstream.dev.driver import Live
    from hookstream.dev.stack import Stack, StackOptions
    from hookstream.dev.summary import Probe
    from hookstream.dev.supervisor import ChildFailed

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            _echo(f"{signal.Signals(signum).name}: stopping everything")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    options = StackOptions(run_dir=run_dir, generation=generation, kafka_bootstrap=kafka_bootstrap,
                           topic_prefix=f"dev-{run_id}." if kafka_bootstrap else "")
    stack = Stack(options, _echo, stop.is_set)
    _echo(f"hookstream dev: run dir {run_dir}")
    probe: Probe | None = None
    code = EXIT_OK
    try:
        endpoints = stack.start()
        probe = Probe(stack.settings(), endpoints, scenario.ACCOUNTS, scenario.CARDS, stack.processors)
        live = Live(_echo, SUMMARY_EVERY_S)
        if not no_scenario:
            code = _play(probe, live, stop.is_set, stack.broken)
        if not scenario_only:
            from hookstream.dev.summary import next_steps

            _echo(next_steps(endpoints, stack.settings(), scenario.ACCOUNT, scenario.CARD))
            code = _watch(stack, probe, live, stop) or code
    except ChildFailed as exc:
        _echo(f"stack failed: {exc}")
        code = EXIT_STACK_FAILED
    except KeyboardInterrupt:
        # A signal during start-up or the scenario: stop below. An interrupted check did not pass.
        code = EXIT_INTERRUPTED if scenario_only else code
    finally:
        if probe is not None:
            probe.close()
        _echo("stopping")
        started = time.monotonic()
        stack.stop()
        _echo(f"stopped in {time.monotonic() - started:.1f}s")
    if keep or code != EXIT_OK:
        _echo(f"run dir kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return code


def _play(probe: Any, live: Any, should_stop: Any, broken: Any) -> int:
    """Play the scenario and print the expected-state table; the exit code it deserves."""
    import httpx

    from hookstream.dev import scenario
    from hookstream.dev.driver import Driver, ScenarioFailed, result_table

    driver = Driver(probe, live, _echo, should_stop, broken)
    started = time.monotonic()
    try:
        driver.play()
        passed, snap = driver.verify()
    except (ScenarioFailed, httpx.HTTPError) as exc:
        _echo(f"scenario failed: {exc}")
        passed, snap = False, probe.snapshot()
    finally:
        driver.close()
    live.show(snap, force=True)  # the final state, unless the live summary just showed it
    _echo(f"scenario {'PASSED' if passed else 'FAILED'} in {time.monotonic() - started:.1f}s; expected state:")
    _echo(result_table(scenario.EXPECTED, snap))
    return EXIT_OK if passed else EXIT_SCENARIO_FAILED


def _watch(stack: Any, probe: Any, live: Any, stop: threading.Event) -> int:
    """The live summary until a signal (0) or until a child dies on its own (2)."""
    _echo("running; Ctrl-C stops everything")
    live.show(probe.snapshot(), force=True)
    while not stop.wait(SUMMARY_EVERY_S / 2):
        dead = stack.broken()
        if dead is not None:
            _echo(f"stack failed: {dead}")
            return EXIT_STACK_FAILED
        live.show(probe.snapshot())
    return EXIT_OK
