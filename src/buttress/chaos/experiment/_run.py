"""Running an experiment: steady state, method, rollbacks, journal.

The rules that make it safe to run (and the reasons existing tools hurt):

* **An action's undo is registered before the action starts**, so an action interrupted
  half way (a toxic POSTed, its answer never read) is still undone. Undos are idempotent:
  removing a toxic that is already gone counts as done.
* **Rollbacks always run** — after a completed method, a failed action, an abort, or an
  interruption (SIGINT, SIGTERM, ``KeyboardInterrupt``, task cancellation). They run in
  reverse order of the actions, then the declared ``rollbacks:`` in order; one failing
  does not stop the others.
* **The hypothesis can be checked during the method**: every ``interval`` seconds; after
  ``abort_after`` failed checks in a row the method is cancelled (``aborted``).
* **The journal is rewritten after every step**, so even a killed run leaves a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import re
import shlex
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..._clock import Clock, resolve
from ..._version import __version__
from .._errors import ProxyError, ProxyNotFoundError
from .._http import request
from .._toxics import toxic_from_json
from ._model import Action, Experiment, Probe, signal_number

__all__ = ["ActionFailedError", "Runner", "run_experiment"]

STATUSES = ("completed", "failed", "aborted", "interrupted")
_OUTPUT_LIMIT = 2000


class ActionFailedError(Exception):
    """An action did not do what it was asked (its error is in the journal)."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _trim(text: str) -> str:
    return text if len(text) <= _OUTPUT_LIMIT else text[:_OUTPUT_LIMIT] + "..."


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _import(function: str) -> Callable[..., Any]:
    module_name, _, attr = function.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{function} is not callable")
    return target  # type: ignore[no-any-return]


async def _call(function: str, arguments: dict[str, Any]) -> Any:
    result = _import(function)(**arguments)
    if inspect.isawaitable(result):
        result = await result
    return result


# -- proxies: over Toxiproxy's HTTP API, or a ProxyServer in this process ------------------------


class ProxyControl(Protocol):
    """What proxy actions need from a fault proxy."""

    async def add_toxic(self, proxy: str, toxic: dict[str, Any]) -> Any: ...
    async def remove_toxic(self, proxy: str, name: str) -> str: ...
    async def enabled(self, proxy: str) -> bool: ...
    async def set_enabled(self, proxy: str, enabled: bool) -> None: ...


class HttpControl:
    """A Toxiproxy-compatible API at ``url`` (``buttress proxy`` or Toxiproxy itself)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    async def _json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"buttress/{__version__}"}
        response = await request(method, self.url + path, body=data, headers=headers, timeout=10)
        try:
            decoded = json.loads(response.body or b"null")
        except ValueError:
            decoded = response.body.decode(errors="replace")
        return response.status, decoded

    @staticmethod
    def _raise(status: int, body: Any) -> None:
        message = body.get("error") if isinstance(body, dict) else body
        raise ProxyError(f"proxy API answered {status}: {message}", status=status)

    async def add_toxic(self, proxy: str, toxic: dict[str, Any]) -> Any:
        status, body = await self._json("POST", f"/proxies/{proxy}/toxics", toxic)
        if status != 200:
            self._raise(status, body)
        return body

    async def remove_toxic(self, proxy: str, name: str) -> str:
        status, body = await self._json("DELETE", f"/proxies/{proxy}/toxics/{name}")
        if status == 404:
            return "already absent"
        if status != 204:
            self._raise(status, body)
        return "removed"

    async def enabled(self, proxy: str) -> bool:
        status, body = await self._json("GET", f"/proxies/{proxy}")
        if status != 200:
            self._raise(status, body)
        return bool(body["enabled"])

    async def set_enabled(self, proxy: str, enabled: bool) -> None:
        status, body = await self._json("POST", f"/proxies/{proxy}", {"enabled": enabled})
        if status != 200:
            self._raise(status, body)


class LocalControl:
    """A :class:`~buttress.chaos.ProxyServer` running in this process."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def add_toxic(self, proxy: str, toxic: dict[str, Any]) -> Any:
        return self.server.get(proxy).add_toxic_json(toxic).to_json()

    async def remove_toxic(self, proxy: str, name: str) -> str:
        try:
            self.server.get(proxy).remove_toxic(name)
        except ProxyNotFoundError:
            return "already absent"
        return "removed"

    async def enabled(self, proxy: str) -> bool:
        return bool(self.server.get(proxy).enabled)

    async def set_enabled(self, proxy: str, enabled: bool) -> None:
        target = self.server.get(proxy)
        target.enable() if enabled else target.disable()


