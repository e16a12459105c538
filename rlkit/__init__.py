"""rlkit: the shared training core (torch) and the replay buffers (numpy only).

Import direction: ``agents`` imports ``rlkit`` and ``envs``; ``rlkit`` never imports either.
"""

__version__ = "0.1.0"
