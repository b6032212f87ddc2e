"""The outbox: ordered, persisted, retried task updates."""

import json

from twisted.internet import defer

from pyfarm.agent.logs import LogStream
from pyfarm.agent.master import (
    Conflict,
    NotFound,
    OutdatedMaster,
    Rejected,
    ServerError,
)
from pyfarm.agent.outbox import MAX_LOGS, SAVE_DELAY, Outbox
from pyfarm.agent.retry import RetryPolicy


def make(clock, master, tmp_path, **options):
    results = []
    options.setdefault("linger", 0.0)  # send at once unless said otherwise
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


def test_sends_in_order_once_resumed_in_one_request(clock, master,
                                                   tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "running"))
    outbox.put(update(2, "done"))
    assert sent(master) == []
    outbox.resume()
    assert sent(master) == [(1, "running"), (2, "done")]
    assert len(master.of("batch")) == 1
    assert len(outbox) == 0
    assert [result for result, _ in outbox.results] == ["ok", "ok"]


def test_a_final_state_replaces_a_running_report_not_sent_yet(
        clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "running"))
    outbox.put(update(2, "running"))
    outbox.put(update(1, "done"))
    assert outbox.items == [update(2, "running"), update(1, "done")]


def test_running_reports_linger_final_states_do_not(clock, master,
                                                    tmp_path):
    outbox = make(clock, master, tmp_path, linger=0.1)
    outbox.resume()
    outbox.put(update(1, "running"))
    assert sent(master) == []
    clock.advance(0.1)
    assert sent(master) == [(1, "running")]
    outbox.put(update(2, "running"))
    outbox.put(update(2, "done"))
    assert sent(master) == [(1, "running"), (2, "done")]


def test_urgent_updates_wait_the_coalescing_window(clock, master,
                                                   tmp_path):
    outbox = make(clock, master, tmp_path, coalesce=0.01)
    outbox.resume()
    outbox.put(update(1, "done"))
    clock.advance(0.005)
    outbox.put(update(2, "done"))
    assert sent(master) == []
    clock.advance(0.005)
    assert sent(master) == [(1, "done"), (2, "done")]
    assert len(master.of("batch")) == 1


