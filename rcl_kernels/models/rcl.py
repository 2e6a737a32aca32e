"""RCL: Recurrent Continuous Localization (Wang et al., CVPR 2022), a minimal faithful version.

    features (B, C, T) -> Encoder -> F (B, H, T')            T' = T / encoder_stride  (BMN's base module)
    F -> BoundaryHead -> start / end probabilities          (BMN's TEM; both from bmn.BaseAndTEM)
    continuous anchoring: AnchorScorer(F; x) for any real segment x = (x_s, x_e)
        -> p1 (tIoU* > 0.7 classifier), p2 (tIoU* regressor), offsets (g* - x) / (x_e - x_s), class logits
    RecurrentRefiner: M steps re-sampling F at the refined segments (GRU state per segment)

Training (forward) scores the samples chosen by ModelConfig.sampling and returns the losses;
inference (detect) scores a grid of resolution `inference_resolution` (below one step: the point of
a continuous representation), keeps the best `candidates`, refines them for M steps and returns
segments in input steps with score p1 p2 (x boundary probabilities) x class probability (the
class factor only in class-aware detection).

The "grid" variant (ModelConfig variant="grid", config.GRID_PRESET) is RCL's scorer on integer grid
cells only, no offsets, no refinement (Table 5's "grid" row); the published baseline is BMN itself
(bmn.py, variant "bmn"), on the same base module and TEM.

`backend` ("fast" or "reference") picks the kernels of every op end to end: the AnchorScorer
(score_anchors), the boundary-probability lookup (segment_interp), and Soft-NMS in postprocessing.
"""

from __future__ import annotations

import torch

from rcl_kernels.data.windows import owned_by_window
from rcl_kernels.models.bmn import BMN, BaseAndTEM
from rcl_kernels.models.boundary import boundary_loss, boundary_targets
from rcl_kernels.models.candidates import Candidates
from rcl_kernels.models.config import ModelConfig
from rcl_kernels.models.losses import CLASSES, NUM_ANCHOR_OUTPUTS, OFFSETS, P1, P2, anchor_losses
from rcl_kernels.models.refine import RecurrentRefiner, step_segments
from rcl_kernels.models.sampling import grid_segments, training_samples
from rcl_kernels.models.targets import anchor_targets, apply_offsets
from rcl_kernels.nn.score_anchors import AnchorScorer, score_with_scorers
from rcl_kernels.ops.segment_interp import segment_interp
from rcl_kernels.ops.soft_nms import soft_nms

# Training segments refined per video are drawn with this weight where tIoU* < offset_min_tiou
# (1 elsewhere): refinement matters near instances, which is also where inference applies it.
FAR_SEGMENT_WEIGHT = 0.05


