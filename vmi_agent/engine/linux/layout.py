"""Struct layouts as the probes use them: byte offsets by member path.

A :class:`Layout` is the flattened view of one struct that the BTF parser produces
(``Btf.layout``), kept as plain data so that a cached profile needs no BTF at all.
"""

from vmi_agent.engine.errors import ProfileError


class Layout:
    """One struct or union: its size and its members' offsets."""

    def __init__(self, name, data, resolve):
        self.name = name
        self.size = data['size']
        self.members = data['members']
        self._resolve = resolve

    def has(self, path):
        try:
            self.offset(path)
        except ProfileError:
            return False
        return True

    def member(self, path):
        """The member description at ``path`` (``'a.b'`` walks into nested structs)."""
        head, _, rest = path.partition('.')
        try:
            member = self.members[head]
        except KeyError:
            raise ProfileError('struct %s has no member %r' % (self.name, head)) from None
        if not rest:
            return member
        inner = member.get('type')
        if member.get('kind') not in ('struct', 'union') or not inner:
            raise ProfileError('%s.%s is not a struct' % (self.name, head))
        found = dict(self._resolve(inner).member(rest))
        found['offset'] += member['offset']
        return found

    def offset(self, path):
        return self.member(path)['offset']

    def __repr__(self):
        return '<Layout %s size=%d>' % (self.name, self.size)
