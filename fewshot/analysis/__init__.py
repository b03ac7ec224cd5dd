"""Geometry of frozen features: isotropy, positive/negative similarity distributions, t-SNE.

``analyze_to_directory(paths, out)`` runs all of them over several feature files side by
side (what ``fewshot analyze`` runs); the pieces are usable on their own arrays.
"""

from fewshot.analysis.figures import plot_similarity, plot_tsne
from fewshot.analysis.isotropy import isotropy_score, log_partition
from fewshot.analysis.report import ANALYSIS_COLUMNS, SIMILARITY_COLUMNS, analyze_to_directory, feature_labels
from fewshot.analysis.similarity import PairHistogram, SimilarityDistributions, similarity_distributions
from fewshot.analysis.tsne import tsne_map

__all__ = [
    "isotropy_score",
    "log_partition",
    "similarity_distributions",
    "SimilarityDistributions",
    "PairHistogram",
    "tsne_map",
    "analyze_to_directory",
    "feature_labels",
    "plot_similarity",
    "plot_tsne",
    "ANALYSIS_COLUMNS",
    "SIMILARITY_COLUMNS",
]
