"""jaxloss: loss functions for JAX.

Every loss is a pure function ``loss(pred, target, **hparams, reduction="mean",
weights=None, where=None)`` plus a class (``HuberLoss``) that composes with
``+ - * /`` and drops into optax training steps. This module only re-exports:
each family lives in its own module. Names not listed in ``__all__`` (and the
modules themselves) are not part of the public API.
"""

from ._checks import value_checks as value_checks
from ._core import REGISTRY as REGISTRY
from ._core import Example as Example
from ._core import Interval as Interval
from ._core import Layout as Layout
from ._core import LossSpec as LossSpec
from ._core import Static as Static
from ._core import Unreduced as Unreduced
from ._core import loss as loss
from ._objects import Loss as Loss
from ._objects import WeightedSum as WeightedSum
from .binary import AsymmetricLoss as AsymmetricLoss
from .binary import BinaryCrossEntropy as BinaryCrossEntropy
from .binary import BinaryCrossEntropyWithLogits as BinaryCrossEntropyWithLogits
from .binary import HingeLoss as HingeLoss
from .binary import MultilabelSoftMarginLoss as MultilabelSoftMarginLoss
from .binary import PerceptronLoss as PerceptronLoss
from .binary import SigmoidFocalLoss as SigmoidFocalLoss
from .binary import SoftMarginLoss as SoftMarginLoss
from .binary import SparsemaxLoss as SparsemaxLoss
from .binary import SquaredHingeLoss as SquaredHingeLoss
from .binary import asymmetric_loss as asymmetric_loss
from .binary import binary_cross_entropy as binary_cross_entropy
from .binary import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from .binary import hinge_loss as hinge_loss
from .binary import multilabel_soft_margin_loss as multilabel_soft_margin_loss
from .binary import perceptron_loss as perceptron_loss
from .binary import sigmoid_focal_loss as sigmoid_focal_loss
from .binary import soft_margin_loss as soft_margin_loss
from .binary import sparsemax_loss as sparsemax_loss
from .binary import squared_hinge_loss as squared_hinge_loss
from .detection import CIoULoss as CIoULoss
from .detection import DIoULoss as DIoULoss
from .detection import GIoULoss as GIoULoss
from .detection import ciou_loss as ciou_loss
from .detection import diou_loss as diou_loss
from .detection import giou_loss as giou_loss
from .divergence import DistillationLoss as DistillationLoss
from .divergence import GeneralizedKLDivergence as GeneralizedKLDivergence
from .divergence import JSDivergence as JSDivergence
from .divergence import KLDivergence as KLDivergence
from .divergence import distillation_loss as distillation_loss
from .divergence import generalized_kl_divergence as generalized_kl_divergence
from .divergence import js_divergence as js_divergence
from .divergence import kl_divergence as kl_divergence
from .gan import GANLoss as GANLoss
from .gan import gan_loss as gan_loss
from .geometry import ChamferDistance as ChamferDistance
from .geometry import chamfer_distance as chamfer_distance
from .image import MSSSIMLoss as MSSSIMLoss
from .image import SSIMLoss as SSIMLoss
from .image import TotalVariationLoss as TotalVariationLoss
from .image import ms_ssim_loss as ms_ssim_loss
from .image import ssim_loss as ssim_loss
from .image import total_variation_loss as total_variation_loss
from .large_vocab import LinearCrossEntropy as LinearCrossEntropy
from .large_vocab import LinearDistillationLoss as LinearDistillationLoss
from .large_vocab import VocabParallelCrossEntropy as VocabParallelCrossEntropy
from .large_vocab import default_chunk_size as default_chunk_size
from .large_vocab import linear_cross_entropy as linear_cross_entropy
from .large_vocab import linear_distillation_loss as linear_distillation_loss
from .large_vocab import linear_sequence_logprobs as linear_sequence_logprobs
from .large_vocab import sequence_logprobs as sequence_logprobs
from .large_vocab import vocab_parallel_cross_entropy as vocab_parallel_cross_entropy
from .margin_softmax import ArcFaceLoss as ArcFaceLoss
from .margin_softmax import CosFaceLoss as CosFaceLoss
from .margin_softmax import arcface_loss as arcface_loss
from .margin_softmax import cosface_loss as cosface_loss
from .metric import BatchTripletLoss as BatchTripletLoss
from .metric import CircleLoss as CircleLoss
from .metric import ContrastiveLoss as ContrastiveLoss
from .metric import CosineEmbeddingLoss as CosineEmbeddingLoss
from .metric import HingeEmbeddingLoss as HingeEmbeddingLoss
from .metric import MarginRankingLoss as MarginRankingLoss
from .metric import MultiSimilarityLoss as MultiSimilarityLoss
from .metric import NTXentLoss as NTXentLoss
from .metric import SupConLoss as SupConLoss
from .metric import TripletLoss as TripletLoss
from .metric import batch_triplet_loss as batch_triplet_loss
from .metric import circle_loss as circle_loss
from .metric import contrastive_loss as contrastive_loss
from .metric import cosine_embedding_loss as cosine_embedding_loss
from .metric import hinge_embedding_loss as hinge_embedding_loss
from .metric import margin_ranking_loss as margin_ranking_loss
from .metric import multi_similarity_loss as multi_similarity_loss
from .metric import ntxent_loss as ntxent_loss
from .metric import supcon_loss as supcon_loss
from .metric import triplet_loss as triplet_loss
from .multiclass import CrossEntropy as CrossEntropy
from .multiclass import GeneralizedCrossEntropy as GeneralizedCrossEntropy
from .multiclass import MulticlassHingeLoss as MulticlassHingeLoss
from .multiclass import MulticlassPerceptronLoss as MulticlassPerceptronLoss
from .multiclass import MulticlassSparsemaxLoss as MulticlassSparsemaxLoss
from .multiclass import MultilabelMarginLoss as MultilabelMarginLoss
from .multiclass import MultiMarginLoss as MultiMarginLoss
from .multiclass import NLLLoss as NLLLoss
from .multiclass import Poly1CrossEntropy as Poly1CrossEntropy
from .multiclass import SoftmaxFocalLoss as SoftmaxFocalLoss
from .multiclass import SparseCrossEntropy as SparseCrossEntropy
from .multiclass import cross_entropy as cross_entropy
from .multiclass import generalized_cross_entropy as generalized_cross_entropy
from .multiclass import multi_margin_loss as multi_margin_loss
from .multiclass import multiclass_hinge_loss as multiclass_hinge_loss
from .multiclass import multiclass_perceptron_loss as multiclass_perceptron_loss
from .multiclass import multiclass_sparsemax_loss as multiclass_sparsemax_loss
from .multiclass import multilabel_margin_loss as multilabel_margin_loss
from .multiclass import nll_loss as nll_loss
from .multiclass import poly1_cross_entropy as poly1_cross_entropy
from .multiclass import softmax_focal_loss as softmax_focal_loss
from .multiclass import sparse_cross_entropy as sparse_cross_entropy
from .multimodal import CLIPLoss as CLIPLoss
from .multimodal import SigLIPLoss as SigLIPLoss
from .multimodal import clip_loss as clip_loss
from .multimodal import siglip_loss as siglip_loss
from .preference import DPOLoss as DPOLoss
from .preference import GRPOLoss as GRPOLoss
from .preference import ORPOLoss as ORPOLoss
from .preference import SimPOLoss as SimPOLoss
from .preference import dpo_loss as dpo_loss
from .preference import grpo_loss as grpo_loss
from .preference import orpo_loss as orpo_loss
from .preference import simpo_loss as simpo_loss
from .probabilistic import CRPSEnsembleLoss as CRPSEnsembleLoss
from .probabilistic import CRPSGaussianLoss as CRPSGaussianLoss
from .probabilistic import EnergyScoreLoss as EnergyScoreLoss
from .probabilistic import crps_ensemble_loss as crps_ensemble_loss
from .probabilistic import crps_gaussian_loss as crps_gaussian_loss
from .probabilistic import energy_score_loss as energy_score_loss
from .ranking import ApproxNDCGLoss as ApproxNDCGLoss
from .ranking import ListMLELoss as ListMLELoss
from .ranking import PairwiseHingeLoss as PairwiseHingeLoss
from .ranking import PairwiseLogisticLoss as PairwiseLogisticLoss
from .ranking import RankingSoftmaxLoss as RankingSoftmaxLoss
from .ranking import approx_ndcg_loss as approx_ndcg_loss
from .ranking import listmle_loss as listmle_loss
from .ranking import pairwise_hinge_loss as pairwise_hinge_loss
from .ranking import pairwise_logistic_loss as pairwise_logistic_loss
from .ranking import ranking_softmax_loss as ranking_softmax_loss
from .regression import CosineDistanceLoss as CosineDistanceLoss
from .regression import GaussianNLLLoss as GaussianNLLLoss
from .regression import GeneralRobustLoss as GeneralRobustLoss
from .regression import HuberLoss as HuberLoss
from .regression import LogCoshLoss as LogCoshLoss
from .regression import MAELoss as MAELoss
from .regression import MAPELoss as MAPELoss
from .regression import MSELoss as MSELoss
from .regression import MSLELoss as MSLELoss
from .regression import PoissonNLLLoss as PoissonNLLLoss
from .regression import QuantileLoss as QuantileLoss
from .regression import SmoothL1Loss as SmoothL1Loss
from .regression import cosine_distance_loss as cosine_distance_loss
from .regression import gaussian_nll_loss as gaussian_nll_loss
from .regression import general_robust_loss as general_robust_loss
from .regression import huber_loss as huber_loss
from .regression import log_cosh_loss as log_cosh_loss
from .regression import mae_loss as mae_loss
from .regression import mape_loss as mape_loss
from .regression import mse_loss as mse_loss
from .regression import msle_loss as msle_loss
from .regression import poisson_nll_loss as poisson_nll_loss
from .regression import quantile_loss as quantile_loss
from .regression import smooth_l1_loss as smooth_l1_loss
from .segmentation import DiceLoss as DiceLoss
from .segmentation import FocalTverskyLoss as FocalTverskyLoss
from .segmentation import GeneralizedDiceLoss as GeneralizedDiceLoss
from .segmentation import JaccardLoss as JaccardLoss
from .segmentation import LovaszHingeLoss as LovaszHingeLoss
from .segmentation import LovaszSoftmaxLoss as LovaszSoftmaxLoss
from .segmentation import MulticlassDiceLoss as MulticlassDiceLoss
from .segmentation import TverskyLoss as TverskyLoss
from .segmentation import dice_loss as dice_loss
from .segmentation import focal_tversky_loss as focal_tversky_loss
from .segmentation import generalized_dice_loss as generalized_dice_loss
from .segmentation import jaccard_loss as jaccard_loss
from .segmentation import lovasz_hinge_loss as lovasz_hinge_loss
from .segmentation import lovasz_softmax_loss as lovasz_softmax_loss
from .segmentation import multiclass_dice_loss as multiclass_dice_loss
from .segmentation import tversky_loss as tversky_loss
from .self_supervised import BarlowTwinsLoss as BarlowTwinsLoss
from .self_supervised import DINOLoss as DINOLoss
from .self_supervised import KoLeoLoss as KoLeoLoss
from .self_supervised import NegativeCosineLoss as NegativeCosineLoss
from .self_supervised import SwAVLoss as SwAVLoss
from .self_supervised import VICRegLoss as VICRegLoss
from .self_supervised import barlow_twins_loss as barlow_twins_loss
from .self_supervised import dino_center_update as dino_center_update
from .self_supervised import dino_loss as dino_loss
from .self_supervised import koleo_loss as koleo_loss
from .self_supervised import negative_cosine_loss as negative_cosine_loss
from .self_supervised import swav_loss as swav_loss
from .self_supervised import vicreg_loss as vicreg_loss
from .sequence import CTCLoss as CTCLoss
from .sequence import RNNTLoss as RNNTLoss
from .sequence import ctc_loss as ctc_loss
from .sequence import lengths_from_paddings as lengths_from_paddings
from .sequence import rnnt_loss as rnnt_loss
from .train import make_train_step as make_train_step

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "Example",
    "Interval",
    "Layout",
    "LossSpec",
    "Static",
    "Unreduced",
    "loss",
    "value_checks",
    "Loss",
    "WeightedSum",
    "make_train_step",
    "gaussian_nll_loss",
    "GaussianNLLLoss",
    "huber_loss",
    "HuberLoss",
    "log_cosh_loss",
    "LogCoshLoss",
    "mae_loss",
    "MAELoss",
    "mape_loss",
    "MAPELoss",
    "mse_loss",
    "MSELoss",
    "msle_loss",
    "MSLELoss",
    "poisson_nll_loss",
    "PoissonNLLLoss",
    "quantile_loss",
    "QuantileLoss",
    "smooth_l1_loss",
    "SmoothL1Loss",
    "cosine_distance_loss",
    "CosineDistanceLoss",
    "binary_cross_entropy",
    "BinaryCrossEntropy",
    "binary_cross_entropy_with_logits",
    "BinaryCrossEntropyWithLogits",
    "hinge_loss",
    "HingeLoss",
    "sigmoid_focal_loss",
    "SigmoidFocalLoss",
    "squared_hinge_loss",
    "SquaredHingeLoss",
    "asymmetric_loss",
    "AsymmetricLoss",
    "multilabel_soft_margin_loss",
    "MultilabelSoftMarginLoss",
    "perceptron_loss",
    "PerceptronLoss",
    "soft_margin_loss",
    "SoftMarginLoss",
    "sparsemax_loss",
    "SparsemaxLoss",
    "cross_entropy",
    "CrossEntropy",
    "multiclass_hinge_loss",
    "MulticlassHingeLoss",
    "nll_loss",
    "NLLLoss",
    "softmax_focal_loss",
    "SoftmaxFocalLoss",
    "sparse_cross_entropy",
    "SparseCrossEntropy",
    "generalized_cross_entropy",
    "GeneralizedCrossEntropy",
    "multi_margin_loss",
    "MultiMarginLoss",
    "multiclass_perceptron_loss",
    "MulticlassPerceptronLoss",
    "multiclass_sparsemax_loss",
    "MulticlassSparsemaxLoss",
    "multilabel_margin_loss",
    "MultilabelMarginLoss",
    "poly1_cross_entropy",
    "Poly1CrossEntropy",
    "js_divergence",
    "JSDivergence",
    "kl_divergence",
    "KLDivergence",
    "generalized_kl_divergence",
    "GeneralizedKLDivergence",
    "distillation_loss",
    "DistillationLoss",
    "dice_loss",
    "DiceLoss",
    "focal_tversky_loss",
    "FocalTverskyLoss",
    "jaccard_loss",
    "JaccardLoss",
    "tversky_loss",
    "TverskyLoss",
    "multiclass_dice_loss",
    "MulticlassDiceLoss",
    "generalized_dice_loss",
    "GeneralizedDiceLoss",
    "lovasz_softmax_loss",
    "LovaszSoftmaxLoss",
    "lovasz_hinge_loss",
    "LovaszHingeLoss",
    "giou_loss",
    "GIoULoss",
    "diou_loss",
    "DIoULoss",
    "ciou_loss",
    "CIoULoss",
    "batch_triplet_loss",
    "BatchTripletLoss",
    "contrastive_loss",
    "ContrastiveLoss",
    "cosine_embedding_loss",
    "CosineEmbeddingLoss",
    "margin_ranking_loss",
    "MarginRankingLoss",
    "ntxent_loss",
    "NTXentLoss",
    "supcon_loss",
    "SupConLoss",
    "triplet_loss",
    "TripletLoss",
    "circle_loss",
    "CircleLoss",
    "multi_similarity_loss",
    "MultiSimilarityLoss",
    "clip_loss",
    "CLIPLoss",
    "siglip_loss",
    "SigLIPLoss",
    "hinge_embedding_loss",
    "HingeEmbeddingLoss",
    "linear_cross_entropy",
    "LinearCrossEntropy",
    "arcface_loss",
    "ArcFaceLoss",
    "cosface_loss",
    "CosFaceLoss",
    "vocab_parallel_cross_entropy",
    "VocabParallelCrossEntropy",
    "default_chunk_size",
    "sequence_logprobs",
    "linear_sequence_logprobs",
    "linear_distillation_loss",
    "LinearDistillationLoss",
    "dpo_loss",
    "DPOLoss",
    "orpo_loss",
    "ORPOLoss",
    "simpo_loss",
    "SimPOLoss",
    "grpo_loss",
    "GRPOLoss",
    "general_robust_loss",
    "GeneralRobustLoss",
    "ranking_softmax_loss",
    "RankingSoftmaxLoss",
    "listmle_loss",
    "ListMLELoss",
    "pairwise_hinge_loss",
    "PairwiseHingeLoss",
    "pairwise_logistic_loss",
    "PairwiseLogisticLoss",
    "approx_ndcg_loss",
    "ApproxNDCGLoss",
    "crps_gaussian_loss",
    "CRPSGaussianLoss",
    "crps_ensemble_loss",
    "CRPSEnsembleLoss",
    "energy_score_loss",
    "EnergyScoreLoss",
    "ctc_loss",
    "CTCLoss",
    "rnnt_loss",
    "RNNTLoss",
    "lengths_from_paddings",
    "vicreg_loss",
    "VICRegLoss",
    "barlow_twins_loss",
    "BarlowTwinsLoss",
    "negative_cosine_loss",
    "NegativeCosineLoss",
    "koleo_loss",
    "KoLeoLoss",
    "dino_loss",
    "DINOLoss",
    "dino_center_update",
    "swav_loss",
    "SwAVLoss",
    "ssim_loss",
    "SSIMLoss",
    "ms_ssim_loss",
    "MSSSIMLoss",
    "total_variation_loss",
    "TotalVariationLoss",
    "chamfer_distance",
    "ChamferDistance",
    "gan_loss",
    "GANLoss",
]
