"""The background jobs' board: each job loops at its interval, a failing pass is recorded and
the loop goes on, and the stop event ends every loop."""

from __future__ import annotations

import asyncio

import pytest

from adapters.jobs import Job, JobBoard, UnknownJobError


def test_a_failing_pass_is_recorded_and_the_loop_goes_on_until_stopped() -> None:
    calls: list[int] = []

    async def flaky() -> bool:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("database away")
        return False

    board = JobBoard([Job("flaky", "fails on its second pass", 0.01, flaky, lambda: 7)])

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(board.run(stop))
        while len(calls) < 4:
            await asyncio.sleep(0.005)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(run())
    (state,) = board.snapshot()
    assert state["runs"] >= 4 and state["failures"] == 1
    assert state["last_error"] == "RuntimeError: database away"
    assert state["backlog"] == 7 and state["last_run"] is not None


def test_a_busy_job_runs_again_at_once_an_idle_one_waits_its_interval() -> None:
    passes = {"busy": 0, "idle": 0}

    def counting(name: str, more: bool):  # type: ignore[no-untyped-def]
        async def run_once() -> bool:
            passes[name] += 1
            return more
        return run_once

    board = JobBoard([Job("busy", "always more", 10, counting("busy", True)),
                      Job("idle", "nothing waits", 10, counting("idle", False))])

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(board.run(stop))
        while passes["busy"] < 50:
            await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(run())
    assert passes["idle"] == 1


def test_a_job_is_named_once_and_an_unknown_name_is_refused() -> None:
    async def nothing() -> bool:
        return False

    with pytest.raises(ValueError):
        JobBoard([Job("a", "", 1, nothing), Job("a", "", 1, nothing)])
    with pytest.raises(UnknownJobError):
        asyncio.run(JobBoard([]).run_once("compress"))
    assert JobBoard([Job("a", "", 1, nothing)]).backlog("a") is None
