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

"""The shared watchdog: deadlines fire once, in order; disarmed ones never fire."""

import threading

from vmi_agent.engine.watchdog import Watchdog


def _recorder():
    fired = []
    cond = threading.Condition()

    def make(name):
        def callback():
            with cond:
                fired.append(name)
                cond.notify_all()
        return callback
    return fired, cond, make


def test_deadlines_fire_in_order_and_disarmed_ones_never():
    dog = Watchdog()
    fired, cond, make = _recorder()
    late = dog.arm(0.2, make('late'))
    dog.arm(0.1, make('early'))
    cancelled = dog.arm(0.05, make('cancelled'))
    dog.disarm(cancelled)
    with cond:
        assert cond.wait_for(lambda: len(fired) == 2, 10), fired
    assert fired == ['early', 'late']
    dog.disarm(late)        # after it fired: harmless
    assert fired == ['early', 'late']


def test_disarm_returns_only_when_the_callback_can_no_longer_run():
    dog = Watchdog()
    fired, cond, make = _recorder()
    for i in range(200):
        dog.disarm(dog.arm(0, make(i)))
    count = len(fired)
    dog.disarm(dog.arm(0.05, make('after')))
    with cond:
        cond.wait_for(lambda: 'after' in fired, 0.3)
    assert 'after' not in fired, 'a disarmed deadline fired'
    assert len(fired) == count, 'nothing fired after its disarm returned'


def test_a_failing_callback_does_not_stop_the_watchdog():
    dog = Watchdog()
    fired, cond, make = _recorder()

    def broken():
        raise RuntimeError('boom')

    dog.arm(0, broken)
    dog.arm(0.05, make('next'))
    with cond:
        assert cond.wait_for(lambda: fired == ['next'], 10), fired
