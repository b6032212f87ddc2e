"""The outbox: ordered, persisted, retried task updates."""

import json

from twisted.internet import defer

from pyfarm.agent.master import Conflict, NotFound, Rejected
from pyfarm.agent.outbox import Outbox
from pyfarm.agent.retry import RetryPolicy


def make(clock, master, tmp_path, **options):
    results = []
    outbox = Outbox(clock, master, "agent-1", tmp_path / "outbox.json",
                    RetryPolicy(), lambda: 0.5,
                    on_result=lambda *args: results.append(args[:2]),
                    **options)
    outbox.results = results
    return outbox


def update(task, state, attempt=1, **extra):
    return {"task": task, "attempt": attempt, "state": state, **extra}


def sent(master):
    return [(u["task"], u["state"]) for u in master.of("update")]


def test_sends_in_order_once_resumed(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "running"))
    outbox.put(update(1, "done"))
    assert sent(master) == []
    outbox.resume()
    assert sent(master) == [(1, "running"), (1, "done")]
    assert len(outbox) == 0
    assert [result for result, _ in outbox.results] == ["ok", "ok"]


def test_retries_with_backoff_and_keeps_the_order(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.resume()
    master.down = True
    outbox.put(update(1, "done"))
    outbox.put(update(2, "failed", error="boom"))
    assert sent(master) == [(1, "done")]
    clock.advance(0.75)
    clock.advance(1.5)
    assert sent(master) == [(1, "done")] * 3
    master.down = False
    clock.advance(2.9)
    assert len(master.of("update")) == 3
    clock.advance(0.1)
    assert sent(master)[3:] == [(1, "done"), (2, "failed")]
    assert master.of("update")[-1]["error"] == "boom"
    assert outbox.failures == 0


def test_every_change_is_saved(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "done"))
    saved = json.loads((tmp_path / "outbox.json").read_text())
    assert saved == [update(1, "done")]
    outbox.resume()
    assert json.loads((tmp_path / "outbox.json").read_text()) == []


def test_load_keeps_final_updates_only_and_forgets_log_gates(
        clock, master, tmp_path):
    (tmp_path / "outbox.json").write_text(json.dumps([
        update(1, "running"), update(1, "done", log=["a", 10]),
        update(2, "failed", error="x")]))
    outbox = make(clock, master, tmp_path)
    assert outbox.load() == 2
    assert outbox.items == [update(1, "done"), update(2, "failed",
                                                      error="x")]
    assert outbox.final_pairs() == {(1, 1), (2, 1)}


def test_a_corrupt_file_is_moved_aside(clock, master, tmp_path):
    (tmp_path / "outbox.json").write_text("{not json")
    outbox = make(clock, master, tmp_path)
    assert outbox.load() == 0
    assert (tmp_path / "outbox.json.bad").read_text() == "{not json"


def test_progress_merges_into_a_queued_running_update(clock, master,
                                                      tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "running"))
    outbox.put(update(1, "running", progress=0.2))
    outbox.put(update(1, "running", progress=0.4))
    outbox.put(update(1, "done"))
    outbox.put(update(1, "running", progress=0.9))
    assert outbox.items == [update(1, "running", progress=0.4),
                            update(1, "done")]


class Holding:
    """A master that answers nothing until told."""

    def __init__(self):
        self.waiting = []

    def update_task(self, *args, **kwargs):
        self.waiting.append(defer.Deferred())
        return self.waiting[-1]


def test_progress_does_not_merge_into_the_update_in_flight(clock, tmp_path):
    client = Holding()
    outbox = make(clock, client, tmp_path)
    outbox.resume()
    outbox.put(update(1, "running"))
    outbox.put(update(1, "running", progress=0.5))
    assert outbox.items == [update(1, "running"),
                            update(1, "running", progress=0.5)]
    client.waiting.pop().callback({})
    assert len(client.waiting) == 1
    assert outbox.items == [update(1, "running", progress=0.5)]


def test_progress_merges_into_a_head_waiting_to_be_retried(clock, master,
                                                           tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.resume()
    master.down = True
    outbox.put(update(1, "running"))
    outbox.put(update(1, "running", progress=0.5))
    assert outbox.items == [update(1, "running", progress=0.5)]


def test_409_404_and_400_leave_the_outbox(clock, master, tmp_path):
    master.update_errors[(1, 1)] = Conflict("stale", 409)
    master.update_errors[(2, 1)] = NotFound("no task", 404)
    master.update_errors[(3, 1)] = Rejected("bad field", 400)
    outbox = make(clock, master, tmp_path)
    for task in (1, 2, 3, 4):
        outbox.put(update(task, "done"))
    outbox.resume()
    assert [result for result, _ in outbox.results] == [
        "conflict", "gone", "rejected", "ok"]
    assert len(outbox) == 0


def test_401_is_retried(clock, master, tmp_path):
    master.update_errors[(1, 1)] = Rejected("bad token", 401)
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "done"))
    outbox.resume()
    del master.update_errors[(1, 1)]
    clock.advance(0.75)
    assert [result for result, _ in outbox.results] == ["ok"]
    assert len(master.of("update")) == 2


def test_a_gate_holds_the_head_back(clock, master, tmp_path):
    is_open = []
    outbox = make(clock, master, tmp_path, gate=lambda item: bool(is_open))
    outbox.put(update(1, "done"))
    outbox.resume()
    assert sent(master) == []
    is_open.append(True)
    outbox.kick()
    assert sent(master) == [(1, "done")]


def test_drained_fires_when_empty(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "done"))
    fired = []
    outbox.drained().addCallback(fired.append)
    assert fired == []
    outbox.resume()
    assert fired == [None]


def test_pause_stops_retries(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    master.down = True
    outbox.put(update(1, "done"))
    outbox.resume()
    outbox.pause()
    clock.advance(100)
    assert len(master.of("update")) == 1


def test_an_error_in_on_result_does_not_stop_deliveries(clock, master,
                                                        tmp_path):
    results = []

    def on_result(result, item, detail):
        results.append(item["task"])
        if len(results) == 1:
            raise RuntimeError("a bug in on_result")

    outbox = Outbox(clock, master, "agent-1", tmp_path / "outbox.json",
                    RetryPolicy(), lambda: 0.5, on_result=on_result)
    outbox.put(update(1, "done"))
    outbox.put(update(2, "done"))
    fired = []
    outbox.drained().addCallback(fired.append)
    outbox.resume()
    assert sent(master) == [(1, "done"), (2, "done")]
    assert results == [1, 2]
    assert fired == [None]
    assert len(outbox) == 0


def test_running_and_progress_reports_cost_no_disk_write(
        clock, master, tmp_path, monkeypatch):
    # Only final updates are read back after a restart; saving the others
    # would fsync on the reactor's thread for nothing.
    syncs = []
    monkeypatch.setattr("pyfarm.agent.outbox.os.fsync", syncs.append)
    outbox = make(clock, master, tmp_path)
    outbox.resume()
    master.down = True
    outbox.put(update(1, "running"))
    outbox.put(update(1, "running", progress=0.5))
    master.down = False
    clock.advance(0.75)
    assert sent(master)[-1] == (1, "running")
    assert syncs == []
    assert not (tmp_path / "outbox.json").exists()
    master.down = True
    outbox.put(update(1, "done"))
    assert len(syncs) == 1
    assert json.loads((tmp_path / "outbox.json").read_text()) == [
        update(1, "done")]
