"""The agent contract: what every agent declares and what the rest of rlkit may rely on.

``agent`` (the config base, the step record, the declared capabilities), ``networks`` (shared network
pieces), ``schedules``. Depends on nothing else in rlkit but ``rlkit.errors``.
"""