def test_a_sync_goes_with_the_updates_and_gets_its_answer(clock, master,
                                                          tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.resume()
    master.sync_answers = [{"state": "running"}]
    outbox.put(update(1, "done"))  # sent at once
    outbox.put(update(2, "done"))
    answers = []
    outbox.request_sync(lambda: {"free_ram": 10, "running": [(2, 1)]}) \
        .addCallback(answers.append)
    assert answers[0]["state"] == "running"
    assert master.of("batch")[-1]["sync"] == {"free_ram": 10,
                                              "running": [(2, 1)]}
    assert sent(master) == [(1, "done"), (2, "done")]


def test_a_sync_cuts_a_backoff_short(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.resume()
    master.down = True
    outbox.put(update(1, "done"))
    clock.pump([0.75, 1.5, 3])
    assert outbox.failures == 4
    master.down = False
    outbox.request_sync(lambda: {"free_ram": 1, "running": []})
    assert sent(master)[-1] == (1, "done") and len(outbox) == 0


def test_an_update_not_applied_for_its_log_is_sent_again(clock, tmp_path):
    client = Holding()
    outbox = make(clock, client, tmp_path)
    outbox.resume()
    outbox.put(update(1, "done"))
    client.waiting.pop().callback(
        {"logs": [], "updates": [{"status": 424, "error": "log"}]})
    assert len(outbox) == 1 and outbox.results == []
    assert len(client.waiting) == 1  # sent again
    client.waiting.pop().callback(
        {"logs": [], "updates": [{"status": 200, "state": "done"}]})
    assert len(outbox) == 0
    assert [result for result, _ in outbox.results] == ["ok"]


def test_retries_with_backoff_and_keeps_the_order(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    master.down = True
    outbox.put(update(1, "done"))
    outbox.put(update(2, "failed", error="boom"))
    outbox.resume()
    assert sent(master) == [(1, "done"), (2, "failed")]
    clock.advance(0.75)
    clock.advance(1.5)
    assert sent(master) == [(1, "done"), (2, "failed")] * 3
    master.down = False
    clock.advance(2.9)
    assert len(master.of("update")) == 6
    clock.advance(0.1)
    assert sent(master)[6:] == [(1, "done"), (2, "failed")]
    assert master.of("update")[-1]["error"] == "boom"
    assert outbox.failures == 0


def test_every_change_is_saved(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "done"))
    clock.advance(SAVE_DELAY)
    saved = json.loads((tmp_path / "outbox.json").read_text())
    assert saved == [update(1, "done")]
    outbox.resume()
    assert json.loads((tmp_path / "outbox.json").read_text()) == []


def test_changes_close_together_and_of_one_answer_are_saved_once(
        clock, master, tmp_path, monkeypatch):
    outbox = make(clock, master, tmp_path)
    saves = []
    real = outbox.save

    def save():
        saves.append(json.loads(json.dumps(outbox.items)))
        real()

    monkeypatch.setattr(outbox, "save", save)
    for task in range(1, 6):
        outbox.put(update(task, "done"))
        clock.advance(SAVE_DELAY / 10)
    assert saves == []
    clock.advance(SAVE_DELAY)
    assert len(saves) == 1 and len(saves[0]) == 5
    outbox.resume()  # one request, one answer for the five
    assert saves[1:] == [[]]


def test_what_a_request_carries_is_saved_before_it_leaves(
        clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.resume()
    master.down = True
    outbox.put(update(1, "done"))  # sent at once, in this very turn
    assert master.of("update")
    saved = json.loads((tmp_path / "outbox.json").read_text())
    assert saved == [update(1, "done")]


def test_pausing_saves_what_waits(clock, master, tmp_path):
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "failed"))
    outbox.pause()  # the agent stops before the turn ends
    saved = json.loads((tmp_path / "outbox.json").read_text())
    assert saved == [update(1, "failed")]


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
    assert outbox.items == [update(1, "running", progress=0.4)]
    outbox.put(update(1, "done"))
    outbox.put(update(1, "running", progress=0.9))
    assert outbox.items == [update(1, "done")]


class Holding:
    """A master that answers nothing until told."""

    def __init__(self):
        self.waiting = []

    def batch(self, *args, **kwargs):
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
    client.waiting.pop().callback(
        {"logs": [], "updates": [{"status": 200, "state": "running"}]})
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
    batch = master.batch
    refusals = [Rejected("bad token", 401)]

    def refusing(*args, **kwargs):
        if refusals:
            master.calls.append(("update", {}))
            return defer.fail(refusals.pop())
        return batch(*args, **kwargs)

    master.batch = refusing
    outbox = make(clock, master, tmp_path)
    outbox.put(update(1, "done"))
    outbox.resume()
    clock.advance(0.75)
    assert [result for result, _ in outbox.results] == ["ok"]
    assert len(master.of("update")) == 2


def test_a_gate_holds_the_head_back(clock, master, tmp_path):
    is_open = []
    outbox = make(clock, master, tmp_path,
                  gate=lambda item, sizes: bool(is_open))
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


def streams_for(clock, master, outbox, count):
    """``count`` log streams with output waiting, delivered by ``outbox``."""
    streams = [LogStream(clock, master, "agent-1", f"a{index}",
                         RetryPolicy(), lambda: 0.5, courier=outbox)
               for index in range(count)]
    for stream in streams:
        stream.write(b"line\n")
    return streams


def log_gate(streams):
    def gate(update, sizes):
        by_id = {stream.assignment_id: stream for stream in streams}
        wanted = update.get("log")
        return not wanted or by_id[wanted[0]].flushed(wanted[1]) or \
            sizes.get(wanted[0], 0) >= wanted[1]
    return gate


def test_at_most_max_logs_chunks_go_those_gating_updates_first(
        clock, master, tmp_path):
    streams = []
    outbox = make(clock, master, tmp_path, gate=log_gate(streams),
                  logs=lambda: streams)
    streams += streams_for(clock, master, outbox, MAX_LOGS + 50)
    # Updates waiting for the last logs (not the first to be listed).
    gated = streams[-(MAX_LOGS + 1):]
    for index, stream in enumerate(gated):
        outbox.put(update(index + 1, "done",
                          log=[stream.assignment_id, stream.written]))
    outbox.resume()
    first = master.of("batch")[0]
    assert len(first["logs"]) == MAX_LOGS
    assert [chunk["assignment"] for chunk in first["logs"]] == [
        stream.assignment_id for stream in gated[:MAX_LOGS]]
    # The update whose log did not fit waits for the next request.
    assert [item["task"] for item in first["updates"]] == list(
        range(1, MAX_LOGS + 1))
    clock.advance(1)
    assert len(outbox) == 0
    assert all(len(batch["logs"]) <= MAX_LOGS
               for batch in master.of("batch"))
    assert all(stream.acked == stream.written for stream in streams)
    assert outbox.results[-1][1]["task"] == MAX_LOGS + 1


def refusing_whole(master, refuse):
    """Make ``master.batch`` answer 400 for the whole request whenever
    ``refuse(logs, updates, sync)``."""
    batch = master.batch

    def maybe(agent_id, logs, updates, sync=None):
        if refuse(logs, updates, sync):
            master.calls.append(("refused", {"logs": logs,
                                             "updates": updates}))
            return defer.fail(Rejected("bad request", 400))
        return batch(agent_id, logs, updates, sync)
    master.batch = maybe


def test_a_request_refused_as_a_whole_is_split_to_find_the_bad_item(
        clock, master, tmp_path):
    refusing_whole(master, lambda logs, updates, sync: any(
        item["task"] == 3 for item in updates))
    streams = []
    outbox = make(clock, master, tmp_path, logs=lambda: streams)
    streams += streams_for(clock, master, outbox, 2)
    for task in range(1, 6):
        outbox.put(update(task, "done"))
    answers = []
    outbox.request_sync(lambda: {"free_ram": 1, "running": []}) \
        .addBoth(answers.append)
    outbox.resume()
    clock.advance(0)
    # Only the update the master refuses on its own is dropped.
    assert sorted((item["task"], result)
                  for result, item in outbox.results) == [
        (1, "ok"), (2, "ok"), (3, "rejected"), (4, "ok"), (5, "ok")]
    assert len(outbox) == 0
    assert all(not stream.gave_up and stream.acked == stream.written
               for stream in streams)
    assert answers and isinstance(answers[0], dict)
    [alone] = [call for call in master.of("refused")
               if len(call["logs"]) + len(call["updates"]) == 1]
    assert alone["updates"][0]["task"] == 3


def test_a_request_too_large_is_sent_again_in_halves(clock, master,
                                                    tmp_path):
    refusing_whole(master, lambda logs, updates, sync:
                   len(logs) + len(updates) > 3)
    streams = []
    outbox = make(clock, master, tmp_path, logs=lambda: streams)
    streams += streams_for(clock, master, outbox, 6)
    for task in range(1, 7):
        outbox.put(update(task, "done"))
    outbox.resume()
    clock.advance(0)
    assert [result for result, _ in outbox.results] == ["ok"] * 6
    assert all(not stream.gave_up and stream.acked == stream.written
               for stream in streams)


def test_an_old_master_loses_nothing_and_is_reported_once(
        clock, master, tmp_path, caplog):
    batch = master.batch
    old = [True]

    def old_master(agent_id, logs, updates, sync=None):
        if old[0]:
            master.calls.append(("old", {}))
            return defer.fail(OutdatedMaster(
                "POST /updates: 404 no such API endpoint", 404))
        return batch(agent_id, logs, updates, sync)

    master.batch = old_master
    streams = []
    outbox = make(clock, master, tmp_path, logs=lambda: streams)
    streams += streams_for(clock, master, outbox, 1)
    outbox.put(update(1, "done"))
    outbox.resume()
    clock.pump([1] * 10)
    assert len(master.of("old")) > 2
    assert outbox.results == [] and len(outbox) == 1
    assert not streams[0].gave_up
    assert sum("older than this agent" in record.getMessage()
               for record in caplog.records
               if record.levelname == "ERROR") == 1
    old[0] = False  # upgraded
    clock.pump([10] * 10)
    assert [result for result, _ in outbox.results] == ["ok"]
    assert streams[0].acked == streams[0].written


def test_a_pending_sync_does_not_wait_out_the_backoff(clock, tmp_path):
    client = Holding()
    outbox = make(clock, client, tmp_path)
    outbox.resume()
    outbox.put(update(1, "done"))
    answers = []
    outbox.request_sync(lambda: {"free_ram": 1, "running": []}) \
        .addCallback(answers.append)  # while the update is in flight
    outbox.failures = 10  # a long backoff
    client.waiting.pop().errback(ServerError("boom", 500))
    # The sync goes at once, without the update that just failed.
    assert len(client.waiting) == 1
    client.waiting.pop().callback({"logs": [], "updates": [],
                                   "sync": {"state": "online"}})
    assert answers == [{"state": "online"}]
    # It got through: the update goes at once.
    assert len(client.waiting) == 1
    client.waiting.pop().callback(
        {"logs": [], "updates": [{"status": 200, "state": "done"}]})
    assert [result for result, _ in outbox.results] == ["ok"]


class Recording(Holding):
    def batch(self, *args, **kwargs):
        self.args = args
        return super().batch(*args, **kwargs)


def test_a_sync_goes_without_the_updates_waiting_out_a_backoff(
        clock, tmp_path):
    client = Recording()
    outbox = make(clock, client, tmp_path)
    outbox.resume()
    outbox.put(update(1, "done"))
    client.waiting.pop().errback(ServerError("boom", 500))
    outbox.request_sync(lambda: {"free_ram": 1, "running": []})
    assert client.args[2] == [] and client.args[3] is not None


def test_a_bug_handling_the_answer_fails_the_sync_and_retries_the_logs(
        clock, master, tmp_path):
    client = Holding()
    streams = []
    outbox = make(clock, client, tmp_path, logs=lambda: streams)
    streams += streams_for(clock, master, outbox, 1)
    failures = []
    outbox.request_sync(lambda: {"free_ram": 1, "running": []}) \
        .addErrback(failures.append)
    outbox.resume()
    client.waiting.pop().callback("not a dict")  # _answered breaks
    assert len(failures) == 1
    assert not streams[0].gave_up and not streams[0].sending()
    outbox.client = master
    clock.pump([1] * 5)
    assert streams[0].acked == streams[0].written


def test_an_update_answered_without_a_status_is_kept(clock, tmp_path):
    client = Holding()
    outbox = make(clock, client, tmp_path)
    outbox.resume()
    outbox.put(update(1, "done"))
    client.waiting.pop().callback({"logs": [], "updates": [{}]})
    assert outbox.results == [] and len(outbox) == 1
    assert client.waiting == []  # after a backoff
    clock.advance(1)
    client.waiting.pop().callback(
        {"logs": [], "updates": [{"status": 200, "state": "done"}]})
    assert [result for result, _ in outbox.results] == ["ok"]
