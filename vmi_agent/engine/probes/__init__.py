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

"""Probes: the questions the engine answers, loaded as stevedore plugins.

Each probe is a :class:`~vmi_agent.engine.probes.base.Probe` registered in the
``vmi_agent.probes`` entry-point namespace, so a deployment can add its own.

Modules here: one per probe (``pslist``, ``modules``, ``syscalls``, ``idt``,
``hidden_tasks``, ``hidden_modules``, ``creds``, ``kernel_text``), and what several of
them share: ``base`` (the Probe and Finding types), ``kernel_code`` (is an address a
function start in kernel text, which module holds it), and kernel_text's parts:
``patch_sites`` (the kernel's own legitimate text patching), ``image_diff`` (what
differs from the baseline) and ``image_mapping`` (is the image mapped to its own pages).
:func:`run_probes` runs several against one attached kernel; a probe that fails (bad
guest data, or a bug) gets its own error and the others still run.
"""

import contextlib
import functools
import time

import stevedore

from vmi_agent.engine.errors import VMIError
from vmi_agent.engine.probes.base import Finding, Probe, ProbeResult
from vmi_agent.engine.watchdog import WATCHDOG

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


def requirements():
    """``(structs, enums, symbols)`` the installed probes declare: what a profile caches."""
    structs, enums, symbols = set(), set(), set()
    for plugin in _registry().values():
        structs.update(plugin.structs)
        enums.update(plugin.enums)
        symbols.update(plugin.symbols)
    return sorted(structs), sorted(enums), sorted(symbols)


@contextlib.contextmanager
def _time_limit(kernel, seconds, name):
    """Interrupt ``kernel``'s reads when the body runs past ``seconds`` (None: never)."""
    if not seconds:
        yield
        return
    entry = WATCHDOG.arm(seconds, functools.partial(
        kernel.space.interrupt, 'probe %s ran past its %gs time limit' % (name, seconds)))
    try:
        yield
    finally:
        WATCHDOG.disarm(entry)
        kernel.space.resume()


def run_probe(kernel, name, context=None, timeout=None):
    """Run one probe; never raises for what the guest or the probe did wrong.

    ``timeout`` (seconds) stops a probe at its next read of guest memory once it has
    run that long; it then reports an ``Interrupted`` error.
    """
    try:
        with _time_limit(kernel, timeout, name):
            return get(name)(context).run(kernel)
    except VMIError as exc:
        return ProbeResult(error='%s: %s' % (type(exc).__name__, exc))
    except Exception as exc:  # a probe bug must not take the others down
        return ProbeResult(error='internal error in probe %s: %s: %s'
                           % (name, type(exc).__name__, exc))


def run_probes(kernel, names, context=None, timeout=None):
    """``({name: ProbeResult}, {name: seconds})`` for each probe, in order.

    ``context`` is handed to every probe (see :class:`Probe`); ``timeout`` limits each
    probe (see :func:`run_probe`).
    """
    kernel.flush()
    results, timings = {}, {}
    for name in names:
        start = time.perf_counter()
        results[name] = run_probe(kernel, name, context, timeout)
        timings[name] = time.perf_counter() - start
    return results, timings


__all__ = ['Finding', 'Probe', 'ProbeResult', 'available', 'get', 'requirements',
           'run_probe', 'run_probes', 'NAMESPACE']
