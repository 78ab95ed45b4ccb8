"""Lightning callbacks of plantnseek (installed as ``plantnseek.callbacks``): the Pruning schedule (and
PerRunPruning for a stack's runs), RunSummary, Pictures and the per-epoch ProgressLines; with them, for
configs and user scorers, the Scorer interface and every built-in scorer (their mathematics is in the
Lightning-free :mod:`plantnseek.core`)."""
from plantnseek.callbacks.per_run import PerRunPruning
from plantnseek.callbacks.pictures import Pictures
from plantnseek.callbacks.progress import ProgressLines
from plantnseek.callbacks.pruning import Pruning, make_scorer
from plantnseek.callbacks.summary import RunSummary
from plantnseek.core.edgepopup import EdgePopup, EdgePopupAnneal
from plantnseek.core.phew import PHEW
from plantnseek.core.progressive import FORCE, IterSNIP
from plantnseek.core.prospr import ProsPr
from plantnseek.core.pruners import SCORERS
from plantnseek.core.scorers import SNIP, GraSP, Mag, Rand, Scorer, ScoringContext, SynFlow, Ticket

__all__ = ["Pictures", "Pruning", "PerRunPruning", "ProgressLines", "RunSummary", "Scorer", "ScoringContext",
           "SCORERS", "Rand", "Mag", "SNIP", "GraSP", "SynFlow", "Ticket", "EdgePopup", "EdgePopupAnneal",
           "IterSNIP", "FORCE", "ProsPr", "PHEW", "make_scorer"]
