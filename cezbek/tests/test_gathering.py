"""cezbek.gathering: what many requests add is sent in groups from one background thread, and
nothing added is sent twice or left behind by a process that exits."""

import os
import select
import signal
import threading
import time

import pytest

from cezbek.gathering import Gatherer


class Recorder:
    """A `send` that keeps every group with the thread that sent it."""

    def __init__(self):
        self.groups, self.threads = [], []
        self.arrived = threading.Condition()

    def __call__(self, group):
        with self.arrived:
            self.groups.append(list(group))
            self.threads.append(threading.current_thread().name)
            self.arrived.notify_all()

    def wait_for(self, count, timeout=5.0):
        with self.arrived:
            assert self.arrived.wait_for(lambda: sum(len(g) for g in self.groups) >= count, timeout), self.groups
        return [item for group in self.groups for item in group]


def test_items_from_many_threads_are_sent_once_in_groups_of_at_most_most():
    sent = Recorder()
    gatherer = Gatherer(sent, wait=0.2, most=16, name="test-gatherer")

    def add_many(k):
        for n in range(25):
            gatherer.add((k, n))

    adders = [threading.Thread(target=add_many, args=(k,)) for k in range(4)]
    for t in adders:
        t.start()
    for t in adders:
        t.join()
    items = sent.wait_for(100)

    assert sorted(items) == sorted((k, n) for k in range(4) for n in range(25))  # each exactly once
    for k in range(4):  # each adder's items in the order it added them
        assert [n for kk, n in items if kk == k] == list(range(25))
    assert all(1 <= len(group) <= 16 for group in sent.groups)
    assert len(sent.groups) < 100  # gathered, not one send per item
    assert set(sent.threads) == {"test-gatherer"}  # never in the adding thread


def test_a_lone_item_is_sent_after_the_wait():
    sent = Recorder()
    gatherer = Gatherer(sent, wait=0.3, most=16, name="test-gatherer")
    started = time.monotonic()
    gatherer.add("only")
    assert sent.groups == []  # not in the request that added it
    assert sent.wait_for(1, timeout=5) == ["only"]
    assert 0.25 <= time.monotonic() - started < 3


def test_a_full_group_does_not_wait():
    sent = Recorder()
    gatherer = Gatherer(sent, wait=30, most=4, name="test-gatherer")
    for n in range(4):
        gatherer.add(n)
    assert sent.wait_for(4, timeout=5) == [0, 1, 2, 3]  # long before the 30 s


def test_flush_sends_the_rest_after_the_group_being_sent():
    release, in_send = threading.Event(), threading.Event()
    sent = Recorder()

    def slow_send(group):
        if not sent.groups:
            in_send.set()
            release.wait(5)
        sent(group)

    gatherer = Gatherer(slow_send, wait=0.01, most=2, name="test-gatherer")
    gatherer.add(1)
    gatherer.add(2)
    assert in_send.wait(5)  # the thread is inside send with [1, 2]
    for n in (3, 4, 5):
        gatherer.add(n)
    flushed = threading.Thread(target=gatherer.flush)
    flushed.start()
    flushed.join(0.3)
    assert flushed.is_alive()  # waits for the group in flight (the process must not exit under it)
    release.set()
    flushed.join(5)
    assert not flushed.is_alive()
    items = sent.wait_for(5)
    assert sorted(items) == [1, 2, 3, 4, 5] and items[:2] == [1, 2]
    assert all(len(group) <= 2 for group in sent.groups)


def test_a_failing_send_is_logged_and_the_thread_goes_on(caplog):
    sent = Recorder()

    def send(group):
        if group == ["boom"]:
            raise ConnectionError("broker down")
        sent(group)

    gatherer = Gatherer(send, wait=0.01, most=1, name="test-gatherer")
    gatherer.add("boom")
    gatherer.add("after")
    assert sent.wait_for(1) == ["after"]
    assert any("could not send 1 gathered items" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_thread_that_died_is_replaced_at_the_next_add():
    sent = Recorder()

    def send(group):
        if group == ["fatal"]:
            raise SystemExit  # not an Exception: it ends the thread
        sent(group)

    gatherer = Gatherer(send, wait=0.01, most=1, name="test-gatherer")
    gatherer.add("fatal")
    deadline = time.monotonic() + 5
    while gatherer._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    gatherer.add("after")
    assert sent.wait_for(1) == ["after"]


def test_a_process_that_exits_sends_what_it_still_holds():
    import subprocess
    import sys

    program = (
        "from cezbek.gathering import Gatherer\n"
        "g = Gatherer(lambda items: print(items, flush=True), wait=30, most=2, name='exit-test')\n"
        "for n in range(5):\n"
        "    g.add(n)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr
    # the thread sent the first full group at once; the exit sent the rest, in groups of two, long before 30 s
    assert done.stdout.splitlines() == ["[0, 1]", "[2, 3]", "[4]"]


def test_a_forked_child_sends_its_own_items_not_its_parents():
    sent = Recorder()
    gatherer = Gatherer(sent, wait=0.5, most=16, name="test-gatherer")
    gatherer.add("parent")  # still waiting in the parent when it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sent, then leave without running the parent's exit hooks
        try:
            gatherer.add("child")
            items = sent.wait_for(1, timeout=5)
            os.write(write, repr(items).encode())
        finally:
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 10)
    if not ready:  # a child stuck on a lock its parent's thread held at the fork
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read) as pipe:
        child_sent = pipe.read() if ready else "stuck"
    os.waitpid(pid, 0)
    assert child_sent == "['child']"
    assert sent.wait_for(1) == ["parent"]


def test_a_child_forked_while_its_parent_sends_has_its_own_locks():
    release, in_send = threading.Event(), threading.Event()
    sent = Recorder()

    def send(group):
        if group == ["parent"]:
            in_send.set()
            release.wait(10)
        sent(group)

    gatherer = Gatherer(send, wait=0.01, most=16, name="test-gatherer")
    gatherer.add("parent")
    assert in_send.wait(5)  # the parent's thread holds the sending lock from here on
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            gatherer.add("child")
            gatherer.flush()  # would wait forever on a lock held by a thread that does not exist here
            os.write(write, repr([item for group in sent.groups for item in group]).encode())
        finally:
            os._exit(0)
    os.close(write)
    ready, _, _ = select.select([read], [], [], 10)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read) as pipe:
        child_sent = pipe.read() if ready else "stuck"
    os.waitpid(pid, 0)
    release.set()
    assert child_sent == "['child']"
    assert sent.wait_for(1) == ["parent"]
