"""The studio's training scheduler (places, queue, core shares, the time limit) and training
in a process of its own (``ecnf.background``)."""

import threading
import time

import pytest

from ecnf import MLPConfig, TrainConfig
from ecnf.background import context, memory_mb, train_in_process
from studio.scheduler import (
    Scheduler,
    SchedulerConfig,
    ServerBusy,
    Ticket,
    config_from_env,
    default_places,
)


def test_places_then_queue_then_busy_and_the_queue_moves_up():
    s = Scheduler(SchedulerConfig(max_active=2, max_queued=1, cores=5))
    a, b, c, d = (Ticket(label=x, eta=lambda: 42.0) for x in "abcd")
    for t in (a, b, c):
        s.enter(t)
    assert [a.state, b.state, c.state] == ["active", "active", "queued"]
    assert s.position(c) == 1 and s.position(a) is None
    with pytest.raises(ServerBusy, match=r"2 runs are training \(at most 2 at a time\).*42 s"):
        s.enter(d)
    assert d.state == "new" and s.status()["queued"] == 1
    s.leave(a)
    assert c.state == "active" and s.status() | {"labels": None} == {
        "active": 2, "queued": 0, "max_active": 2, "max_queued": 1, "soonest_end_s": 42.0,
        "labels": None, "threads": [2, 2],
    }  # fmt: skip
    assert s.wait_admitted(c)


def test_the_cores_are_divided_evenly_and_each_run_is_told_its_share():
    s = Scheduler(SchedulerConfig(max_active=3, cores=5))
    told = {x: [] for x in "abc"}
    tickets = {x: Ticket(x, on_share=told[x].append) for x in "abc"}
    s.enter(tickets["a"])
    assert told["a"] == [4]  # alone: every core
    s.enter(tickets["b"])
    s.enter(tickets["c"])
    assert told == {"a": [4, 2, 1], "b": [2, 1], "c": [1]}  # 4 // 3 = 1, never 0
    s.leave(tickets["a"])
    s.leave(tickets["b"])
    assert told["c"] == [1, 2, 4] and s.status()["threads"] == [4]


def test_a_run_stopped_while_queued_leaves_the_queue():
    s = Scheduler(SchedulerConfig(max_active=1, max_queued=2))
    a, b = Ticket("a"), Ticket("b")
    s.enter(a)
    s.enter(b)
    result = []
    waiter = threading.Thread(target=lambda: result.append(s.wait_admitted(b, poll_s=0.01)))
    waiter.start()
    b.stop_event.set()
    waiter.join(timeout=5)
    assert result == [False] and b.state == "done" and s.status()["queued"] == 0


def test_a_long_run_gives_its_place_up_only_when_someone_waits():
    s = Scheduler(SchedulerConfig(max_active=1, max_queued=1, max_run_s=0.05))
    long, waiting = Ticket("long"), Ticket("waiting")
    s.enter(long)
    time.sleep(0.1)
    assert not s.overdue(long) and not long.stop_event.is_set()  # nobody waits
    s.enter(waiting)
    assert s.overdue(long) and long.preempted and long.stop_event.is_set()
    s.leave(long)
    assert waiting.state == "active" and not s.overdue(waiting)  # it has only just begun
    long.stop_event.clear()
    s.enter(long)  # Resume: back in the queue
    assert long.state == "queued" and not long.preempted


def test_limits_from_the_environment():
    default = config_from_env({})
    assert (default.max_queued, default.max_run_s) == (6, 600.0)
    assert default.cores >= 1 and default.max_active == default_places(default.cores)
    c = config_from_env({"ECNF_STUDIO_MAX_RUNS": "3", "ECNF_STUDIO_MAX_RUN_S": "0"})
    assert c.max_active == 3 and c.max_run_s is None
    with pytest.raises(ValueError, match="ECNF_STUDIO_MAX_QUEUED='many'"):
        config_from_env({"ECNF_STUDIO_MAX_QUEUED": "many"})
    with pytest.raises(ValueError, match="max_active and cores must be >= 1"):
        config_from_env({"ECNF_STUDIO_MAX_RUNS": "0"})


def test_by_default_each_admitted_run_has_a_core_of_its_own():
    for cores in (1, 2, 3, 5, 64):
        config = SchedulerConfig(cores=cores)
        s = Scheduler(config)
        tickets = [Ticket(str(i)) for i in range(config.max_active + 1)]
        for t in tickets:
            s.enter(t)
        admitted = [t for t in tickets if t.state == "active"]
        assert len(admitted) == config.max_active >= 1 and tickets[-1].state == "queued"
        # every admitted run's threads fit in the cores the pages leave, one core at least
        assert sum(t.threads for t in admitted) <= max(1, cores - config.reserve)
    assert SchedulerConfig(cores=2).max_active == 1  # two cores: one trains, the rest queue
    assert SchedulerConfig(cores=64).max_active == 4  # MAX_PLACES
    assert SchedulerConfig(cores=2, max_active=3).max_active == 3  # asked for explicitly


def tiny(tmp_path, iterations=60, **kw) -> TrainConfig:
    return TrainConfig(data="moons", model=MLPConfig(width=16, depth=1), iterations=iterations,
                       batch_size=32, log_every=20, sample_every=30, out_dir=str(tmp_path),
                       **kw)  # fmt: skip


def test_training_in_a_process_reports_everything_fit_reports(tmp_path):
    events = []
    ctx = context()
    train_in_process(
        tiny(tmp_path), resume=False, command="test", stop=ctx.Event(),
        threads=ctx.Value("i", 1), on_event=events.append,
    )  # fmt: skip
    kinds = [e[0] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert [e[1]["step"] for e in events if e[0] == "log"] == [20, 40, 60]
    previews = [e for e in events if e[0] == "preview"]
    assert [e[1] for e in previews] == [30, 60] and previews[0][2].shape[1] == 2
    assert events[-1][1] == "completed" and (tmp_path / "checkpoint.safetensors").exists()
    assert events[-1][2] == str(tmp_path / "checkpoint.safetensors")


def test_a_stopped_process_saves_and_resumes_and_an_error_comes_back(tmp_path):
    ctx = context()
    stop, threads, events = ctx.Event(), ctx.Value("i", 1), []
    seen_memory = []

    def on_event(event):
        events.append(event)
        if event[0] == "log":
            stop.set()  # stop at the first record

    train_in_process(
        tiny(tmp_path, iterations=100_000), resume=False, command="test", stop=stop,
        threads=threads, on_event=on_event, on_poll=lambda pid: seen_memory.append(memory_mb(pid)),
    )  # fmt: skip
    assert events[-1][:2] == ("done", "stopped")
    stopped_at = [e for e in events if e[0] == "log"][-1][1]["step"]
    stop.clear()
    resumed = []
    train_in_process(
        tiny(tmp_path, iterations=stopped_at + 20), resume=True, command="test", stop=stop,
        threads=threads, on_event=resumed.append,
    )  # fmt: skip
    assert resumed[0][0] == "start" and resumed[0][1] >= stopped_at  # where it saved, not 0
    assert resumed[-1][:2] == ("done", "completed")
    assert all(m is None or m > 10 for m in seen_memory)  # MiB of a process with torch
    failed = []  # nothing to resume in an empty folder: fit's own error comes back
    train_in_process(
        tiny(tmp_path / "empty", iterations=10), resume=True, command="test", stop=stop,
        threads=threads, on_event=failed.append,
    )  # fmt: skip
    assert failed[-1][0] == "error" and isinstance(failed[-1][1], (OSError, ValueError))
    assert "empty" in str(failed[-1][1])
