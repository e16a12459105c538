"""Learners (DQN / Double DQN, PAAC), their networks, and the ``rlkit`` command line."""
