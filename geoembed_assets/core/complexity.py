"""Cheap complexity scores of a cell (paper section 3.3), used to predict the embedding size it needs.

- gzip ratio: raw bytes / gzip bytes of the chip's uint16 pixels (an approximation of Kolmogorov complexity);
- linear PCA: components explaining >= 95 % of the variance of the cell's patches;
- kernel PCA: RBF-kernel components explaining >= 95 % of the variance in feature space.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA, KernelPCA

VARIANCE_TARGET = 0.95


@dataclass(frozen=True)
class ComplexityScores:
    gzip_ratio: float
    pca_components: int
    kernel_pca_components: int


def gzip_ratio(reflectance: np.ndarray) -> float:
    """Uncompressed / gzip-compressed size of the chip quantised as the chips store it (uint16, x1e4)."""
    dn = np.nan_to_num(np.clip(np.rint(reflectance * 1e4), 0, 65535)).astype(np.uint16).tobytes()
    return len(dn) / len(gzip.compress(dn, compresslevel=6))


def components_for(explained: np.ndarray, target: float = VARIANCE_TARGET) -> int:
    """Smallest number of leading components whose explained-variance share reaches `target`."""
    share = np.cumsum(explained) / np.sum(explained)
    return int(np.searchsorted(share, target - 1e-12) + 1)


def complexity_scores(reflectance: np.ndarray, patches: np.ndarray, seed: int = 0) -> ComplexityScores:
    """Scores of one chip; `patches` (N, B, p, p) are its valid patches (NaN filled by band means)."""
    x = patches.reshape(len(patches), -1)
    x = np.where(np.isnan(x), np.nanmean(x, axis=0, keepdims=True), x)
    x = np.nan_to_num(x)
    pca = PCA(random_state=seed).fit(x)
    kpca = KernelPCA(kernel="rbf", gamma=1.0 / (x.shape[1] * max(float(x.var()), 1e-12)), random_state=seed).fit(x)
    return ComplexityScores(
        gzip_ratio=gzip_ratio(reflectance),
        pca_components=components_for(pca.explained_variance_),
        kernel_pca_components=components_for(kpca.eigenvalues_),
    )
