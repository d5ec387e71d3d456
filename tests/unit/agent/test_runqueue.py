# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""RunQueue: one run at a time per guest, coalesced triggers, bounded requests, fairness."""

import threading

import pytest

from vmi_agent.runqueue import Job, RunQueue


class Recorder:
    """An ``execute`` that blocks each guest's run until the test releases it."""

    def __init__(self):
        self.started = []
        self.lock = threading.Lock()
        self.gates = {}
        self.ran = threading.Condition()

    def gate(self, uuid):
        with self.lock:
            return self.gates.setdefault(uuid, threading.Event())

    def __call__(self, job):
        with self.ran:
            self.started.append(job)
            self.ran.notify_all()
        assert self.gate(job.instance_uuid).wait(10), 'test never released the run'

    def wait_started(self, count):
        with self.ran:
            assert self.ran.wait_for(lambda: len(self.started) >= count, 10), (
                'expected %d runs to start, saw %s' % (count, self.started))


@pytest.fixture
def rec():
    return Recorder()


@pytest.fixture
def queue(rec):
    q = RunQueue(rec, workers=2, max_queued=2)
    yield q
    for gate in rec.gates.values():
        gate.set()
    q.stop()


def test_triggers_arriving_during_a_run_coalesce_into_one(queue, rec):
    assert queue.submit(Job('a', 'guest'))
    rec.wait_started(1)
    for _ in range(1000):
        assert queue.submit(Job('a', 'guest'))
    assert queue.pending('a') == 1, 'a thousand triggers make one pending run'
    rec.gate('a').set()
    rec.wait_started(2)
    assert rec.started[1].coalesced == 999


def test_requests_queue_each_up_to_the_limit(queue, rec):
    assert queue.submit(Job('a', 'on_demand', run_id='r0'))
    rec.wait_started(1)
    assert queue.submit(Job('a', 'on_demand', run_id='r1'))
    assert queue.submit(Job('a', 'on_demand', run_id='r2'))
    assert not queue.submit(Job('a', 'on_demand', run_id='r3')), 'beyond max_queued'
    rec.gate('a').set()
    rec.wait_started(3)
    assert [j.run_id for j in rec.started] == ['r0', 'r1', 'r2']


def test_a_busy_guest_does_not_hold_back_another(queue, rec):
    queue.submit(Job('busy', 'guest'))
    rec.wait_started(1)
    queue.submit(Job('busy', 'guest'))
    queue.submit(Job('other', 'guest'))
    rec.wait_started(2)
    assert rec.started[1].instance_uuid == 'other'


def test_one_run_at_a_time_per_guest(rec):
    q = RunQueue(rec, workers=4, max_queued=8)
    try:
        for i in range(3):
            q.submit(Job('a', 'on_demand', run_id='r%d' % i))
        rec.wait_started(1)
        with rec.ran:
            assert not rec.ran.wait_for(lambda: len(rec.started) > 1, 0.3), (
                'a second run of the same guest started while the first ran')
    finally:
        rec.gate('a').set()
        q.stop()


def test_forget_drops_what_waits(queue, rec):
    queue.submit(Job('a', 'on_demand', run_id='r0'))
    rec.wait_started(1)
    queue.submit(Job('a', 'on_demand', run_id='r1'))
    queue.submit(Job('a', 'periodic'))
    dropped = queue.forget('a')
    assert sorted(j.trigger for j in dropped) == ['on_demand', 'periodic']
    assert queue.pending('a') == 0


def test_an_execute_that_raises_does_not_stop_the_queue():
    seen = []
    done = threading.Event()

    def execute(job):
        seen.append(job.run_id)
        if job.run_id == 'bad':
            raise RuntimeError('boom')
        done.set()

    q = RunQueue(execute, workers=1, max_queued=4)
    q.submit(Job('a', 'on_demand', run_id='bad'))
    q.submit(Job('a', 'on_demand', run_id='good'))
    assert done.wait(10), 'the run after a failing one never ran'
    q.stop()
    assert seen == ['bad', 'good']


def test_stopped_queue_refuses(rec):
    q = RunQueue(rec, workers=1, max_queued=1)
    q.stop()
    assert not q.submit(Job('a', 'guest'))
