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

"""The overhead benchmark's arithmetic and guest scripts (tools/bench/overhead*.py).

No guest, no agent: the measurements are made-up dicts of the shape the benchmark
records, so that each figure can be checked by hand.
"""

import shutil

import pytest

from tools.bench import overhead
from tools.bench import overhead_stats as stats
from tools.bench import workload


def _m(iterations, wall_s=10.0, guest_s=10.0, host_cpu_s=0.0, pauses=(), probes=(),
       runs=None, qemu_cpu_s=9.5):
    return {'iterations': iterations, 'wall_s': wall_s, 'guest_s': guest_s,
            'host_cpu_s': host_cpu_s, 'pause_s': list(pauses), 'probes_s': list(probes),
            'runs': len(pauses) if runs is None else runs, 'qemu_cpu_s': qemu_cpu_s}


def _rounds():
    return {
        'none': [_m(1000), _m(800), _m(900), _m(1000), _m(800)],
        # Round by round 5% slower than that round's baseline.
        'polling_10hz': [_m(950, wall_s=10.0, guest_s=9.9, host_cpu_s=0.1,
                            pauses=[0.001] * 100, probes=[0.0005] * 100),
                         _m(760, guest_s=9.9, host_cpu_s=0.2, pauses=[0.001] * 100),
                         _m(855, guest_s=9.9, host_cpu_s=0.3, pauses=[0.001] * 100),
                         _m(950, guest_s=9.9, host_cpu_s=0.2, pauses=[0.001] * 100),
                         _m(760, guest_s=9.9, host_cpu_s=0.2, pauses=[0.001] * 100)],
        'triggered_10hz': [_m(1000, host_cpu_s=0.5, pauses=[0.0] * 100),
                           _m(800, host_cpu_s=0.5, pauses=[0.0] * 100),
                           _m(900, host_cpu_s=0.5, pauses=[0.0] * 100),
                           _m(1000, host_cpu_s=0.5, pauses=[0.0] * 100),
                           _m(800, host_cpu_s=0.5, pauses=[0.0] * 100)],
    }


def test_ratio_is_median_rate_over_baseline_median_rate():
    figures = stats.condition_figures(_rounds())
    assert figures['polling_10hz']['ratio'] == pytest.approx(0.95), \
        'expected median 950 iterations over the baseline median 1000'
    assert figures['polling_10hz']['cost'] == pytest.approx(0.05)
    assert figures['none']['ratio'] == 1.0, 'the baseline against itself is 1'


def test_round_ratio_compares_each_round_with_its_own_baseline():
    figures = stats.condition_figures(_rounds())
    assert figures['polling_10hz']['round_ratio'] == {
        'median': 0.95, 'min': 0.95, 'max': 0.95}, \
        'every round was 5% below the same round\'s baseline'
    assert figures['none']['rate_per_s'] == {'median': 90.0, 'min': 80.0, 'max': 100.0}


def test_runs_pauses_and_host_cpu_are_per_second_of_wall_time():
    figures = stats.condition_figures(_rounds())['polling_10hz']
    assert figures['runs_per_s'] == 10.0, 'expected 500 runs in 50 s'
    assert figures['paused_fraction'] == pytest.approx(0.01), 'expected 0.5 s in 50 s'
    assert figures['pause_ms_per_run']['median'] == 1.0
    assert figures['probes_ms_per_run']['n'] == 100, 'only the first round had probe times'
    assert figures['host_cpu_s_per_s'] == {'median': 0.02, 'min': 0.01, 'max': 0.03}
    assert figures['guest_clock_lost_fraction'] == pytest.approx(0.01), \
        'the guest counted 9.9 s of every 10 s'
    assert figures['qemu_cpu_share']['median'] == 0.95, \
        'expected 9.5 s of QEMU CPU per 10 s of wall time'


def test_a_measurement_without_wall_time_is_refused():
    rounds = _rounds()
    rounds['none'][0]['wall_s'] = 0
    with pytest.raises(ValueError, match='wall time'):
        stats.condition_figures(rounds)


def test_accounted_cost_is_pause_fraction_or_runs_times_trigger_cost():
    figures = stats.add_accounted_cost(stats.condition_figures(_rounds()),
                                       {'triggered': 0.5})
    assert figures['polling_10hz']['accounted_cost'] == figures['polling_10hz'][
        'paused_fraction'], 'polling costs the guest the time it is stopped'
    assert figures['triggered_10hz']['accounted_cost'] == pytest.approx(0.005), \
        'expected 10 runs/s x 0.5 ms'
    assert figures['none']['accounted_cost'] == 0.0


def test_goals_are_judged_by_the_median_and_by_the_interval():
    figures = stats.condition_figures(_rounds())
    verdicts = stats.verdicts(figures, goals={'triggered_10hz': 0.02, 'polling_10hz': 0.02})
    assert verdicts['triggered_10hz']['met'] is True, 'a cost of 0 meets a 2% goal'
    assert verdicts['triggered_10hz']['verdict'] == 'met', \
        'every round cost exactly 0: the whole interval is within 2%'
    assert verdicts['polling_10hz']['met'] is False, 'a 5% cost misses a 2% goal'
    assert verdicts['polling_10hz']['verdict'] == 'missed', \
        'every round cost exactly 5%: the whole interval is above 2%'
    assert stats.noise(figures) == pytest.approx(20 / 90, abs=1e-4), \
        'rounds from 80 to 100 it/s around a median of 90'


