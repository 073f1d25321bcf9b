"""Child processes of `hookstream dev`: started in their own process groups, stopped by PID, bounded."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOOKSTREAM = [sys.executable, "-m", "hookstream.cli"]
STOP_TIMEOUT_S = 25.0  # processors drain within HOOKSTREAM_PROCESSOR_SHUTDOWN_TIMEOUT_S (20 s)
KILL_WAIT_S = 10.0


class ChildFailed(RuntimeError):
    """A child exited, or did not become ready within its bound."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_timeout_s: float = STOP_TIMEOUT_S
    # Processes the child started in their own sessions (the broker's JVM): killed if the child is.
    orphans: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 2000) -> str:
        return self.output()[-chars:]


class Supervisor:
    """Starts `hookstream …` verbs with one environment, logs each to `<run_dir>/logs/<name>.log`."""

    def __init__(self, run_dir: Path, env: dict[str, str],
                 echo: Callable[[str], None] = lambda line: None) -> None:
        self.run_dir = run_dir
        self.env = env
        self.echo = echo
        self.children: list[Child] = []
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], env: dict[str, str] | None = None,
              stop_timeout_s: float = STOP_TIMEOUT_S) -> Child:
        log = self.run_dir / "logs" / f"{name}.log"
        full_env = {**os.environ, **self.env, **(env or {}), "PYTHONUNBUFFERED": "1"}
        with open(log, "ab") as out:
            # Own session: Ctrl-C in the terminal reaches only `hookstream dev`, which stops
            # children in order (processors before the broker) instead of all at once.
            popen = subprocess.Popen([*HOOKSTREAM, *args], env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.run_dir,
                                     preexec_fn=_terminate_with_parent)
        child = Child(name, popen, log, stop_timeout_s)
        self.children.append(child)
        self.echo(f"started {name} pid={child.pid} log={log}")
        return child

    def run(self, name: str, args: Sequence[str], timeout: float = 120.0) -> str:
        """Run a short-lived verb to completion (bounded); its output, or ChildFailed."""
        child = self.start(name, args)
        try:
            code = child.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(child)
            raise ChildFailed(f"{name} did not finish within {timeout:.0f}s:\n{child.tail()}") from None
        finally:
            self.children.remove(child)
        if code != 0:
            raise ChildFailed(f"{name} exited {code}:\n{child.tail()}")
        return child.output()

    def wait_ready(self, child: Child, *, url: str | None = None, text: str | None = None,
                   timeout: float = 60.0, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Until `url` answers 200 or `text` is in the child's log; ChildFailed on exit or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not should_stop():
            if not child.alive():
                raise ChildFailed(f"{child.name} exited {child.popen.returncode}:\n{child.tail()}")
            if text is not None and text in child.output():
                return
            if url is not None:
                try:
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if should_stop():
            raise KeyboardInterrupt
        raise ChildFailed(f"{child.name} not ready within {timeout:.0f}s:\n{child.tail()}")

    def failed(self) -> list[Child]:
        """Long-running children that exited on their own."""
        return [c for c in self.children if not c.alive()]

    def stop(self, child: Child) -> None:
        """SIGTERM, wait up to the child's bound, then SIGKILL its process group."""
        if child.alive():
            _signal_group(child.pid, signal.SIGTERM)
            try:
                child.popen.wait(timeout=child.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.echo(f"{child.name} pid={child.pid} still running after "
                          f"{child.stop_timeout_s:.0f}s: SIGKILL")
                _signal_group(child.pid, signal.SIGKILL)
                child.popen.wait(timeout=KILL_WAIT_S)
        for pid in child.orphans:
            if _exists(pid):
                _signal_group(pid, signal.SIGKILL)

    def stop_group(self, children: Sequence[Child]) -> None:
        """Stop several children at once: SIGTERM all, then one shared bounded wait, then SIGKILL."""
        live = [c for c in children if c.alive()]
        for child in live:
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + max((c.stop_timeout_s for c in live), default=0.0)
        for child in live:
            try:
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"{child.name} pid={child.pid} did not stop in time: SIGKILL")
                _signal_group(child.pid, signal.SIGKILL)
                child.popen.wait(timeout=KILL_WAIT_S)
        for child in children:
            self.stop(child)  # reaps anything left and its orphans

    def stop_all(self, last: Sequence[str] = ()) -> None:
        """Stop every child: all but `last` together, then the `last` names one by one, in order."""
        early = [c for c in self.children if c.name not in last]
        self.stop_group(early)
        for child in early:
            self.echo(f"stopped {child.name} pid={child.pid} exit={child.popen.returncode}")
        for name in last:
            for child in self.children:
                if child.name == name:
                    self.stop(child)
                    self.echo(f"stopped {child.name} pid={child.pid} exit={child.popen.returncode}")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when `hookstream dev` dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: children are still stopped by PID on a normal exit


PR_SET_PDEATHSIG = 1
