"""nova-vmi compute-host agent and its introspection engine."""
