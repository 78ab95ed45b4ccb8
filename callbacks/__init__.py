"""Lightning callbacks of plantnseek (installed as ``plantnseek.callbacks``)."""
from plantnseek.callbacks.pruning import Pruning, make_scorer
from plantnseek.core.pruners import SCORERS
from plantnseek.core.scorers import GraSP, Mag, Rand, Scorer, ScoringContext, SNIP, SynFlow, Ticket
from plantnseek.core.edgepopup import EdgePopup, EdgePopupAnneal
from plantnseek.callbacks.pictures import Pictures
from plantnseek.callbacks.summary import RunSummary

__all__ = ["Pictures", "Pruning", "RunSummary", "Scorer", "ScoringContext", "SCORERS", "Rand", "Mag", "SNIP", "GraSP",
           "SynFlow", "Ticket", "EdgePopup", "EdgePopupAnneal", "make_scorer"]
