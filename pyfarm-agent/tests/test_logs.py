"""Log streaming: offsets, chunks, one request in flight, retries."""

from twisted.internet import defer
from twisted.python.failure import Failure

from pyfarm.agent.logs import LogStream, cut
from pyfarm.agent.master import Conflict, NotFound
from pyfarm.agent.retry import RetryPolicy


class Gone:
    """A master that does not know the log."""

    def send_log(self, *args):
        return defer.fail(NotFound("no such assignment", 404))


def make(clock, master, **options):
    return LogStream(clock, master, "agent-1", "a1", RetryPolicy(),
                     lambda: 0.5, **options)


def chunks(master):
    return [(call["offset"], call["data"]) for call in master.of("log")]


def test_flushes_after_a_second(clock, master):
    log = make(clock, master)
    log.write(b"hello\n")
    clock.advance(0.99)
    assert chunks(master) == []
    clock.advance(0.01)
    assert chunks(master) == [(0, "hello\n")]
    log.write(b"world\n")
    clock.advance(1)
    assert chunks(master) == [(0, "hello\n"), (6, "world\n")]
    assert master.log_text("a1") == "hello\nworld\n"


def test_sends_at_once_when_a_chunk_is_full(clock, master):
    log = make(clock, master, chunk_size=10)
    log.write(b"0123456789abc")
    assert chunks(master) == [(0, "0123456789")]
    clock.advance(1)
    assert chunks(master)[1:] == [(10, "abc")]


def test_one_request_in_flight_and_offsets_in_order(clock, master):
    master.hold_logs = True
    log = make(clock, master, chunk_size=4)
    log.write(b"aaaabbbbcc")
    assert chunks(master) == [(0, "aaaa")]
    clock.advance(5)
    assert len(master.held) == 1
    master.release_log()
    assert chunks(master)[1:] == [(4, "bbbb")]
    master.release_log()
    clock.advance(1)
    master.release_log()
    assert chunks(master) == [(0, "aaaa"), (4, "bbbb"), (8, "cc")]
    assert master.log_text("a1") == "aaaabbbbcc"
    assert log.acked == log.written == 10


def test_never_cuts_a_character_in_two(clock, master):
    log = make(clock, master, chunk_size=4)
    text = "ééé"  # 2 bytes each
    log.write(text.encode()[:3])  # half a character arrives first
    log.write(text.encode()[3:])
    clock.advance(1)
    assert chunks(master) == [(0, "éé"), (4, "é")]
    assert master.log_text("a1") == text


def test_bad_bytes_are_replaced_and_counted_as_sent(clock, master):
    log = make(clock, master)
    log.write(b"ok \xff\n")
    clock.advance(1)
    assert master.log_text("a1") == "ok \ufffd\n"
    assert log.written == len("ok \ufffd\n".encode())


def test_cut_keeps_characters_whole():
    data = "aé".encode()
    assert cut(data, 2) == 1
    assert cut(data, 3) == 3
    assert cut(b"abc", 2) == 2


def test_retries_while_the_master_is_away(clock, master):
    log = make(clock, master)
    master.down = True
    log.write(b"line\n")
    clock.advance(1)
    clock.advance(0.75)
    assert len(master.of("log")) == 2
    master.down = False
    clock.advance(1.5)
    assert master.log_text("a1") == "line\n"
    assert chunks(master)[-1] == (0, "line\n")


def test_a_gap_at_the_master_goes_on_from_its_size(clock, master):
    log = make(clock, master)
    log.write(b"first\n")
    clock.advance(1)
    master.logs["a1"] = b""  # the master lost what it had
    log.write(b"second\n")
    clock.advance(1)
    text = master.log_text("a1")
    assert text.startswith("\n[pyfarm-agent: 6 bytes of this log were lost")
    assert text.endswith("second\n")
    log.write(b"third\n")
    clock.advance(1)
    assert master.log_text("a1").endswith("second\nthird\n")


def test_gives_up_on_a_log_the_master_does_not_know(clock, master):
    log = make(clock, master)
    log.write(b"x\n")
    log.client = Gone()
    clock.advance(1)
    assert log.gave_up and log.finished
    assert log.flushed(10**9)


def test_close_sends_the_rest_and_fires_when_delivered(clock, master):
    log = make(clock, master)
    master.hold_logs = True
    log.write(b"tail")
    closed = []
    log.close().addCallback(closed.append)
    assert chunks(master) == [(0, "tail")]
    assert closed == []
    master.release_log()
    assert closed == [None]
    assert log.finished


def test_want_sends_at_once(clock, master):
    log = make(clock, master)
    log.write(b"frame 1 done\n")
    assert not log.flushed(log.written)
    log.want(log.written)
    assert log.flushed(log.written)
    assert chunks(master) == [(0, "frame 1 done\n")]


def test_output_beyond_the_limit_is_dropped_with_a_note(clock, master):
    log = make(clock, master, max_pending=8, chunk_size=100)
    master.down = True
    log.write(b"12345678")
    clock.advance(1)  # in flight, failing: 8 bytes may wait meanwhile
    log.write(b"abcdefgh")
    log.write(b"lost")
    master.down = False
    clock.pump([1, 1, 1])  # the retry, then a second for the next chunk
    log.write(b"kept")
    clock.advance(1)
    assert master.log_text("a1") == (
        "12345678abcdefgh\n[pyfarm-agent: 4 bytes of output were dropped "
        "while the master could not be reached]\nkept")


class Courier:
    """Counts kicks; the test takes the chunks as the outbox would."""

    def __init__(self):
        self.kicks = 0

    def kick(self):
        self.kicks += 1


def test_with_a_courier_chunks_go_with_its_requests(clock, master):
    courier = Courier()
    stream = LogStream(clock, master, "agent-1", "a1", RetryPolicy(),
                       lambda: 0.5, courier=courier)
    stream.write(b"frame 1\n")
    assert stream.ready() == 8 and not stream.due()
    assert courier.kicks == 0
    clock.advance(1)  # the flush timer makes it due
    assert stream.due() and courier.kicks == 1
    chunk = stream.take()
    assert chunk == {"assignment": "a1", "offset": 0, "data": "frame 1\n"}
    assert stream.ready() == 0  # in flight
    stream.write(b"frame 2\n")
    stream.sent({"size": 8})
    assert stream.acked == 8 and stream.flushed(8)
    assert master.of("log") == []  # it never sends by itself
    # Waiting output goes along with any request (taken before its timer).
    assert stream.ready() == 8
    assert stream.take()["offset"] == 8


def test_with_a_courier_a_refused_chunk_is_resent_from_the_masters_size(
        clock, master):
    courier = Courier()
    stream = LogStream(clock, master, "agent-1", "a1", RetryPolicy(),
                       lambda: 0.5, courier=courier)
    stream.write(b"abc")
    stream.take()
    stream.sent({"size": 3})
    stream.write(b"def")
    assert stream.take()["offset"] == 3
    stream.failed(Failure(Conflict("gap", 409, {"error": "gap",
                                                "size": 0})))
    assert stream.due()
    chunk = stream.take()
    assert chunk["offset"] == 0 and chunk["data"].endswith("def")
