"""Running scenarios: build the lab (`lab run`'s way), run the steps in order, tear down in a
finally (Ctrl-C too), or keep the lab at the first failing step for a human to look.

`execute` is the step loop alone (retry windows, `expect: fail`, skipping after a failure), with
the effects passed in, so it is unit-tested without a lab. `run_all` adds the labs: one per
scenario, or one per topology file for scenarios run --shared, reset between them.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from lab import host
from lab.errors import LabError
from lab.scenario.model import Scenario, Step
from lab.node import underlay
from lab.scenario.steps import EFFECTS, Context, Effect, Failed

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class Result:
    step: Step
    status: str                 # passed | failed | skipped
    reason: str = ""            # why it failed, or (expect: fail) the failure that made it pass
    detail: str = ""            # what a passing step did or saw
    seconds: float = 0.0
    attempts: int = 0


@dataclass(frozen=True)
class Run:
    scenario: Scenario
    lab: str
    results: tuple[Result, ...]
    seconds: float
    setup_error: str = ""       # the lab could not be built: no step ran
    kept: bool = False          # --keep: the lab was left running at the first failing step

    @property
    def passed(self) -> bool:
        return not self.setup_error and all(r.status == PASSED for r in self.results)


def attempt(step: Step, ctx: Context, effects: Mapping[str, Effect]) -> tuple[bool, str, str]:
    """One try of a step: (passed, reason, detail), `expect: fail` applied. The step's own failure
    (Failed, or the lab's LabError) is what `expect: fail` wants; any other exception is a bug in
    the lab and fails the step whatever it expects."""
    try:
        detail = effects[step.kind](ctx, step.spec)
    except (Failed, LabError) as e:
        reason = str(e).strip() or type(e).__name__
        return (True, "", f"failed as expected: {reason}") if step.expect_fail else (False, reason, "")
    except Exception as e:  # noqa: BLE001 - reported, not raised: a scenario never ends in a traceback
        return False, f"internal error ({type(e).__name__}: {e}); please report it", ""
    if step.expect_fail:
        return False, f"expected to fail, but it passed{f': {detail}' if detail else ''}", ""
    return True, "", detail


def run_step(step: Step, ctx: Context, effects: Mapping[str, Effect],
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Result:
    """A step, tried again within its wait window until it passes (no window: once)."""
    t0 = clock()
    tries = 0
    while True:
        tries += 1
        ok, reason, detail = attempt(step, ctx, effects)
        left = step.wait.timeout - (clock() - t0) if step.wait else 0.0
        if ok or left <= 0 or reason.startswith("internal error"):
            break
        sleep(min(step.wait.interval, left))
    seconds = clock() - t0
    if not ok and step.wait:
        reason += f" (still after {tries} tries in {seconds:.1f}s)"
    return Result(step, PASSED if ok else FAILED, reason, detail, seconds, tries)


def execute(scenario: Scenario, ctx: Context, effects: Mapping[str, Effect] = EFFECTS, stop_at_failure: bool = False,
            report: Callable[[Result], None] = lambda r: None, **timing) -> list[Result]:
    """Every step in order; after the first failure the rest are skipped unless the scenario says
    `continue: true` (and stop_at_failure, for --keep, is not set)."""
    results: list[Result] = []
    failed = False
    for step in scenario.steps:
        if failed and (stop_at_failure or not scenario.keep_going):
            result = Result(step, SKIPPED, "an earlier step failed")
        else:
            result = run_step(step, ctx, effects, **timing)
            failed = failed or result.status == FAILED
        results.append(result)
        report(result)
    return results


# --- labs ---

@dataclass
class Hooks:
    """What the CLI shows while labs are built and scenarios run."""

    progress: Callable[[str, float], None] = lambda name, seconds: None
    step: Callable[[Scenario, Result], None] = lambda scenario, result: None
    note: Callable[[str], None] = lambda text: None
    starting: Callable[[Scenario, str], None] = lambda scenario, lab: None
    effects: Mapping[str, Effect] = field(default_factory=lambda: EFFECTS)


def groups(scenarios: Sequence[Scenario], shared: bool) -> list[list[Scenario]]:
    """One lab per scenario; with `shared`, one per topology file (in the order first named)."""
    if not shared:
        return [[s] for s in scenarios]
    by_key: dict[object, list[Scenario]] = {}
    for i, s in enumerate(scenarios):
        by_key.setdefault(s.shares_with or i, []).append(s)
    return list(by_key.values())


def run_all(scenarios: Sequence[Scenario], shared: bool = False, keep: bool = False,
            hooks: Optional[Hooks] = None) -> list[Run]:
    hooks = hooks or Hooks()
    runs: list[Run] = []
    for group in groups(scenarios, shared):
        runs += _on_one_lab(group, keep, hooks)
        if runs[-1].kept:
            break
    done = {id(r.scenario) for r in runs}
    return runs + [_not_run(s, "an earlier scenario failed and its lab was kept (--keep)") for s in scenarios
                   if id(s) not in done]


def _not_run(scenario: Scenario, why: str, lab: str = "") -> Run:
    return Run(scenario, lab or scenario.lab, tuple(Result(s, SKIPPED, why) for s in scenario.steps), 0.0, setup_error=why)


def _on_one_lab(group: list[Scenario], keep: bool, hooks: Hooks) -> list[Run]:
    from lab.runtime import lifecycle
    from lab.topology.load import reporting

    topology, scratch = _topology_file(group[0])
    runs: list[Run] = []
    built = kept = False
    try:
        try:
            with reporting(report=lambda warnings: None):  # validation printed them already
                lab = lifecycle.up(topology, progress=hooks.progress).lab
        except LabError as e:
            return [_not_run(s, f"lab up failed: {e}") for s in group]
        built = True
        for i, scenario in enumerate(group):
            if i:
                try:
                    _reset(lab, topology, group[i - 1], hooks)
                except LabError as e:
                    return runs + [_not_run(s, f"resetting lab {lab} failed: {e}", lab) for s in group[i:]]
            hooks.starting(scenario, lab)
            t0 = time.monotonic()
            results = execute(scenario, Context(lab), hooks.effects, stop_at_failure=keep,
                              report=lambda r, s=scenario: hooks.step(s, r))
            kept = keep and any(r.status == FAILED for r in results)
            runs.append(Run(scenario, lab, tuple(results), time.monotonic() - t0, kept=kept))
            if kept:
                hooks.note(f"lab {lab} kept running at the failing step (--keep): try `lab get pods -l {lab} -o wide`, "
                           f"`lab exec -l {lab} POD -- CMD`, `lab check -l {lab}`; `lab down {lab}` removes it")
                return runs + [_not_run(s, "an earlier scenario failed and its lab was kept (--keep)", lab)
                               for s in group[i + 1:]]
        return runs
    finally:
        if built and not kept:
            _teardown(lab, hooks)
        if scratch and not kept:
            host.remove(os.path.dirname(topology))  # the scratch folder and its topology


def _teardown(lab: str, hooks: Hooks) -> None:
    """lab down, which a second Ctrl-C must not cut short."""
    from lab.host import record
    from lab.runtime import lifecycle

    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        t0 = time.monotonic()
        errors = lifecycle.teardown(record.load(lab))
        for e in errors:
            hooks.note(f"error: {e}")
        hooks.note(f"Lab {lab} deleted ({time.monotonic() - t0:.2f}s)")
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _topology_file(scenario: Scenario) -> tuple[str, bool]:
    """The topology's file; an inline one written to a scratch file (True: remove it after)."""
    if scenario.topology:
        return scenario.topology, False
    import yaml

    folder = tempfile.mkdtemp(prefix="lab-scenario-")
    path = Path(folder) / f"{scenario.lab}.yaml"
    host.write_file(path, yaml.safe_dump(scenario.inline, sort_keys=False))
    return str(path), True


def _reset(lab: str, topology: str, previous: Scenario, hooks: Hooks) -> None:
    """Between scenarios on a shared lab: every fault cleared, stopped nodes started, and the
    topology's objects restored (`lab apply TOPOLOGY`) if the previous scenario applied or deleted any."""
    from lab.host import record
    from lab.runtime import nodes
    from lab.runtime.apply import apply

    t0 = time.monotonic()
    if any(s.kind in ("fault", "clear") for s in previous.steps):
        from lab.runtime import faults

        faults.clear(lab)
    for name in underlay.stopped(record.load(lab)):
        nodes.set_state(lab, name, up=True)
    if any(s.kind in ("apply", "delete") for s in previous.steps):
        apply(topology, lab=lab)
    hooks.note(f"lab {lab} reset for the next scenario ({time.monotonic() - t0:.2f}s)")
