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

"""Tests for the per-instance token bucket, driven by a fake clock (no sleeping)."""

import pytest

from vmi_agent.triggers.ratelimit import TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def _take_all(bucket, limit=1000):
    n = 0
    while n < limit and bucket.allow():
        n += 1
    return n


def test_a_new_bucket_allows_a_full_burst_then_refuses():
    bucket = TokenBucket(2, burst=3, clock=FakeClock())
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False], \
        'a full bucket of 3 should allow 3 events in a row and refuse the 4th'


def test_tokens_come_back_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(2, burst=3, clock=clock)
    _take_all(bucket)
    clock.advance(0.25)
    assert not bucket.allow(), 'half a token (0.25 s at 2/s) should not allow an event'
    clock.advance(0.25)
    assert bucket.allow(), 'one token (0.5 s at 2/s) should allow one event'
    assert not bucket.allow(), 'and only one'


def test_a_long_idle_time_refills_only_up_to_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(2, burst=3, clock=clock)
    _take_all(bucket)
    clock.advance(3600)
    assert _take_all(bucket) == 3, 'an hour idle should still allow only a burst of 3'


def test_the_long_run_average_is_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(10, burst=1, clock=clock)
    _take_all(bucket)
    allowed = 0
    for _ in range(1000):             # 10 s of attempts every 10 ms
        clock.advance(0.01)
        allowed += bucket.allow()
    assert 99 <= allowed <= 101, 'expected about 100 events in 10 s at 10/s, got %d' % allowed


@pytest.mark.parametrize('rate, burst', [(0.1, 1), (1, 1), (5, 5), (2.5, 2.5)])
def test_the_default_burst_is_the_rate_but_at_least_one(rate, burst):
    bucket = TokenBucket(rate, clock=FakeClock())
    assert bucket.burst == burst, 'rate %r should default to a burst of %r' % (rate, burst)


def test_a_slow_rate_allows_one_then_waits_for_its_period():
    clock = FakeClock()
    bucket = TokenBucket(1 / 60, clock=clock)
    assert bucket.allow(), 'a new bucket should allow one event'
    clock.advance(59)
    assert not bucket.allow(), 'a rate of one a minute should refuse after 59 s'
    clock.advance(1)
    assert bucket.allow(), 'and allow again after 60 s'


def test_lowering_the_rate_shrinks_a_default_burst_and_slows_refill():
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock)
    bucket.rate = 1
    assert bucket.rate == 1 and bucket.burst == 1, 'the default burst should follow the rate'
    assert _take_all(bucket) == 1, 'the tokens above the new burst should be gone'
    clock.advance(0.5)
    assert not bucket.allow(), 'at the new rate of 1/s, 0.5 s is not enough for a token'
    clock.advance(0.5)
    assert bucket.allow(), 'and 1 s is'


def test_raising_the_rate_keeps_an_explicit_burst():
    clock = FakeClock()
    bucket = TokenBucket(1, burst=2, clock=clock)
    _take_all(bucket)
    bucket.rate = 100
    assert bucket.burst == 2, 'an explicit burst should not follow the rate'
    clock.advance(0.01)
    assert _take_all(bucket) == 1, 'at 100/s, 10 ms should bring exactly one token'
    clock.advance(60)
    assert _take_all(bucket) == 2, 'and a long wait only the explicit burst of 2'


def test_time_before_a_rate_change_is_counted_at_the_old_rate():
    clock = FakeClock()
    bucket = TokenBucket(1, burst=5, clock=clock)
    _take_all(bucket)
    clock.advance(2)                  # 2 tokens at 1/s
    bucket.rate = 0
    assert _take_all(bucket) == 2, 'tokens earned before the change should be kept'


def test_a_zero_rate_allows_only_what_is_left():
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock)
    assert bucket.allow(), 'a rate of 0 still starts with a burst of 1'
    clock.advance(1e6)
    assert not bucket.allow(), 'a rate of 0 should never refill'


@pytest.mark.parametrize('rate', [-1, float('nan'), float('inf')])
def test_a_bad_rate_is_refused(rate):
    with pytest.raises(ValueError):
        TokenBucket(rate)
    bucket = TokenBucket(1)
    with pytest.raises(ValueError):
        bucket.rate = rate
    assert bucket.rate == 1, 'a refused rate should leave the old one'


@pytest.mark.parametrize('burst', [0, 0.5, -1, float('nan')])
def test_a_burst_below_one_is_refused(burst):
    with pytest.raises(ValueError):
        TokenBucket(1, burst=burst)