# -- the runner ------------------------------------------------------------------------------------

Undo = tuple[str, Callable[[], Awaitable[Any]]]


class Runner:
    """Runs one :class:`Experiment`; see :func:`run_experiment`."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        journal_path: str | os.PathLike[str] | None = None,
        proxy_server: Any = None,
        clock: Clock | None = None,
    ) -> None:
        self.experiment = experiment
        self.journal_path = None if journal_path is None else Path(journal_path)
        self.proxy_server = proxy_server
        self.clock = resolve(clock)
        self._undo: list[Undo] = []
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._current: asyncio.Task[Any] | None = None
        self._interrupted: str | None = None
        self._aborted: str | None = None
        self._rolling_back = False
        self._t0 = 0.0
        self.journal: dict[str, Any] = {
            "buttress": __version__,
            "experiment": {
                "title": experiment.title,
                "description": experiment.description,
                "source": experiment.source,
            },
            "status": None,
            "deviated": False,
            "reason": "",
            "started": None,
            "ended": None,
            "duration": None,
            "steady_state": {"before": None, "during": [], "after": None},
            "run": [],
            "rollbacks": [],
        }

    # -- control -----------------------------------------------------------------------------

    def interrupt(self, reason: str = "interrupted") -> None:
        """Stop the method now (as SIGINT does); rollbacks still run."""
        if self._rolling_back:
            return  # the rollbacks must finish; a second signal does not cut them short
        if self._interrupted is None:
            self._interrupted = reason
        if self._current is not None and not self._current.done():
            self._current.cancel()

    def _offset(self) -> float:
        return round(self.clock.monotonic() - self._t0, 6)

    def _write(self) -> None:
        if self.journal_path is None:
            return
        tmp = self.journal_path.with_name(self.journal_path.name + ".tmp")
        tmp.write_text(json.dumps(self.journal, indent=2, default=repr) + "\n", encoding="utf-8")
        os.replace(tmp, self.journal_path)

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Run the experiment; returns the journal (also written to ``journal_path``)."""
        journal = self.journal
        journal["started"] = _now_iso()
        self._t0 = self.clock.monotonic()
        outer_cancel = False
        method_started = False
        self._write()
        try:
            hypothesis = self.experiment.hypothesis
            if hypothesis is not None:
                before = await self._phase(self._check("before"))
                journal["steady_state"]["before"] = before
                if not before["met"]:
                    self._finish("aborted", "the steady state did not hold before the method")
                    return journal
            method_started = True
            await self._phase(self._method())
            if hypothesis is not None:
                after = await self._phase(self._check("after"))
                journal["steady_state"]["after"] = after
                if not after["met"]:
                    journal["deviated"] = True
            reason = "the steady state deviated" if journal["deviated"] else "the steady state held"
            self._finish("completed", reason)
        except asyncio.CancelledError:
            if self._aborted is not None:
                self._finish("aborted", self._aborted)
            else:
                outer_cancel = self._interrupted is None
                self._finish("interrupted", self._interrupted or "cancelled")
        except ActionFailedError as exc:
            self._finish("failed", str(exc))
        except KeyboardInterrupt:
            self._finish("interrupted", "KeyboardInterrupt")
            outer_cancel = True
        finally:
            if journal["status"] is None:  # an unexpected error: still roll back
                self._finish("failed", "internal error")
            self._rolling_back = True
            await self._rollback(declared=method_started)
            journal["ended"] = _now_iso()
            journal["duration"] = self._offset()
            self._write()
        if outer_cancel:
            raise asyncio.CancelledError
        return journal

    async def _phase(self, coro: Awaitable[Any]) -> Any:
        task = self._current = asyncio.ensure_future(coro)
        try:
            if self._interrupted is not None:
                task.cancel()
            return await task
        finally:
            self._current = None

    def _finish(self, status: str, reason: str) -> None:
        if self.journal["status"] is None:
            self.journal["status"] = status
            self.journal["reason"] = reason
        self._write()

    # -- steady state --------------------------------------------------------------------------

    async def _check(self, when: str) -> dict[str, Any]:
        hypothesis = self.experiment.hypothesis
        assert hypothesis is not None
        results = await asyncio.gather(*(self._probe(p) for p in hypothesis.probes))
        return {
            "when": when,
            "at": self._offset(),
            "met": all(r["met"] for r in results),
            "probes": list(results),
        }

    async def _probe(self, probe: Probe) -> dict[str, Any]:
        spec = probe.spec
        tolerance = spec.get("tolerance")
        started = time.perf_counter()
        record: dict[str, Any] = {"name": probe.name, "type": probe.type, "met": False}
        try:
            async with asyncio.timeout(probe.timeout):
                value, met = await self._measure(probe, tolerance)
            record.update(value=value, met=met)
        except (TimeoutError, OSError, ValueError, ImportError, AttributeError, TypeError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if probe.type == "tcp" and tolerance is False:
                record["met"] = True  # the port is meant to be closed
        except Exception as exc:  # a python probe may raise anything
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["duration"] = round(time.perf_counter() - started, 6)
        return record

    async def _measure(self, probe: Probe, tolerance: Any) -> tuple[Any, bool]:
        spec = probe.spec
        if probe.type == "http":
            response = await request(
                spec.get("method", "GET"),
                spec["url"],
                headers=spec.get("headers"),
                timeout=probe.timeout,
            )
            statuses: Any = tolerance.get("status") if isinstance(tolerance, dict) else tolerance
            if statuses is None:
                ok = 200 <= response.status < 300
            else:
                ok = response.status in (statuses if isinstance(statuses, list) else [statuses])
            limit = tolerance.get("max_latency") if isinstance(tolerance, dict) else None
            if limit is not None and response.elapsed > limit:
                ok = False
            return {"status": response.status, "latency": round(response.elapsed, 6)}, ok
        if probe.type == "tcp":
            host, _, port = spec["address"].rpartition(":")
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return "open", tolerance is not False
        if probe.type == "python":
            value = await _call(spec["function"], dict(spec.get("arguments") or {}))
            if tolerance is None:
                return value, bool(value)
            if isinstance(tolerance, dict):
                low, high = tolerance.get("min"), tolerance.get("max")
                ok = (
                    isinstance(value, int | float)
                    and (low is None or value >= low)
                    and (high is None or value <= high)
                )
                return value, ok
            return value, value == tolerance
        # process
        code, out = await self._run_command(spec["command"], probe.timeout)
        wanted = tolerance if tolerance is not None else 0
        return {"exit_code": code, "output": out}, code in (
            wanted if isinstance(wanted, list) else [wanted]
        )

    async def _run_command(
        self,
        command: str | list[str],
        timeout: float,  # noqa: ASYNC109 - the command's whole budget
        env: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        argv = _argv(command)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )
        try:
            async with asyncio.timeout(timeout):
                out, _ = await process.communicate()
        except BaseException:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise
        return int(process.returncode or 0), _trim(out.decode(errors="replace"))

    async def _monitor(self, method: asyncio.Task[Any]) -> None:
        hypothesis = self.experiment.hypothesis
        assert hypothesis is not None
        during = hypothesis.during
        assert during is not None
        failed_in_row = 0
        while not method.done():
            await self.clock.sleep(during.interval)
            if method.done():
                return
            result = await self._check("during")
            self.journal["steady_state"]["during"].append(result)
            self._write()
            if result["met"]:
                failed_in_row = 0
                continue
            self.journal["deviated"] = True
            failed_in_row += 1
            if during.abort_after is not None and failed_in_row >= during.abort_after:
                self._aborted = (
                    f"the steady state failed {failed_in_row} checks in a row during the method"
                )
                method.cancel()
                return

    # -- the method ----------------------------------------------------------------------------

    async def _method(self) -> None:
        hypothesis = self.experiment.hypothesis
        steps = asyncio.ensure_future(self._steps())
        monitor = None
        if hypothesis is not None and hypothesis.during is not None:
            monitor = asyncio.ensure_future(self._monitor(steps))
        try:
            await steps
        except asyncio.CancelledError:
            if not steps.done():
                steps.cancel()
            with contextlib.suppress(BaseException):
                await steps
            raise
        finally:
            if monitor is not None:
                monitor.cancel()
                with contextlib.suppress(BaseException):
                    await monitor
        if self._aborted is not None:
            raise asyncio.CancelledError

    async def _steps(self) -> None:
        background: list[asyncio.Task[Any]] = []
        try:
            for action in self.experiment.method:
                if action.background:
                    background.append(asyncio.ensure_future(self._step(action, "method")))
                else:
                    await self._step(action, "method")
                if action.pause_after:
                    await self.clock.sleep(action.pause_after)
            if background:
                await asyncio.gather(*background)
        finally:
            for task in background:
                if not task.done():
                    task.cancel()
            if background:
                await asyncio.gather(*background, return_exceptions=True)

    async def _step(self, action: Action, phase: str) -> Any:
        record: dict[str, Any] = {
            "phase": phase,
            "name": action.name,
            "type": action.type,
            "status": "running",
            "start": _now_iso(),
            "at": self._offset(),
        }
        self.journal["run" if phase == "method" else "rollbacks"].append(record)
        self._write()
        started = self.clock.monotonic()
        try:
            async with asyncio.timeout(action.timeout):
                output = await self._do(action, register=phase == "method")
        except asyncio.CancelledError:
            record["status"] = "interrupted"
            raise
        except TimeoutError:
            record["status"] = "failed"
            record["error"] = f"timed out after {action.timeout:g} s"
            raise ActionFailedError(f"action {action.name!r} timed out") from None
        except Exception as exc:
            record["status"] = "failed"
            record["error"] = f"{type(exc).__name__}: {exc}"
            raise ActionFailedError(f"action {action.name!r} failed: {exc}") from exc
        finally:
            record["end"] = _now_iso()
            record["duration"] = round(self.clock.monotonic() - started, 6)
            self._write()
        record["status"] = "succeeded"
        record["output"] = output
        self._write()
        return output

    def _register(self, action: Action, automatic: Undo | None) -> None:
        """Register an action's undo (its explicit ``rollback:`` wins over ``automatic``)."""
        if action.rollback is False:
            return
        if isinstance(action.rollback, Action):
            explicit = action.rollback
            self._undo.append((explicit.name, lambda: self._do(explicit, register=False)))
            return
        if automatic is not None:
            self._undo.append(automatic)

    def _control(self, action: Action) -> ProxyControl:
        api = action.spec.get("api") or self.experiment.proxy_api
        if api:
            return HttpControl(str(api))
        if self.proxy_server is not None:
            return LocalControl(self.proxy_server)
        raise ValueError(
            "no fault proxy to talk to: set `proxy: http://HOST:PORT` at the top of the "
            "experiment or `api:` on the action"
        )

    async def _do(self, action: Action, *, register: bool) -> Any:
        spec = action.spec
        kind = action.type
        reg: Callable[[Undo | None], None] = (
            (lambda undo: self._register(action, undo)) if register else (lambda undo: None)
        )
        if kind == "sleep":
            reg(None)
            await self.clock.sleep(float(spec["seconds"]))
            return {"slept": spec["seconds"]}
        if kind == "toxic":
            control = self._control(action)
            proxy = str(spec["proxy"])
            name = toxic_from_json(spec["toxic"]).name
            reg(
                (f"remove toxic {name!r} from {proxy!r}", lambda: control.remove_toxic(proxy, name))
            )
            return await control.add_toxic(proxy, dict(spec["toxic"]))
        if kind == "proxy":
            control = self._control(action)
            proxy = str(spec["proxy"])
            was = await control.enabled(proxy)
            reg((f"set proxy {proxy!r} enabled={was}", lambda: control.set_enabled(proxy, was)))
            await control.set_enabled(proxy, bool(spec["enabled"]))
            return {"proxy": proxy, "enabled": spec["enabled"], "was": was}
        if kind == "chaos":
            return self._chaos(spec, reg)
        if kind == "kill":
            reg(None)
            return self._kill(spec)
        if kind == "process":
            return await self._process(action, reg)
        if kind == "load":
            reg(None)
            return await self._load(spec)
        # python
        reg(None)
        return await _call(spec["function"], dict(spec.get("arguments") or {}))

    def _chaos(self, spec: Any, reg: Callable[[Undo | None], None]) -> Any:
        if "env" in spec:
            name = str(spec["env"])
            previous = os.environ.get(name)

            async def restore_env() -> str:
                if previous is None:
                    os.environ.pop(name, None)
                    return f"unset {name}"
                os.environ[name] = previous
                return f"{name} restored"

            reg((f"restore ${name}", restore_env))
            os.environ[name] = str(spec.get("value", "1"))
            return {"env": name, "value": os.environ[name], "previous": previous}
        path = Path(spec["file"])
        existed = path.exists()

        async def remove_flag() -> str:
            if existed:
                return f"{path} existed before; left in place"
            path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, no real wait
            return f"removed {path}"

        reg((f"remove flag file {path}", remove_flag))
        if not existed:
            path.write_text(str(spec.get("value", "")), encoding="utf-8")
        return {"file": str(path), "created": not existed}

    def _own_pids(self) -> set[int]:
        """Processes this experiment started, and their descendants (from /proc)."""
        roots = {p.pid for p in self._processes.values() if p.returncode is None}
        if not roots:
            return set()
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found, stack = set(), list(roots)
        while stack:
            pid = stack.pop()
            if pid not in found:
                found.add(pid)
                stack.extend(children.get(pid, ()))
        return found

    def _kill(self, spec: Any) -> Any:
        sig = signal_number(str(spec.get("signal", "TERM")))
        if "pid" in spec:
            pids = [int(spec["pid"])]
        elif "pidfile" in spec:
            text = Path(spec["pidfile"]).read_text().strip()
            if not text.isdigit():
                raise ValueError(f"pidfile {spec['pidfile']} holds {text!r}, not a pid")
            pids = [int(text)]
        elif "process" in spec:
            process = self._processes.get(str(spec["process"]))
            if process is None:
                started = ", ".join(sorted(self._processes)) or "none"
                raise ValueError(
                    f"no process named {spec['process']!r} was started by this experiment "
                    f"(started: {started})"
                )
            pids = [process.pid]
        else:
            pattern = re.compile(str(spec["pattern"]))
            pids = []
            for pid in sorted(self._own_pids()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                if pattern.search(cmdline.decode(errors="replace")):
                    pids.append(pid)
            if not pids:
                raise ValueError(
                    f"no process started by this experiment matches {spec['pattern']!r} "
                    "(patterns only ever match processes the experiment started)"
                )
        for pid in pids:
            os.kill(pid, sig)
        return {"killed": pids, "signal": signal.Signals(sig).name}

    async def _process(self, action: Action, reg: Callable[[Undo | None], None]) -> Any:
        spec = action.spec
        env = dict(spec.get("env") or {}) or None
        if not spec.get("detach", False):
            reg(None)
            code, out = await self._run_command(spec["command"], action.timeout, env)
            wanted = spec.get("exit_code", 0)
            if code not in (wanted if isinstance(wanted, list) else [wanted]):
                raise ActionFailedError(f"exit code {code}, expected {wanted}: {out[-300:]}")
            return {"exit_code": code, "output": out}
        argv = _argv(spec["command"])
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,  # a Ctrl-C in the terminal reaches the runner only
        )
        self._processes[action.name] = process

        async def terminate() -> str:
            if process.returncode is not None:
                return f"already exited with {process.returncode}"
            process.terminate()
            try:
                async with asyncio.timeout(3.0):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
                return "killed"
            return "terminated"

        reg((f"stop process {action.name!r} (pid {process.pid})", terminate))
        if "wait_for" in spec:
            host, _, port = str(spec["wait_for"]).rpartition(":")
            while True:
                if process.returncode is not None:
                    raise ActionFailedError(f"the process exited with {process.returncode}")
                try:
                    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        return {"pid": process.pid, "command": argv}

    async def _load(self, spec: Any) -> Any:
        url = str(spec["url"])
        method = str(spec.get("method", "GET"))
        rate = float(spec.get("rate", 10))
        duration = float(spec.get("duration", 1.0))
        per_request = float(spec.get("request_timeout", 2.0))
        slots = asyncio.Semaphore(int(spec.get("concurrency", 50)))
        statuses: dict[str, int] = {}
        errors: dict[str, int] = {}
        latencies: list[float] = []

        async def one() -> None:
            try:
                response = await request(method, url, timeout=per_request)
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            else:
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
                latencies.append(response.elapsed)
            finally:
                slots.release()

        total = max(1, int(rate * duration))
        start = self.clock.monotonic()
        tasks: list[asyncio.Task[None]] = []
        try:
            for index in range(total):
                wait = start + index / rate - self.clock.monotonic()
                if wait > 0:
                    await self.clock.sleep(wait)
                await slots.acquire()
                tasks.append(asyncio.ensure_future(one()))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        latencies.sort()

        def pct(q: float) -> float | None:
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 6)

        ok = sum(n for code, n in statuses.items() if code.startswith(("2", "3")))
        return {
            "requests": total,
            "ok": ok,
            "failed": total - ok,
            "statuses": statuses,
            "errors": errors,
            "latency": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
        }

    # -- rollbacks -----------------------------------------------------------------------------

    async def _rollback(self, *, declared: bool) -> None:
        while self._undo:
            label, undo = self._undo.pop()
            record: dict[str, Any] = {
                "phase": "rollback",
                "name": label,
                "type": "undo",
                "start": _now_iso(),
                "at": self._offset(),
            }
            self.journal["rollbacks"].append(record)
            try:
                async with asyncio.timeout(30.0):
                    record["output"] = await undo()
                record["status"] = "succeeded"
            except Exception as exc:
                record["status"] = "failed"
                record["error"] = f"{type(exc).__name__}: {exc}"
            record["end"] = _now_iso()
            self._write()
        if declared:
            for action in self.experiment.rollbacks:
                with contextlib.suppress(ActionFailedError):
                    await self._step(action, "rollback")
        # Processes started by the experiment never outlive it.
        for process in self._processes.values():
            if process.returncode is None:
                process.kill()
                await process.wait()


