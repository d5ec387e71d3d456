"""The introspection engine: a plain library.

Layers, each replaceable without touching the others:

* ``memory``  -- guest-physical memory sources (live shared RAM file, raw dump, ELF core);
* ``paging``  -- x86-64 virtual-to-physical translation;
* ``linux``   -- the Linux profile (BTF types, kallsyms, KASLR) and kernel objects;
* ``probes``  -- questions answered about the guest, returning records and findings.

Nothing here imports oslo.messaging, oslo.service, the agent's service layer or
``nova_vmi``: the engine is usable on its own (``vmi-inspect``).
"""
