"""Evaluation metrics for embeddings (numpy + faiss; no MXNet import).

Retrieval: Recall@K, R-precision, MAP@R from a blocked exact faiss kNN search.
Clustering: NMI of faiss k-means clusterings against the labels (mean over k-means runs).
"""
from .neighbors import knn
from .retrieval import recall_at_k, r_precision, map_at_r, retrieval_metrics
from .clustering import nmi, evaluate_embeddings, default_nmi_runs
from .hashing import hamming_map, precision_within_radius, pr_curve

__all__ = ["knn", "recall_at_k", "r_precision", "map_at_r", "retrieval_metrics", "nmi",
           "default_nmi_runs", "evaluate_embeddings", "hamming_map", "precision_within_radius",
           "pr_curve"]
