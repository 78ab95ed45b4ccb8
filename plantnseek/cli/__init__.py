"""The commands: ``plantnseek fit|validate|test`` (LightningCLI), the reference-compatible ``main``,
``ticket``, and the dispatch to ``sweep`` and ``report`` (:mod:`plantnseek.cli.entry`)."""