async def run_experiment(
    experiment: Experiment,
    *,
    journal_path: str | os.PathLike[str] | None = None,
    proxy_server: Any = None,
    clock: Clock | None = None,
    handle_signals: bool = False,
) -> dict[str, Any]:
    """Run an experiment and return its journal.

    Args:
        experiment: from :func:`~buttress.chaos.experiment.load_experiment` or
            :func:`~buttress.chaos.experiment.parse_experiment`.
        journal_path: also write the journal there (rewritten after every step).
        proxy_server: a :class:`~buttress.chaos.ProxyServer` in this process, for proxy
            actions that name no ``api`` (and when the file sets no ``proxy``).
        clock: times sleeps, pauses, load pacing and the ``during`` interval.
        handle_signals: turn SIGINT and SIGTERM into an interruption (rollbacks run,
            status ``interrupted``) while running; main thread only (the CLI sets it).

    Returns:
        The journal: ``status`` (``completed``/``failed``/``aborted``/``interrupted``),
        ``deviated``, ``reason``, ``steady_state`` (``before``/``during``/``after``),
        ``run`` and ``rollbacks`` (one record per step: times, output, error).

    Raises:
        asyncio.CancelledError: the calling task was cancelled (after the rollbacks ran
            and the journal was written).

    Example::

        journal = await run_experiment(load_experiment("exp.yaml"), journal_path="j.json")
        assert journal["status"] == "completed" and not journal["deviated"]
    """
    runner = Runner(experiment, journal_path=journal_path, proxy_server=proxy_server, clock=clock)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.interrupt, f"received {sig.name}")
            installed.append(sig)
    try:
        return await runner.run()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
