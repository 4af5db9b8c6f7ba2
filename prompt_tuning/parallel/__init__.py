"""Devices: the (data, model) mesh, T5X-style logical axis rules, and multi-host helpers.

Imports only `prompt_tuning.config`; the model, training and runs layers place their arrays
with it.
  partitioning.py  the mesh, logical -> mesh axis rules, shardings of abstract trees
  multihost.py     primary host, barriers, global arrays from per-host rows, fetching to host
"""
