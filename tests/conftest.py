"""Shared pytest setup: deterministic torch threads so tests behave the same on any CI box."""

import torch

torch.set_num_threads(2)
