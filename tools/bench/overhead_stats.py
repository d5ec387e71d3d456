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

"""The figures of the overhead benchmark, computed from what it measured.

Kept apart from :mod:`tools.bench.overhead` (which boots guests and runs the agent) so that
the arithmetic behind the headline numbers (medians over rounds, throughput ratios against
no introspection, the goals' verdicts) is plain functions that unit tests can check.
"""

import random
import statistics

BASELINE = 'none'

#: The issue's goals: what triggered introspection may cost the guest, as a fraction.
GOALS = {'triggered_1hz': 0.01, 'triggered_10hz': 0.02}
#: Fewer rounds than this give no verdict (the issue asks for at least 5).
MIN_ROUNDS = 5


def condition_name(design, hz=None):
    """``none``, ``polling_1hz``, ``triggered_10hz``, ..."""
    return design if hz is None else '%s_%shz' % (design, format(hz, 'g'))


def summary(values, ndigits=3):
    """n, median, p99, min and max of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {'n': len(ordered), 'median': round(statistics.median(ordered), ndigits),
            'p99': round(p99, ndigits), 'min': round(ordered[0], ndigits),
            'max': round(ordered[-1], ndigits)}


def spread(values, ndigits=4):
    """median, min and max of a handful of per-round values."""
    return {'median': round(statistics.median(values), ndigits),
            'min': round(min(values), ndigits), 'max': round(max(values), ndigits)}


def condition_figures(rounds, baseline=BASELINE):
    """Per-condition figures from ``{condition: [measurement, ...]}`` (one per round).

    A measurement is a dict with ``iterations``, ``wall_s`` (host), ``guest_s`` (the
    guest's clock), ``host_cpu_s`` (CPU of the introspecting side over the measurement),
    ``runs`` (introspection runs done), ``pause_s`` and ``probes_s`` (one per run), and
    ``qemu_cpu_s`` (CPU the guest's QEMU got: below one core per second of wall time, the
    guest was waiting for the host, which is noise, or paused) and ``steal_s`` (time the
    hypervisor under this machine took away from it, noise too).

    ``ratio`` is the median rate over the baseline's median rate; ``round_ratio`` is each
    round's rate over the same round's baseline (neighbours in time, so slower drifts of
    the machine cancel), as median, min and max.  ``cost`` is ``1 - ratio``;
    ``cost_ci90`` is its 90% bootstrap interval (:func:`cost_interval`).
    """
    base_rates = [_rate(m) for m in rounds[baseline]]
    base_median = statistics.median(base_rates)
    out = {}
    for name, measurements in rounds.items():
        rates = [_rate(m) for m in measurements]
        wall = sum(m['wall_s'] for m in measurements)
        pauses = [p for m in measurements for p in m.get('pause_s', [])]
        probes = [p for m in measurements for p in m.get('probes_s', [])]
        figures = {
            'rate_per_s': spread(rates, 2),
            'rates_per_round': [round(r, 2) for r in rates],
            'ratio': round(statistics.median(rates) / base_median, 4),
            'round_ratio': spread([r / b for r, b in zip(rates, base_rates)]),
            'runs_per_s': round(sum(m.get('runs', 0) for m in measurements) / wall, 3),
            'pause_ms_per_run': summary([p * 1000 for p in pauses]),
            'probes_ms_per_run': summary([p * 1000 for p in probes]),
            'paused_fraction': round(sum(pauses) / wall, 5),
            'host_cpu_s_per_s': spread([m['host_cpu_s'] / m['wall_s']
                                        for m in measurements]),
            'qemu_cpu_share': spread([m['qemu_cpu_s'] / m['wall_s'] for m in measurements
                                      if 'qemu_cpu_s' in m] or [0.0]),
            'host_steal_s_per_s': spread([m['steal_s'] / m['wall_s'] for m in measurements
                                          if 'steal_s' in m] or [0.0]),
            'guest_clock_lost_fraction': round(
                1 - sum(m['guest_s'] for m in measurements) / wall, 4),
        }
        figures['cost'] = round(1 - figures['ratio'], 4)
        figures['cost_ci90'] = [round(v, 4) for v in cost_interval(rates, base_rates)]
        out[name] = figures
    return out


def design_of(name):
    """``polling_10hz`` -> ``polling``; ``none`` -> ``none``."""
    return name.rsplit('_', 1)[0] if name.endswith('hz') else name


def add_accounted_cost(figures, guest_ms_per_trigger):
    """Set each condition's ``accounted_cost``: the guest time it is known to take.

    Polling: the fraction of wall time the guest was stopped.  A triggered design: runs
    per second times what one trigger costs the guest (``guest_ms_per_trigger``, by
    design, measured apart).  Unlike ``cost`` this does not see second-order effects
    (caches, host cores shared with the introspecting side, runs that coalesced several
    triggers), but neither does it drown in the rounds' noise.
    """
    for name, f in figures.items():
        design = design_of(name)
        if design == 'polling':
            f['accounted_cost'] = f['paused_fraction']
        elif design in guest_ms_per_trigger:
            f['accounted_cost'] = round(
                f['runs_per_s'] * guest_ms_per_trigger[design] / 1000, 5)
        else:
            f['accounted_cost'] = 0.0
    return figures


def cost_interval(rates, base_rates, level=0.90, resamples=2000, seed=0):
    """A bootstrap interval of ``1 - median(rates) / median(base_rates)``.

    Rounds are resampled with replacement, a condition's round together with the same
    round's baseline (so what drifted between rounds stays paired).  Seeded: the same
    measurements give the same interval.
    """
    if len(rates) != len(base_rates) or not rates:
        raise ValueError('need one baseline rate per round: %d rates, %d baseline rates'
                         % (len(rates), len(base_rates)))
    pick = random.Random(seed)
    n = len(rates)
    costs = []
    for _ in range(resamples):
        rows = [pick.randrange(n) for _ in range(n)]
        costs.append(1 - statistics.median(rates[i] for i in rows)
                     / statistics.median(base_rates[i] for i in rows))
    costs.sort()
    tail = (1 - level) / 2
    return (costs[int(tail * (resamples - 1))],
            costs[int(round((1 - tail) * (resamples - 1)))])


def _rate(measurement):
    if measurement['wall_s'] <= 0:
        raise ValueError('a measurement took %r s of wall time' % measurement['wall_s'])
    return measurement['iterations'] / measurement['wall_s']


def noise(figures, baseline=BASELINE):
    """How far apart the baseline's rounds were: (max - min) / median."""
    rate = figures[baseline]['rate_per_s']
    return round((rate['max'] - rate['min']) / rate['median'], 4)


def verdicts(figures, goals=GOALS, baseline=BASELINE):
    """Per goal: the measured cost and its interval, the goal, and the verdict.

    ``met`` compares the median cost with the goal.  ``verdict`` also weighs the noise:
    ``met`` when the whole 90% interval is within the goal, ``missed`` when it is all
    above, else ``not resolved`` (this run cannot tell); with fewer than
    :data:`MIN_ROUNDS` rounds the interval means nothing: ``too few rounds``.
    ``accounted_met`` judges the accounted cost (see :func:`add_accounted_cost`) when
    there is one.
    """
    out = {}
    for name, limit in goals.items():
        if name not in figures:
            continue
        f = figures[name]
        low, high = f['cost_ci90']
        out[name] = {'cost': f['cost'], 'cost_ci90': f['cost_ci90'], 'goal': limit,
                     'met': f['cost'] <= limit,
                     'verdict': ('too few rounds' if len(f['rates_per_round']) < MIN_ROUNDS
                                 else 'met' if high <= limit
                                 else 'missed' if low > limit else 'not resolved')}
        if 'accounted_cost' in f:
            out[name]['accounted_cost'] = f['accounted_cost']
            out[name]['accounted_met'] = f['accounted_cost'] <= limit
    return out


def headline(figures, goals=GOALS, baseline=BASELINE):
    """The few numbers a reader wants first: cost per condition, and polling vs triggered."""
    lines = {name: {'cost_pct': round(f['cost'] * 100, 2),
                    'round_cost_pct_min_max': [round((1 - f['round_ratio']['max']) * 100, 2),
                                               round((1 - f['round_ratio']['min']) * 100, 2)],
                    'cost_ci90_pct': [_pct(v) for v in f['cost_ci90']],
                    'accounted_cost_pct': _pct(f.get('accounted_cost')),
                    'pause_ms_median': (f['pause_ms_per_run'] or {}).get('median'),
                    'host_cpu_s_per_s': f['host_cpu_s_per_s']['median'],
                    'runs_per_s': f['runs_per_s'],
                    'qemu_cpu_share_median': f['qemu_cpu_share']['median']}
             for name, f in figures.items() if name != baseline}
    extra = {}
    for hz in sorted({name.rsplit('_', 1)[1] for name in lines if '_' in name}):
        polling, triggered = lines.get('polling_' + hz), lines.get('triggered_' + hz)
        if polling and triggered:
            extra['polling_minus_triggered_cost_pct_' + hz] = round(
                polling['cost_pct'] - triggered['cost_pct'], 2)
    return {'conditions': lines, 'baseline_noise_pct': _pct(noise(figures, baseline)),
            'baseline_qemu_cpu_share': figures[baseline]['qemu_cpu_share'],
            'host_steal_s_per_s_max': max(f['host_steal_s_per_s']['max']
                                          for f in figures.values()),
            'goals': verdicts(figures, goals, baseline), **extra}


def _pct(fraction):
    return None if fraction is None else round(fraction * 100, 3)


def proc_cpu_ticks(stat_text):
    """utime + stime (clock ticks) from the text of ``/proc/<pid>/stat``."""
    # The comm field is in parentheses and may hold spaces: split after the last ')'.
    _, sep, rest = stat_text.rpartition(')')
    fields = rest.split()
    if not sep or len(fields) < 13:
        raise ValueError('not a /proc/<pid>/stat line: %r' % stat_text[:120])
    return int(fields[11]) + int(fields[12])


def proc_ppid(stat_text):
    """The parent pid from the text of ``/proc/<pid>/stat``."""
    _, sep, rest = stat_text.rpartition(')')
    fields = rest.split()
    if not sep or len(fields) < 2:
        raise ValueError('not a /proc/<pid>/stat line: %r' % stat_text[:120])
    return int(fields[1])
