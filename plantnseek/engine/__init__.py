"""The native training kernel (C, built on first use) and its build; part of the Lightning-free core.

The PyTorch path is the LightningModule's own (:mod:`plantnseek.module`); which of the two trains a fit
is decided once per fit by :mod:`plantnseek.engine_choice`.
"""