class RCL(BaseAndTEM):
    """BMN's base module and TEM (BaseAndTEM) with the continuous anchoring representation in place
    of BMN's map of discrete cells, and the recurrent refine module."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        backend = self.op_backend
        self.num_outputs = NUM_ANCHOR_OUTPUTS + config.num_classes
        self.scorer = AnchorScorer(config.hidden, config.num_samples, config.scorer_hidden, self.num_outputs,
                                   samples_per_point=config.samples_per_point, context=config.context,
                                   padding="zeros", backend=backend)
        # Offsets from their own scorer: sharing one hidden layer with the confidences and classes,
        # the offset rows lose the competition for it (measured: offset L1 stays near the
        # zero-offset baseline), while a dedicated one learns them (docs/model_results.md).
        self.regressor = None
        if config.offset_head == "separate" and config.use_offsets:
            self.regressor = AnchorScorer(config.hidden, config.num_samples, config.scorer_hidden, 2,
                                          samples_per_point=config.samples_per_point, context=config.context,
                                          padding="zeros", backend=backend)
        self.refiner = None
        if config.refine_steps > 0:
            self.refiner = RecurrentRefiner(self.scorer, config.refine_state, config.refine_steps,
                                            embed_hidden=config.refine_hidden or config.scorer_hidden)

    # -- shared pieces -------------------------------------------------------------------------

    def score(self, encoded: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """(B, K, 4 + classes): p1, p2 logits, offsets, class logits of segments (B, K, 2)."""
        return score_segments(self.scorer, self.regressor, encoded, segments)

    def _first_segments(self, anchors: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Stage-0 segments: the anchors moved by their predicted offsets (if offsets are on)."""
        if not self.config.use_offsets:
            return anchors
        return apply_offsets(anchors, outputs[..., OFFSETS].float())

    def _next_segments(self, segments: torch.Tensor, outputs: torch.Tensor, num_steps: int) -> torch.Tensor:
        if not self.config.use_offsets:
            return segments.detach()
        return step_segments(segments, outputs[..., OFFSETS], num_steps)

    # -- training ------------------------------------------------------------------------------

    def forward(self, features: torch.Tensor, mask: torch.Tensor, instances: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Losses of a batch: features (B, C, T), mask (B, T), instances (B, G, 2) in input steps,
        labels (B, G) (-1: padding). Returns {"loss": weighted total, and each term}."""
        cfg = self.config
        encoded, boundary_logits, step_mask = self.encode(features, mask)
        T = encoded.shape[-1]
        valid_instances = labels >= 0
        instances = instances.float() * self.units_per_step
        lengths = step_mask.sum(dim=1)

        terms = {"boundary": boundary_loss(boundary_logits.float(),
                                           boundary_targets(instances, valid_instances, T, cfg.boundary_region),
                                           step_mask)}
        samples, sample_valid = training_samples(
            cfg.sampling, T, cfg.max_duration, instances, valid_instances, jitter=cfg.random_jitter,
            per_instance=cfg.sis_per_instance, spread=cfg.sis_spread, lengths=lengths.to(instances.dtype),
            generator=generator)
        sample_valid = sample_valid & (samples[..., 0] < lengths[:, None])  # not inside the padding
        outputs = self.score(encoded, samples)
        targets = anchor_targets(samples, instances, labels, valid_instances)
        loss_kw = dict(positive_tiou=cfg.positive_tiou, offset_min_tiou=cfg.offset_min_tiou,
                       class_min_tiou=cfg.class_min_tiou, use_offsets=cfg.use_offsets,
                       scale_invariant_alpha=cfg.si_alpha if cfg.classification_loss == "scale-invariant" else None,
                       num_instances=valid_instances.sum(dim=1))
        stage = anchor_losses(outputs, targets, sample_valid, **loss_kw)

        if self.refiner is not None:
            R = min(cfg.refine_train_segments, samples.shape[1])
            near = targets.tiou >= cfg.offset_min_tiou
            weight = torch.where(near, 1.0, FAR_SEGMENT_WEIGHT) * sample_valid + 1e-6
            pick = torch.multinomial(weight, R, replacement=False, generator=generator)
            picked_valid = torch.gather(sample_valid, 1, pick)
            picked_outputs = torch.gather(outputs, 1, pick[..., None].expand(-1, -1, outputs.shape[-1]))
            start = self._next_segments(torch.gather(samples, 1, pick[..., None].expand(-1, -1, 2)), picked_outputs, T)
            steps = self.refiner(self.score, encoded, start, picked_outputs[..., (P1, P2)])
            for m, (x, y) in enumerate(steps, start=1):
                step_terms = anchor_losses(y, anchor_targets(x, instances, labels, valid_instances), picked_valid,
                                           **loss_kw)
                w = cfg.refine_alpha ** m  # eq. 8 of the paper
                for key, value in step_terms.items():
                    stage[key] = stage[key] + w * value
        terms.update(stage)
        weights = {"boundary": cfg.lambda_boundary, "classification": 1.0, "regression": cfg.lambda_regression,
                   "offset": cfg.lambda_offset, "class": cfg.lambda_class}
        terms["loss"] = sum(weights[k] * terms[k] for k in weights)
        return terms

    # -- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def detect(self, features: torch.Tensor, mask: torch.Tensor, class_agnostic: bool = False,
               neighbours: torch.Tensor | None = None) -> Candidates:
        """Candidates of a batch (before Soft-NMS), in input steps. class_agnostic: localisation only,
        scored without the class probability (which would only add the class head's noise to the
        ranking), every label 0. neighbours (B, 2): the gaps in input steps to each window's previous
        and next window (rcl_kernels.data.windows; inf where none): each window then scores only the
        grid segments it owns (owned_by_window), so overlapping windows do not score a segment twice."""
        cfg = self.config
        encoded, boundary_logits, step_mask = self.encode(features, mask)
        B, _, T = encoded.shape
        lengths = step_mask.sum(dim=1)
        grid = grid_segments(T, cfg.max_duration, cfg.inference_resolution, device=encoded.device)
        inside = grid[None, :, 0] < lengths[:, None]
        if neighbours is None:
            owned = torch.ones_like(inside[:1])  # one row: every item owns every segment
        else:
            owned = owned_by_window(grid, lengths, neighbours.to(encoded.device) * self.units_per_step)
        P = min(cfg.candidates, grid.shape[0])
        segments, outputs, valid = self._stage_zero(encoded, grid, owned, inside, P)

        if self.refiner is not None:
            segments, outputs = self.refiner(self.score, encoded, self._next_segments(segments, outputs, T),
                                             outputs[..., (P1, P2)])[-1]
        final = apply_offsets(segments.float(), outputs[..., OFFSETS].float()) if cfg.use_offsets else segments.float()
        final = torch.stack([final.min(dim=-1).values, final.max(dim=-1).values], dim=-1)
        # The grid's domain [0, length] (cells end at most at the length, as grid_segments builds them).
        final = torch.minimum(final.clamp(min=0), lengths[:, None, None].to(final.dtype))
        score = torch.sigmoid(outputs[..., P1].float()) * torch.sigmoid(outputs[..., P2].float())
        if cfg.use_boundary_score:
            score = score * self.boundary_probability(torch.sigmoid(boundary_logits.float()), final)
        if class_agnostic:
            class_prob = torch.ones_like(score)[..., None]
            labels = torch.zeros(class_prob.shape, dtype=torch.int64, device=score.device)
        else:
            class_prob, labels = self.class_probabilities(outputs)
        k = class_prob.shape[-1]
        score = (score[..., None] * class_prob).reshape(B, P * k)
        final = (final[:, :, None, :].expand(B, P, k, 2) / self.units_per_step).reshape(B, P * k, 2)
        valid = valid[..., None].expand(B, P, k).reshape(B, P * k) & (final[..., 1] > final[..., 0])
        return Candidates(final.contiguous(), score, labels.reshape(B, P * k), valid)

    def _stage_zero(self, encoded: torch.Tensor, grid: torch.Tensor, owned: torch.Tensor, inside: torch.Tensor,
                    P: int):
        """The `P` candidates of each item before refinement: the grid segments it owns (B, K), or
        (1, K) for every item alike, are scored, those that start inside it (B, K) compete, and
        Soft-NMS of their stage-0 segments (regressed when offsets are on) chooses, so the budget
        is not spent on near-copies of the strongest instance. Items that own the same segments
        (the windows in the middle of a video) share one scoring call. Returns the chosen grid
        segments (B, P, 2), their outputs and validity."""
        B = encoded.shape[0]
        if owned.shape[0] == 1:
            patterns, pattern_of = owned, torch.zeros(B, dtype=torch.int64, device=owned.device)
        else:
            patterns, pattern_of = torch.unique(owned, dim=0, return_inverse=True)
        segments = grid.new_zeros(B, P, 2)
        valid = torch.zeros(B, P, dtype=torch.bool, device=encoded.device)
        outputs = None
        for g, pattern in enumerate(patterns):
            items = (pattern_of == g).nonzero()[:, 0]
            anchors = grid[pattern][None].expand(len(items), -1, -1).contiguous()
            if anchors.shape[1] == 0:
                continue
            scores = self.score(encoded[items], anchors)
            if outputs is None:  # in the scorer's dtype (autocast may lower it)
                outputs = scores.new_zeros(B, P, scores.shape[-1])
            competes = inside[items][:, pattern]
            confidence = torch.sigmoid(scores[..., P1].float()) * torch.sigmoid(scores[..., P2].float())
            confidence = torch.where(competes, confidence, torch.zeros_like(confidence))
            kept = soft_nms(self._first_segments(anchors, scores), confidence, method="gaussian",
                            sigma=self.config.candidate_nms_sigma, min_score=0.0, top_k=min(P, anchors.shape[1]),
                            backend=self.op_backend)
            top = kept.indices.clamp(min=0)
            chosen = top.shape[1]
            segments[items, :chosen] = torch.gather(anchors, 1, top[..., None].expand(-1, -1, 2))
            outputs[items, :chosen] = torch.gather(scores, 1, top[..., None].expand(-1, -1, scores.shape[-1]))
            valid[items, :chosen] = (kept.indices >= 0) & torch.gather(competes, 1, top)
        if outputs is None:
            outputs = encoded.new_zeros(B, P, self.num_outputs)
        return segments, outputs, valid

    def boundary_probability(self, probabilities: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """start_prob(x_s) * end_prob(x_e), probabilities (B, 2, T) linearly interpolated at
        continuous positions (segment_interp with one point at a zero-length segment)."""
        points = [torch.stack([segments[..., i], segments[..., i]], dim=-1).contiguous() for i in (0, 1)]
        start = segment_interp(probabilities[:, 0:1], points[0], 1, padding="border", backend=self.op_backend)
        end = segment_interp(probabilities[:, 1:2], points[1], 1, padding="border", backend=self.op_backend)
        return start[:, :, 0, 0] * end[:, :, 0, 0]

    def class_probabilities(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The top classes_per_segment class probabilities and labels, (B, P, k) each."""
        probs = torch.softmax(outputs[..., CLASSES].float(), dim=-1)
        k = min(self.config.classes_per_segment, probs.shape[-1])
        values, labels = probs.topk(k, dim=-1)
        return values, labels

    def extra_repr(self) -> str:
        c = self.config
        return (f"variant={c.variant!r}, sampling={c.sampling}, refine_steps={c.refine_steps}, "
                f"inference_resolution={c.inference_resolution}, backend={c.backend!r}")


def score_segments(scorer: AnchorScorer, regressor: AnchorScorer | None, encoded: torch.Tensor,
                   segments: torch.Tensor) -> torch.Tensor:
    if regressor is None:
        return scorer(encoded, segments, num_steps=encoded.shape[-1])
    # one pass for both at inference on the CPU (shared projection and taps)
    out, offsets = score_with_scorers((scorer, regressor), encoded, segments, num_steps=encoded.shape[-1])
    return torch.cat([out[..., :2], offsets.to(out.dtype), out[..., 4:]], dim=-1)


# Every detector of the package: the same forward (losses) and detect (candidates) interface.
Detector = RCL | BMN


def build_model(config: ModelConfig) -> Detector:
    """The detector of config.variant: BMN for "bmn", else RCL (whose "grid" variant is a preset)."""
    return BMN(config) if config.variant == "bmn" else RCL(config)