def test_fewer_than_five_rounds_give_no_verdict():
    rounds = {name: ms[:3] for name, ms in _rounds().items()}
    verdicts = stats.verdicts(stats.condition_figures(rounds))
    assert verdicts['triggered_10hz']['verdict'] == 'too few rounds'
    assert verdicts['triggered_10hz']['met'] is True, 'the median is still compared'


def test_a_cost_the_noise_hides_is_not_resolved():
    rounds = {'none': [_m(1000), _m(600), _m(1000), _m(600), _m(800)],
              'triggered_1hz': [_m(600), _m(1000), _m(990), _m(610), _m(795)]}
    figures = stats.condition_figures(rounds)
    low, high = figures['triggered_1hz']['cost_ci90']
    assert low < 0.01 < high, 'expected an interval wide enough to hold the 1%% goal: %r' \
        % ((low, high),)
    assert stats.verdicts(figures)['triggered_1hz']['verdict'] == 'not resolved'


def test_cost_interval_is_reproducible_and_exact_for_a_constant_cost():
    rates, base = [95, 76, 85.5, 90], [100, 80, 90, 95]
    assert stats.cost_interval(rates, base) == stats.cost_interval(rates, base), \
        'a seeded bootstrap gives the same interval twice'
    low, high = stats.cost_interval([95.0] * 4, [100.0] * 4)
    assert low == pytest.approx(0.05) and high == pytest.approx(0.05)
    with pytest.raises(ValueError, match='one baseline rate per round'):
        stats.cost_interval([1.0, 2.0], [1.0])


def test_headline_has_each_condition_the_goals_and_the_designs_compared():
    figures = stats.add_accounted_cost(stats.condition_figures(_rounds()),
                                       {'triggered': 0.5})
    head = stats.headline(figures)
    assert set(head['conditions']) == {'polling_10hz', 'triggered_10hz'}, \
        'the baseline is not a condition of its own in the headline'
    assert head['conditions']['polling_10hz']['cost_pct'] == 5.0
    assert head['conditions']['polling_10hz']['round_cost_pct_min_max'] == [5.0, 5.0]
    assert head['polling_minus_triggered_cost_pct_10hz'] == 5.0
    assert set(head['goals']) == {'triggered_10hz'}, 'only goals with a measured condition'
    assert head['conditions']['triggered_10hz']['accounted_cost_pct'] == 0.5


def test_condition_names_and_order_alternate_designs_per_rate():
    assert stats.condition_name('polling', 10) == 'polling_10hz'
    assert stats.condition_name('triggered', 0.5) == 'triggered_0.5hz'
    assert stats.design_of('triggered_exec_10hz') == 'triggered_exec'
    assert [name for name, _, _ in overhead.conditions([1, 10], [10])] == [
        'none', 'polling_1hz', 'triggered_1hz', 'polling_10hz', 'triggered_10hz',
        'triggered_exec_10hz']


def test_summary_of_nothing_is_none_and_p99_is_an_observed_value():
    assert stats.summary([]) is None
    values = list(range(1, 201))
    out = stats.summary(values)
    assert out['p99'] in values and out['median'] == 100.5 and out['n'] == 200


def test_proc_stat_parsing_survives_a_comm_with_spaces_and_parentheses():
    line = '4242 (evil) name) S 4241 4242 4242 0 -1 4194560 1 2 3 4 150 25 0 0 20 0 3 0'
    assert stats.proc_cpu_ticks(line) == 175, 'expected utime 150 + stime 25'
    assert stats.proc_ppid(line) == 4241
    with pytest.raises(ValueError, match='/proc'):
        stats.proc_cpu_ticks('garbage')


def test_workload_output_is_iterations_and_guest_seconds():
    assert workload.parse_workload_output('123 1001\n') == (123, 10.01)
    for bad in ('', 'sh: dd: not found', '12', '12 -5', '12 0', '1 2 3'):
        with pytest.raises(workload.WorkloadOutputError):
            workload.parse_workload_output(bad)


def test_workload_script_runs_the_trigger_loop_only_when_asked():
    plain = workload.workload_script(10)
    assert 'end=$((t0 + 1000))' in plain, 'expected 10 s in centiseconds'
    assert 'kill' not in plain and 'trigger' not in plain
    resident = workload.workload_script(10, trigger_hz=10)
    assert '%s 100000 0' % workload.TRIGGER_LOOP_PATH in resident
    assert 'kill $tp' in resident
    forked = workload.workload_script(10, trigger_hz=1, resident=False)
    assert 'vmi-trigger --port 0x402 0x54; usleep 1000000' in forked
    with pytest.raises(ValueError):
        workload.workload_script(0)
    with pytest.raises(ValueError):
        workload.trigger_loop(0)


@pytest.mark.skipif(shutil.which('gcc') is None, reason='needs gcc (the test bed does)')
def test_resident_trigger_builds_small_enough_for_one_serial_command(tmp_path):
    data = workload.build_trigger_loop(str(tmp_path))
    assert data[:4] == b'\x7fELF', 'expected an ELF executable'
    assert len(data) <= 8192, 'expected no libc: at most one Guest.put chunk, got %d bytes' \
        % len(data)
