"""The core: everything a planted-ticket experiment is made of, without Lightning.

Tasks and their data, tickets and planting, the masked and stacked layers, masking and recovery, the
scorers' mathematics and the metrics. Nothing here imports ``pytorch_lightning`` (tested), so
``plantnseek ticket`` and notebook users of the core pay for torch alone.
"""
