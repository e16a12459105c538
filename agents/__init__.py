"""Learners (DQN / Double DQN, PAAC, PPO), their networks, and the ``rlkit`` command line."""
