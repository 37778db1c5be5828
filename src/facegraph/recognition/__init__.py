"""Face verification and open-set identification: pairs, the verification protocol, galleries and baselines.

With a trained run (import them from their own modules; they load runs through the engine): embedding.py embeds photos,
run_verification.py verifies pairs (`facegraph verify`), run_gallery.py searches a gallery (`predict --gallery`).
"""

from facegraph.recognition.baselines import PcaModel, fit_pca, raw_pixel_embeddings
from facegraph.recognition.gallery import (
    UNKNOWN_PERSON, Gallery, OpenSetRates, SearchResult, calibrate_threshold, gallery_fingerprint, open_set_rates,
)
from facegraph.recognition.pairs import Pair, lfw_image_path, read_lfw_pairs, sample_pairs, split_available
from facegraph.recognition.protocol import (
    RocCurve, TarAtFar, VerificationResult, best_threshold, pair_similarities, roc_auc, roc_curve, tar_at_far,
    threshold_at_far, verification_accuracy, verification_protocol,
)

__all__ = [
    "UNKNOWN_PERSON", "Gallery", "OpenSetRates", "Pair", "PcaModel", "RocCurve", "SearchResult", "TarAtFar", "VerificationResult",
    "best_threshold", "calibrate_threshold", "fit_pca", "gallery_fingerprint", "lfw_image_path", "open_set_rates", "pair_similarities",
    "raw_pixel_embeddings",
    "read_lfw_pairs", "roc_auc", "roc_curve", "sample_pairs", "split_available", "tar_at_far", "threshold_at_far",
    "verification_accuracy", "verification_protocol",
]
