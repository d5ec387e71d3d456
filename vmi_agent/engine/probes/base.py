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

"""What a probe is, and what it returns.

A probe answers one question about an attached kernel.  Like a Volatility plugin it
declares what it needs and returns data: *records* (what is there) and *findings* (what
is wrong).  It never prints; the CLI and the agent's notifier format its result.
"""

import dataclasses

SEVERITIES = ('low', 'medium', 'high', 'critical')


@dataclasses.dataclass
class Finding:
    """Something a probe believes is wrong in the guest."""

    kind: str
    severity: str
    summary: str
    evidence: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError('severity %r is not one of %s' % (self.severity, SEVERITIES))

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ProbeResult:
    records: list = dataclasses.field(default_factory=list)
    findings: list = dataclasses.field(default_factory=list)
    error: str = None

    def to_dict(self):
        return {'records': self.records,
                'findings': [f.to_dict() for f in self.findings],
                'error': self.error}


class Probe:
    """Base class of the probes (stevedore namespace ``vmi_agent.probes``).

    Subclasses set ``name`` and the types and symbols they read (``structs``,
    ``enums``, ``symbols``), so that a profile built for a kernel caches exactly those,
    and implement :meth:`run`.
    """

    name = None
    structs = ()
    enums = ()
    symbols = ()

    def __init__(self, context=None):
        #: What the caller tells every probe about this run: ``guest_id`` (which guest,
        #: e.g. a Nova instance UUID or a memory file's path) and ``state_dir`` (where a
        #: probe may keep state between runs, such as a baseline).  Both may be absent.
        self.context = dict(context or {})

    def run(self, kernel):
        """Return a :class:`ProbeResult` for ``kernel`` (a ``LinuxKernel``)."""
        raise NotImplementedError
