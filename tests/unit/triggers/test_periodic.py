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

"""Tests for the periodic trigger.

The schedule is checked with a fake clock, calling ``run_due`` the way the timer thread
does; a few tests start the real thread with short intervals and wait (generously) for
what it must do.
"""

import threading
import time

import pytest

from vmi_agent.triggers.periodic import PeriodicTrigger

WAIT = 5.0


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Recorder:
    """The agent's ``fire``: records (time, uuid, trigger, detail)."""

    def __init__(self, clock=None):
        self.clock = clock
        self.calls = []
        self.cond = threading.Condition()

    def __call__(self, uuid, trigger, detail):
        with self.cond:
            self.calls.append((self.clock() if self.clock else None, uuid, trigger, detail))
            self.cond.notify_all()

    def times(self, uuid):
        return [t for t, u, _, _ in self.calls if u == uuid]

    def wait_for(self, predicate):
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.calls), timeout=WAIT)


def _run_until(trigger, clock, end, step=1.0):
    while clock.now < end:
        clock.now += step
        trigger.run_due()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def fired(clock):
    return Recorder(clock)


@pytest.fixture
def timer(clock, fired):
    return PeriodicTrigger(fired, clock=clock)


def test_each_instance_fires_at_its_own_interval(clock, fired, timer):
    timer.set('a', 10)
    timer.set('b', 25)
    _run_until(timer, clock, 50)
    assert fired.times('a') == [10, 20, 30, 40, 50], 'a should fire every 10 s'
    assert fired.times('b') == [25, 50], 'b should fire every 25 s'
    assert {(trigger, detail) for _, u, trigger, detail in fired.calls if u == 'a'} == \
        {('periodic', 'every 10s')}, 'a fire should say periodic, every 10s'


def test_run_due_says_how_long_until_the_next_fire(clock, timer):
    assert timer.run_due() is None, 'nothing scheduled: no deadline'
    timer.set('a', 10)
    clock.now = 3
    assert timer.run_due() == 7, 'a is due at 10, so 7 s from 3'
    timer.set('b', 2)
    assert timer.run_due() == 2, 'b, set at 3 every 2 s, is due at 5'


def test_removed_instances_no_longer_fire(clock, fired, timer):
    timer.set('a', 10)
    timer.set('b', 10)
    _run_until(timer, clock, 10)
    timer.remove('a')
    timer.remove('never-set')
    _run_until(timer, clock, 40)
    assert fired.times('a') == [10], 'a should not fire after remove'
    assert fired.times('b') == [10, 20, 30, 40], 'removing a should leave b alone'
    assert timer.scheduled() == {'b': 10}, 'only b should be scheduled'


def test_set_replaces_the_earlier_interval(clock, fired, timer):
    timer.set('a', 10)
    clock.now = 4
    timer.set('a', 3)
    _run_until(timer, clock, 20)
    assert fired.times('a') == [7, 10, 13, 16, 19], \
        'after set(a, 3) at 4, a should fire every 3 s from 7 and no longer at 10, 20'
    assert fired.calls[0][3] == 'every 3s', 'the detail should name the new interval'


def test_a_late_run_keeps_to_the_slots_without_drift(clock, fired, timer):
    timer.set('a', 10)
    clock.now = 12                    # the agent was busy for 2 s
    assert timer.run_due() == 8, 'the next fire should stay at 20, not move to 22'
    assert fired.times('a') == [12], 'the late slot should still fire once'


def test_a_run_late_by_several_intervals_fires_once_not_a_burst(clock, fired, timer):
    timer.set('a', 10)
    clock.now = 35                    # slots 10, 20 and 30 all passed
    assert timer.run_due() == 5, 'the next slot after 35 is 40'
    assert timer.run_due() == 5, 'running again at once should not fire again'
    assert fired.times('a') == [35], 'three missed slots should give one fire, not three'
    _run_until(timer, clock, 50)
    assert fired.times('a') == [35, 40, 50], 'and the schedule should go on at 40, 50'


def test_a_failing_fire_keeps_the_schedule(clock):
    calls = []

    def fire(uuid, trigger, detail):
        calls.append(clock.now)
        raise RuntimeError('agent queue broken')

    timer = PeriodicTrigger(fire, clock=clock)
    timer.set('a', 10)
    _run_until(timer, clock, 30)
    assert calls == [10, 20, 30], 'fire raising should not stop later fires'


@pytest.mark.parametrize('seconds', [0, -5, float('nan'), float('inf')])
def test_an_interval_that_is_not_a_positive_number_is_refused(timer, seconds):
    with pytest.raises(ValueError):
        timer.set('a', seconds)
    assert timer.scheduled() == {}, 'a refused interval should schedule nothing'


# -- the real thread, real clock -------------------------------------------------------

@pytest.fixture
def live():
    fired = Recorder()
    timer = PeriodicTrigger(fired)
    yield timer, fired
    timer.stop()


def test_the_thread_fires_every_instance_repeatedly(live):
    timer, fired = live
    timer.start()
    timer.set('a', 0.01)
    timer.set('b', 0.02)
    assert fired.wait_for(lambda calls: len(fired.times('a')) >= 3
                          and len(fired.times('b')) >= 3), \
        'both instances should fire at least 3 times within %s s' % WAIT


def test_the_thread_wakes_early_when_the_schedule_changes(live):
    timer, fired = live
    timer.start()
    timer.set('a', 3600)
    time.sleep(0.05)                  # let the thread go to sleep for the hour
    timer.set('a', 0.01)
    assert fired.wait_for(lambda calls: calls), \
        'set() should wake the thread for the new, shorter interval'


def test_stop_joins_the_thread_and_is_idempotent(live):
    timer, fired = live
    timer.stop()                      # before start: nothing to do
    timer.start()
    timer.set('a', 0.01)
    assert fired.wait_for(lambda calls: calls), 'a should fire while running'
    timer.stop()
    timer.stop()
    assert 'vmi-periodic' not in [t.name for t in threading.enumerate()], \
        'stop() should have joined the timer thread'
    assert timer.scheduled() == {'a': 0.01}, 'stop() should keep the schedule'
    timer.start()
    count = len(fired.calls)
    assert fired.wait_for(lambda calls: len(calls) > count), \
        'a stopped timer should fire again when started again'
