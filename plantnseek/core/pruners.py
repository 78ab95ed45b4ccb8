"""Every built-in pruner by name: the one list that configs, sweeps, ``main --pruner``, the CLI's errors
and the README read. A user's scorer needs no entry here: it is named by its ``module.Class`` path."""
from __future__ import annotations

from plantnseek.core.edgepopup import EdgePopup, EdgePopupAnneal
from plantnseek.core.phew import PHEW
from plantnseek.core.progressive import FORCE, IterSNIP
from plantnseek.core.prospr import ProsPr
from plantnseek.core.scorers import SNIP, GraSP, Mag, Rand, Scorer, SynFlow, Ticket

SCORERS: dict[str, type[Scorer]] = {
    # the paper's five and the oracle
    "rand": Rand, "mag": Mag, "snip": SNIP, "grasp": GraSP, "synflow": SynFlow, "ticket": Ticket,
    # strong-ticket search by training scores (Ramanujan et al. 2020)
    "edgepopup": EdgePopup, "edgepopup-anneal": EdgePopupAnneal,
    # published since the paper
    "itersnip": IterSNIP, "force": FORCE, "prospr": ProsPr, "phew": PHEW,
}
