"""Evaluation metrics for embeddings (numpy + faiss; no MXNet import).

Retrieval: Recall@K, R-precision, MAP@R from a blocked exact faiss kNN search.
Clustering: NMI of faiss k-means clusterings against the labels (mean over k-means runs).
Few-shot: N-way K-shot episodes, prototype and nearest-neighbour accuracy with a 95% interval.
"""
from .neighbors import knn
from .retrieval import recall_at_k, r_precision, map_at_r, retrieval_metrics
from .clustering import nmi, nmi_score, evaluate_embeddings, default_nmi_runs
from .hashing import hamming_map, precision_within_radius, pr_curve
from .fewshot import few_shot_accuracy, few_shot_metrics

__all__ = ["knn", "recall_at_k", "r_precision", "map_at_r", "retrieval_metrics", "nmi",
           "nmi_score", "default_nmi_runs", "evaluate_embeddings", "hamming_map",
           "precision_within_radius", "pr_curve", "few_shot_accuracy", "few_shot_metrics"]
