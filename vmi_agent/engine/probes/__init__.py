"""Probes: the questions the engine answers, loaded as stevedore plugins.

Each probe is a :class:`~vmi_agent.engine.probes.base.Probe` registered in the
``vmi_agent.probes`` entry-point namespace, so a deployment can add its own.
:func:`run_probes` runs several against one attached kernel; a probe that fails (bad
guest data, or a bug) gets its own error and the others still run.
"""

import functools
import time

import stevedore

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult

NAMESPACE = 'vmi_agent.probes'


@functools.lru_cache(maxsize=1)
def _registry():
    manager = stevedore.ExtensionManager(NAMESPACE, invoke_on_load=False)
    return {ext.name: ext.plugin for ext in manager}


def available():
    """Names of the installed probes, sorted."""
    return sorted(_registry())


def get(name):
    """The probe class called ``name``; KeyError if there is none."""
    return _registry()[name]


def required_types():
    """``(structs, enums)`` every installed probe declares: what a profile caches."""
    structs, enums = set(), set()
    for plugin in _registry().values():
        structs.update(plugin.structs)
        enums.update(plugin.enums)
    return sorted(structs), sorted(enums)


def run_probe(kernel, name):
    """Run one probe; never raises for what the guest or the probe did wrong."""
    try:
        return get(name)().run(kernel)
    except VMIError as exc:
        return ProbeResult(error='%s: %s' % (type(exc).__name__, exc))
    except Exception as exc:  # a probe bug must not take the others down
        return ProbeResult(error='internal error in probe %s: %s: %s'
                           % (name, type(exc).__name__, exc))


def run_probes(kernel, names):
    """``({name: ProbeResult}, {name: seconds})`` for each probe, in order."""
    kernel.flush()
    results, timings = {}, {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_probe(kernel, name)
        timings[name] = time.perf_counter() - start
    return results, timings


__all__ = ['Finding', 'Probe', 'ProbeResult', 'available', 'get', 'required_types',
           'run_probe', 'run_probes', 'NAMESPACE']
