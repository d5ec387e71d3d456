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

    Subclasses set ``name`` and the types they read (``structs``, ``enums``), so that a
    profile built for a kernel caches exactly those, and implement :meth:`run`.
    """

    name = None
    structs = ()
    enums = ()

    def run(self, kernel):
        """Return a :class:`ProbeResult` for ``kernel`` (a ``LinuxKernel``)."""
        raise NotImplementedError
